"""Session plumbing of the forward-parity suite.

Each case runs once per test session (both backends, teacher forcing, comparison); the
result and the reference capture are cached on disk under pytest's shared base temp
folder, behind a file lock, so `pytest -n N` workers share one run per case.
"""
from __future__ import annotations

import fcntl
import json
from pathlib import Path

import pytest

from parity import cases
from parity.capture import load_capture, save_capture
from parity.results import CaseResult


def pytest_addoption(parser):
    parser.addoption("--suite", action="store", default="default", choices=list(cases.SUITES),
                     help="parity suite to parametrise tests/parity over (default: default)")


def suite_cases(config):
    return cases.suite(config.getoption("--suite"))


def pytest_generate_tests(metafunc):
    names = [c.name for c in suite_cases(metafunc.config)]
    if "case_name" in metafunc.fixturenames:
        marks = {c.name: ([pytest.mark.nightly, pytest.mark.slow] if "default" not in c.suites else [])
                 for c in cases.suite("nightly")}
        params = [pytest.param(n, marks=marks[n], id=n) for n in names]
        if "stage_name" in metafunc.fixturenames:
            from parity.stages import STAGE_NAMES

            params = [pytest.param(n, s, marks=marks[n], id=f"{n}-{s}") for n in names for s in STAGE_NAMES]
            metafunc.parametrize(("case_name", "stage_name"), params)
        else:
            metafunc.parametrize("case_name", params)


class CaseCache:
    """One run per case per session, shared between xdist workers through files."""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._memory = {}

    def get(self, name: str, dtype=None):
        key = name if dtype is None else f"{name}@{dtype}"
        if key in self._memory:
            return self._memory[key]
        folder = self.root / key
        folder.mkdir(exist_ok=True)
        with open(self.root / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            done = folder / "result.json"
            if not done.exists():
                from parity.run import run_case

                run = run_case(name, dtype=dtype)
                save_capture(folder / "reference.npz", run.reference)
                tmp = folder / "result.json.partial"
                tmp.write_text(json.dumps(run.result.to_dict()))
                tmp.replace(done)
            result = CaseResult.from_dict(json.loads(done.read_text()))
            reference = load_capture(folder / "reference.npz")
        self._memory[key] = (result, reference)
        return self._memory[key]


@pytest.fixture(scope="session")
def case_cache(tmp_path_factory, worker_id):
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if worker_id != "master" else base
    return CaseCache(shared / "parity-case-cache")


@pytest.fixture(scope="session")
def worker_id(request):
    # pytest-xdist provides this fixture; without xdist we are the only worker
    return getattr(request.config, "workerinput", {}).get("workerid", "master")
