"""Known divergences in the pytest parity suite (tests/parity/known.py), on the sqrt pair of
tests/helpers/sides.py (its candidate's pred_sqrt is 0.1 % off): registered stages are strict
xfails, a registered stage that passes fails (fixed: remove the entry), no entry fails."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
T = "tests/parity/test_forward.py"
TESTS = [f"{T}::test_forward_case[n64_g1]", f"{T}::test_forward_stage[n64_g1-pred_sqrt]",
         f"{T}::test_forward_stage[n64_g1-canvas]", f"{T}::test_forward_float64[n64_g1]"]
ENTRY = """
[[divergence]]
id = "{id}"
cases = "n64_g1"
stage = "{stage}"
dtype = "{dtype}"
reason = "the candidate scales its square root by 1.001"
where = "tests/helpers/sides.py (BuggySqrtSide.factor)"
measured = {{ err_over_tol = {measured}, command = "pytest tests/parity --pair sqrt", date = "2026-12-01" }}
"""
# as the harness measured them: pred_sqrt err/tol 50.0 in float32, 5.0e6 in float64
KNOWN = (ENTRY.format(id="f32", stage="pred_sqrt", dtype="float32", measured=50.0)
         + ENTRY.format(id="f64", stage="pred_sqrt", dtype="float64", measured=5.0e6))


def _suite(tmp_path, *args, tests=TESTS):
    cmd = [sys.executable, "-m", "pytest", "-p", "tests.helpers.sqrt_plugin", "--pair", "sqrt", "-q", "-rxXf",
           "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "base"), *tests, *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_registered_divergences_are_strict_xfails_and_fixed_entries_fail(tmp_path):
    reg = tmp_path / "sqrt.toml"
    reg.write_text('pair = "sqrt"\n' + KNOWN)
    proc = _suite(tmp_path, "--divergences", str(reg))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 passed, 3 xfailed" in out
    assert "XFAIL tests/parity/test_forward.py::test_forward_stage[n64_g1-pred_sqrt] - known divergence 'f32'" in out

    raw = _suite(tmp_path, "--no-divergences", tests=TESTS[:3])  # float32 only, to save a run
    assert raw.returncode == 1 and "2 failed, 1 passed" in raw.stdout, raw.stdout

    reg.write_text('pair = "sqrt"\n' + KNOWN + ENTRY.format(id="gone", stage="canvas", dtype="float32", measured=3.0))
    fixed = _suite(tmp_path, "--divergences", str(reg), tests=TESTS[1:3])
    assert fixed.returncode == 1, fixed.stdout
    assert "test_forward_stage[n64_g1-canvas]" in fixed.stdout and "fixed: remove the entry 'gone'" in fixed.stdout


def test_a_bad_registry_is_a_usage_error(tmp_path):
    reg = tmp_path / "bad.toml"
    reg.write_text('pair = "sqrt"\n' + KNOWN.replace('stage = "pred_sqrt"', 'stage = "pred_sqr"', 1))
    proc = _suite(tmp_path, "--divergences", str(reg), tests=TESTS[:1])
    assert proc.returncode == 4, proc.stdout + proc.stderr  # pytest's usage error: nothing ran
    assert "UsageError: known divergences:" in proc.stdout and "stage 'pred_sqr' is not a stage of pair sqrt" in proc.stdout
    assert "passed" not in proc.stdout
