"""python -m parity.selftest --backward: backward-only faults pass the forward comparison and
are caught by the backward one at their expected adjoint stage; the clean port raises no alarm."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _selftest(*args):
    return subprocess.run([sys.executable, "-m", "parity.selftest", "--backward", "--quiet", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)


def test_backward_only_faults_are_caught_at_their_expected_adjoint_stage(tmp_path):
    proc = _selftest("--case", "n64_g2", "--fault", "amp_detached_before_combine", "far_field_backward_conjugate",
                     "--hub", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "selftest_backward.json").read_text())
    assert doc["verdict"] == "pass" and doc["false_alarms"] == []
    for row in doc["faults"]:
        got = row["cases"]["n64_g2"]
        assert row["status"] == "caught" and got["forward_verdict"] == "pass"  # the forward cannot see it
        assert any(w["first_divergent_stage"] == "grad:" + row["expected_stage"] for w in got["losses"].values())
    assert "2/2 backward-only faults caught" in proc.stdout


def test_an_unknown_backward_fault_is_bad_input(tmp_path):
    proc = _selftest("--fault", "nosuch", "--hub", str(tmp_path))
    assert proc.returncode == 2 and "unknown backward-only fault 'nosuch'" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "selftest_backward.json").exists()
