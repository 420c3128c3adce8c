"""The forward-parity suite: `pytest tests/parity -k forward`.

One test per (case, stage) of the suite, one per case for the stage set and the first
divergent stage, and one golden check per case of the reference's own statistics (so a
change of the reference itself is caught even when the port follows it).
Narrow with e.g. `-k "forward and n64_g2 and canvas"`; `--suite nightly` adds the nightly cases.
"""
import shutil
from pathlib import Path

import numpy as np
import pytest
from pytest_regressions.ndarrays_regression import NDArraysRegressionFixture

from parity import messages, stages

from . import known
from .goldens import golden_arrays

ACCEPT = ("If the reference changed on purpose (e.g. a TensorFlow upgrade), accept it with "
          "`pytest tests/parity -k forward --force-regen` and commit the regenerated goldens.")


def _dtype(pair, case_name, dtype=None):
    return dtype or pair.cases.get_case(case_name).dtype


def test_forward_stage(case_cache, case_name, stage_name, pair, divergences):
    result, _ = case_cache.get(case_name)
    stage = result.stage(stage_name)
    known.check_stage(known.judged(result, divergences, pair, case_name, _dtype(pair, case_name)), stage_name)
    if not stage:
        pytest.fail(messages.format_stage_failure(case_name, stage, result.patch_errors.get(stage_name)),
                    pytrace=False)


def test_forward_case(case_cache, case_name, pair, divergences):
    result, reference = case_cache.get(case_name)
    assert [s.name for s in result.stages] == list(pair.stage_names)
    assert list(reference.stages) == list(pair.stage_names)
    known.check_case(known.judged(result, divergences, pair, case_name, _dtype(pair, case_name)))
    assert not result.problems, result.problems
    if result.first_divergent_stage is not None:
        pytest.fail(messages.format_case_summary(result), pytrace=False)


def test_forward_float64(case_cache, case_name, pair, divergences):
    """The same case in float64: every stage agrees to the float64 table (1e-10 of the stage scale)."""
    result, _ = case_cache.get(case_name, "float64")
    known.check_case(known.judged(result, divergences, pair, case_name, "float64"))
    failed = [s for s in result.stages if not s]
    if failed:
        pytest.fail("\n\n".join(messages.format_stage_failure(f"{case_name}@float64", s) for s in failed),
                    pytrace=False)
    assert max(s.rel_max for s in result.stages) <= 1e-10


test_forward_float64.parity_dtype = "float64"  # conftest: its strict xfails are the float64 entries


def _golden_name(pair, case_name: str) -> str:
    """``golden_<case>`` for the built-in pair (its goldens predate pairs), else
    ``golden_<pair>_<case>``."""
    return f"golden_{case_name}" if pair.name in BUILTIN_NAMES else f"golden_{pair.name.replace(':', '-')}_{case_name}"


BUILTIN_NAMES = ("builtin", "reference_tf:torch_impl")


def test_forward_golden(case_cache, case_name, ndarrays_regression, pair):
    _, reference = case_cache.get(case_name)
    data, tolerances = golden_arrays(reference.stages, pair.stages)
    try:
        ndarrays_regression.check(data, basename=_golden_name(pair, case_name), tolerances=tolerances)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{ACCEPT}") from None


class _NoRegen:
    """A request whose --force-regen / --regen-all are off, so a check can only compare."""

    def __init__(self, request):
        self._request = request
        self.config = self
        self.node = request.node

    def getoption(self, name, default=None):
        if name in ("force_regen", "regen_all"):
            return False
        return self._request.config.getoption(name, default)


@pytest.mark.parametrize("stage_name", ["amp", "canvas", "far_field_amp", "loss_nll"])
def test_forward_golden_bites(case_cache, request, tmp_path, stage_name, pair):
    """Perturbing one reference stage by a relative 1e-4 fails the golden check for that stage.

    The check runs against a copy of the committed golden, never in regeneration mode."""
    if pair.name not in BUILTIN_NAMES:
        pytest.skip(f"checks the golden mechanism itself, on the built-in pair's n64_g2 (not on {pair.name})")
    _, reference = case_cache.get("n64_g2")
    golden = Path(__file__).with_suffix("") / "golden_n64_g2.npz"
    shutil.copy(golden, tmp_path / golden.name)
    checker = NDArraysRegressionFixture(tmp_path, tmp_path, _NoRegen(request))
    data, tolerances = golden_arrays(reference.stages)
    checker.check(data, basename="golden_n64_g2", tolerances=tolerances)  # unperturbed: passes
    perturbed = dict(reference.stages)
    perturbed[stage_name] = np.asarray(perturbed[stage_name]) * (1 + 1e-4)
    data, tolerances = golden_arrays(perturbed)
    with pytest.raises(AssertionError) as err:
        checker.check(data, basename="golden_n64_g2", tolerances=tolerances)
    message = str(err.value)
    assert stage_name + "." in message
    others = [s for s in stages.STAGE_NAMES if s != stage_name and f"\n{s}." in message]
    assert not others, f"only {stage_name} should differ, also reported: {others}"


NUMBERS = Path(__file__).parent / "data" / "default_report_numbers.json"


def test_forward_numbers_are_reproduced_bit_for_bit(case_cache, case_name, pair):
    """Every default case's verdict and, per stage, max_abs, rel_l2 and local error are the
    committed figures exactly (the default report is bitwise reproducible; a change of the
    harness's plumbing must not move a number). A deliberate change regenerates the file from
    a default report's parity_report.json."""
    import json

    if pair.name not in BUILTIN_NAMES:
        pytest.skip(f"the committed figures are the built-in pair's default report (not {pair.name}'s)")
    committed = json.loads(NUMBERS.read_text())["cases"]
    if case_name not in committed:
        pytest.skip(f"{case_name} is not a default case; the committed figures cover the default suite")
    result, _ = case_cache.get(case_name)
    want = committed[case_name]
    assert result.verdict == want["verdict"] and result.first_divergent_stage == want["first_divergent_stage"]
    got = {s.name: {"verdict": s.verdict, "max_abs": repr(s.max_abs), "rel_l2": repr(s.rel_l2),
                    "local_error": repr(s.local_error)} for s in result.stages}
    assert got == want["stages"]
