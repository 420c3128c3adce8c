"""scripts/nightly.py end to end on one small case: green, a planted failure, planted drift."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--", "--case", "n64_g1", "--isolation", "inprocess", "--no-figures", "-q"]


def _nightly(reports, *args):
    cmd = [sys.executable, str(ROOT / "scripts" / "nightly.py"), "--reports", str(reports), "--suite", "default",
           "--skip-pytest", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def green(tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    proc = _nightly(reports, "--hub", str(reports / "nightly-1"), "--baseline", "auto", *SMALL)
    return reports, proc


def test_green_run_passes_and_writes_a_hub(green):
    reports, proc = green
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((reports / "nightly-1" / "parity_report.json").read_text())
    assert report["verdict"] == "pass"
    assert (reports / "nightly-1" / "junit-report.xml").exists()
    assert "no earlier green nightly hub" in proc.stdout


def test_planted_failure_fails_the_gate(green, tmp_path):
    reports, _ = green
    tight = tmp_path / "tight.toml"
    tight.write_text("[defaults.float32]\nrtol = 0.0\natol = 0.0\natol_scaled = 1e-12\n"
                     "[defaults.float64]\nrtol = 0.0\natol = 0.0\natol_scaled = 1e-16\n")
    proc = _nightly(reports, "--hub", str(reports / "nightly-2"), "--baseline", "none", *SMALL,
                    "--tolerances", str(tight))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert json.loads((reports / "nightly-2" / "parity_report.json").read_text())["verdict"] == "fail"


def test_planted_drift_fails_the_gate_and_auto_baseline_finds_the_last_green(green, tmp_path):
    reports, _ = green
    # a fabricated earlier green hub whose errors were 1000x smaller
    report = json.loads((reports / "nightly-1" / "parity_report.json").read_text())
    for case in report["cases"]:
        for stage in case["stages"]:
            if isinstance(stage.get("max_abs"), (int, float)):
                stage["max_abs"] = stage["max_abs"] / 1000.0
    earlier = reports / "nightly-0"
    earlier.mkdir()
    (earlier / "parity_report.json").write_text(json.dumps(report))
    proc = _nightly(reports, "--hub", str(reports / "nightly-3"), "--baseline", str(earlier), *SMALL)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    drift = json.loads((reports / "nightly-3" / "parity_report.json").read_text())["drift"]
    assert sum(c["n_flagged"] for c in drift["cases"]) >= 1 and drift["factor"] == 10.0
    sys.path.insert(0, str(ROOT / "scripts"))
    import nightly

    assert nightly.last_green(reports, exclude=reports / "nightly-3") == reports / "nightly-1"


def test_the_gate_on_another_pair(tmp_path):
    """--pair runs both steps (the parity suite and the report) on that pair; its hubs are its own."""
    reports = tmp_path / "reports"
    reports.mkdir()
    cmd = [sys.executable, str(ROOT / "scripts" / "nightly.py"), "--reports", str(reports), "--suite", "default",
           "--pair", "example", "--baseline", "auto", "--", "--no-figures", "-q"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (hub,) = reports.glob("nightly-example-*")
    doc = json.loads((hub / "parity_report.json").read_text())
    assert doc["pair"]["name"] == "example" and doc["verdict"] == "pass"
    assert (hub / "junit-pytest.xml").is_file() and "--pair example" in proc.stdout


SQRT_ENTRY = """pair = "sqrt"

[[divergence]]
cases = "n64_g1"
stage = "pred_sqrt"
dtype = "float32"
reason = "the candidate scales its square root by 1.001"
where = "tests/helpers/sides.py (BuggySqrtSide.factor)"
measured = { err_over_tol = 50.0, command = "python -m parity.report --pair-from tests.helpers.sides:registered_sqrt_pair --case n64_g1", date = "2026-12-01" }
"""


def test_the_gate_tolerates_a_known_divergence_and_fails_a_new_one(tmp_path):
    """The sqrt pair's candidate is 0.1 % off at pred_sqrt: registered, the gate is green; not, red."""
    reg = tmp_path / "sqrt.toml"
    reg.write_text(SQRT_ENTRY)
    pair = ["--", "--pair-from", "tests.helpers.sides:registered_sqrt_pair", *SMALL[1:]]
    known = _nightly(tmp_path, "--hub", str(tmp_path / "nightly-k"), "--baseline", "none", "--divergences", str(reg),
                     *pair)
    assert known.returncode == 0, known.stdout + known.stderr
    assert "cases known (tolerated): 1, fixed (remove the entry): 0, failed: 0" in known.stdout
    assert json.loads((tmp_path / "nightly-k" / "parity_report.json").read_text())["cases"][0]["verdict"] == "known"
    new = _nightly(tmp_path, "--hub", str(tmp_path / "nightly-n"), "--baseline", "none", *pair)
    assert new.returncode == 1, new.stdout + new.stderr
    assert "cases known (tolerated): 0, fixed (remove the entry): 0, failed: 1" in new.stdout
