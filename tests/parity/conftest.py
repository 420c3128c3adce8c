"""Session plumbing of the forward-parity suite.

Each case runs once per test session (both sides, teacher forcing, comparison); the
result and the reference capture are cached on disk under pytest's shared base temp
folder, behind a file lock, so `pytest -n N` workers share one run per case.
``--pair NAME`` (or REFERENCE:CANDIDATE) runs the suite on another registered pair: its cases,
its stages and its own goldens (``golden_<pair>_<case>``). The pair's known divergences
(parity.divergences; ``--divergences FILE``, ``--no-divergences``) are strict xfails (known.py).
"""
from __future__ import annotations

import fcntl
import json
from pathlib import Path

import pytest

from parity.capture import load_capture, save_capture
from parity.pairs import PairError, resolve_pair
from parity.results import CaseResult

from . import known


def pytest_addoption(parser):
    parser.addoption("--suite", action="store", default="default",
                     help="parity suite to parametrise tests/parity over (default: default; the pair's suites)")
    parser.addoption("--pair", action="store", default=None,
                     help="the pair the parity suite runs on: a registered pair name or REFERENCE:CANDIDATE "
                          "(default: the built-in pair reference_tf:torch_impl)")
    parser.addoption("--divergences", action="store", default=None, type=Path,
                     help="a registry of known divergences (TOML, docs/divergences.md) on top of the pair's shipped "
                          "one: their stage tests are strict xfails")
    parser.addoption("--no-divergences", action="store_true", default=False,
                     help="apply no known divergence (every divergent stage fails)")


def suite_pair(config):
    spec = config.getoption("--pair")
    try:
        return resolve_pair(spec)
    except PairError as exc:
        raise pytest.UsageError(f"--pair: {exc}") from None


def suite_cases(config):
    pair, suite = suite_pair(config), config.getoption("--suite")
    if suite not in pair.cases.SUITES:
        raise pytest.UsageError(f"--suite {suite!r} is not a suite of pair {pair.name}; its suites are "
                                f"{list(pair.cases.SUITES)}")
    return pair.cases.suite(suite)


def pytest_generate_tests(metafunc):
    if "case_name" in metafunc.fixturenames:
        pair = suite_pair(metafunc.config)
        chosen = suite_cases(metafunc.config)
        reg = known.registry(metafunc.config, pair)
        dtype = getattr(metafunc.function, "parity_dtype", None)  # test_forward_float64 runs the cases in float64
        by = {c.name: c for c in chosen}
        marks = {c.name: ([pytest.mark.nightly, pytest.mark.slow] if "default" not in c.suites else [])
                 for c in chosen}
        if "stage_name" in metafunc.fixturenames:
            params = [pytest.param(n, s, marks=marks[n] + known.marks(reg, by[n], s), id=f"{n}-{s}")
                      for n in by for s in pair.stage_names]
            metafunc.parametrize(("case_name", "stage_name"), params)
        else:
            case_marks = metafunc.function.__name__ in ("test_forward_case", "test_forward_float64")
            params = [pytest.param(n, marks=marks[n] + (known.marks(reg, by[n], dtype=dtype) if case_marks else []),
                                   id=n) for n in by]
            metafunc.parametrize("case_name", params)


class CaseCache:
    """One run per case per session, shared between xdist workers through files."""

    def __init__(self, root: Path, pair, registry=None):
        from parity.sides import BUILTIN_SIDES

        self.root = root / pair.name.replace(":", "-")
        self.pair = pair
        self.registry = registry
        ours = {pair.reference, pair.candidate} <= set(BUILTIN_SIDES)
        self.isolation = "inprocess" if ours else "workers"
        self.root.mkdir(parents=True, exist_ok=True)
        self._memory = {}

    def _not_runnable(self, name: str, dtype) -> str:
        """Why the case cannot run on this pair at all: a side's missing setup (e.g. no
        checkout of the user's code) or a config a side cannot express; "" when it can."""
        from parity.sides import side_class

        for side in dict.fromkeys((self.pair.reference, self.pair.candidate)):
            problem = side_class(side).setup_problem()
            if problem:
                return f"side {side}: {problem}"
        case = self.pair.cases.get_case(name)
        case = case if dtype is None or dtype == case.dtype else case.with_(dtype=dtype)
        why = self.pair.refusals([case]).get(case.name)
        return "; ".join(f"{k} cannot express {case.name}: {v}" for k, v in why.items()) if why else ""

    def get(self, name: str, dtype=None):
        key = name if dtype is None else f"{name}@{dtype}"
        if key in self._memory:
            return self._memory[key]
        folder = self.root / key
        folder.mkdir(exist_ok=True)
        skipped, failed = folder / "not_runnable.txt", folder / "error.txt"
        with open(self.root / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            done = folder / "result.json"
            if not (done.exists() or skipped.exists() or failed.exists()):
                from parity.run import run_case

                why = self._not_runnable(name, dtype)
                if why:
                    skipped.write_text(why)
                else:
                    try:  # sides of the user's code run in workers of their own, as in the report
                        run = run_case(name, dtype=dtype, pair=self.pair, isolation=self.isolation)
                    except Exception as exc:  # noqa: BLE001 - recorded once for every test of the case
                        failed.write_text(f"{type(exc).__name__}: {exc}")
                    else:
                        save_capture(folder / "reference.npz", run.reference)
                        tmp = folder / "result.json.partial"
                        tmp.write_text(json.dumps(run.result.to_dict()))
                        tmp.replace(done)
            if skipped.exists():
                pytest.skip(skipped.read_text())
            if failed.exists():
                known.raise_case_error(self.registry, self.pair.cases.get_case(name), dtype, failed.read_text())
            result = CaseResult.from_dict(json.loads(done.read_text()))
            reference = load_capture(folder / "reference.npz")
        self._memory[key] = (result, reference)
        return self._memory[key]


@pytest.fixture(scope="session")
def case_cache(tmp_path_factory, worker_id, request):
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if worker_id != "master" else base
    pair = suite_pair(request.config)
    return CaseCache(shared / "parity-case-cache", pair, known.registry(request.config, pair))


@pytest.fixture(scope="session")
def pair(request):
    """The pair the parity suite runs on (--pair)."""
    return suite_pair(request.config)


@pytest.fixture(scope="session")
def divergences(request):
    """The known divergences of the suite's pair (parity.divergences), as the report applies them."""
    return known.registry(request.config, suite_pair(request.config))


@pytest.fixture(scope="session")
def worker_id(request):
    # pytest-xdist provides this fixture; without xdist we are the only worker
    return getattr(request.config, "workerinput", {}).get("workerid", "master")
