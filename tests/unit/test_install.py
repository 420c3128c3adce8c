"""A normal (non-editable) install works from any folder: package data, console script, default hub.

The package is built from a copy of its sources and installed with pip into a target folder
(no network: ``--no-index --no-deps --no-build-isolation``); its dependencies (NumPy, TensorFlow,
PyTorch, ...) are the ones this interpreter already has. ``PYTHONPATH`` holds only the target,
and the commands run in a temporary folder, so nothing of the source checkout can be used.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "parity", "reference_tf", "torch_impl", "examples")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("install")
    src, target = base / "src", base / "site"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                           "--no-build-isolation", "--no-cache-dir", "--target", str(target), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONPATH=str(target), PYTHONDONTWRITEBYTECODE="1", TF_CPP_MIN_LOG_LEVEL="2")
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    return {"target": target, "env": env, "cwd": elsewhere, "script": target / "bin" / "parity"}


def _run(inst, *args, timeout=600):
    return subprocess.run([str(inst["script"]), *args], capture_output=True, text=True, cwd=inst["cwd"],
                          env=inst["env"], timeout=timeout)


def test_the_installed_package_is_the_one_used(installed):
    proc = subprocess.run([sys.executable, "-c", "import parity, parity.fixtures as f, parity.tolerances as t; "
                           "print(parity.__file__); print(f.DEFAULT_DIR); print(t.DEFAULT_PATH)"],
                          capture_output=True, text=True, cwd=installed["cwd"], env=installed["env"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    target = str(installed["target"])
    for line in proc.stdout.split():
        assert line.startswith(target), line
    pkg = installed["target"] / "parity"
    assert (pkg / "tolerances.toml").is_file() and (pkg / "data" / "fixtures" / "manifest.json").is_file()
    assert list((pkg / "data" / "fixtures" / "weights").glob("*.npz"))
    proc = _run(installed, "--version")
    assert proc.returncode == 0 and proc.stdout.startswith("parity "), proc.stderr


@pytest.mark.slow
def test_one_case_from_another_folder(installed, tmp_path):
    hub = tmp_path / "H"
    proc = _run(installed, "report", "--case", "n64_g1", "--hub", str(hub))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((hub / "parity_report.json").read_text())
    assert doc["verdict"] == "pass" and [c["name"] for c in doc["cases"]] == ["n64_g1"]
    assert doc["tolerances"]["path"].startswith(str(installed["target"]))
    assert doc["provenance"]["fixture_hashes"]
    for rel in ("index.html", "summary.png", "config.json", "parity_report.schema.json"):
        assert (hub / rel).is_file(), rel
    assert all((hub / rel).is_file() for rel in doc["artifacts"])
    assert all((hub / rel).is_file() for rel in doc["cases"][0]["captures"].values())
    assert not (hub / "RUNNING").exists()
    # the default hub: ./reports/<stamp> under the current folder, never inside the installed package
    proc = _run(installed, "report", "--case", "n64_g1", "--no-figures", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (made,) = list((installed["cwd"] / "reports").iterdir())
    assert (made / "parity_report.json").is_file()
    assert not list(installed["target"].rglob("parity_report.json"))


@pytest.mark.slow
def test_the_example_pair_from_another_folder(installed, tmp_path):
    """The example pair ships with the package and is found by its entry point."""
    hub = tmp_path / "E"
    proc = _run(installed, "report", "--pair", "example", "--hub", str(hub), "--no-figures", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((hub / "parity_report.json").read_text())
    assert doc["pair"]["name"] == "example" and doc["verdict"] == "pass"
