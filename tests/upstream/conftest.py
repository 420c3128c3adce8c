"""The PtychoPINN checkout the upstream tests run against: ``$PARITY_PTYCHOPINN``, else
``../shared/upstream/PtychoPINN`` beside this repository. Tests that need it skip, with the
reason and how to point at a checkout, where it is absent (or upstream's imports are not
installed); the rest of the upstream tests need neither."""
import importlib.util
import os
from pathlib import Path

import pytest

from parity.upstream import checkout

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT.parent / "shared" / "upstream" / "PtychoPINN"
#: what importing upstream's two packages needs beyond TensorFlow and torch (the ptychopinn extra)
EXTRAS = ("tensorflow_probability", "tf_keras", "lightning", "tensordict", "skimage", "mlflow", "pandas")


def _checkout():
    given = os.environ.get(checkout.ENV)
    path = Path(given) if given else DEFAULT
    why = checkout.problem(path.resolve()) if path.exists() else f"{path} does not exist"
    if why:
        return None, (f"no PtychoPINN checkout: {why}; set {checkout.ENV}=PATH to a folder holding ptycho/ and "
                      f"ptycho_torch/ (or place one at {DEFAULT})")
    missing = [m for m in EXTRAS if importlib.util.find_spec(m) is None]
    if missing:
        return None, (f"upstream PtychoPINN's imports are not installed ({', '.join(missing)}): "
                      f"pip install -c constraints.txt -e '.[ptychopinn]'")
    return path.resolve(), None


@pytest.fixture(scope="session")
def upstream(monkeypatch_session=None):
    path, why = _checkout()
    if path is None:
        pytest.skip(why)
    os.environ[checkout.ENV] = str(path)  # the workers inherit it
    return path
