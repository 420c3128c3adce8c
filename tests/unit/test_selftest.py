"""parity.selftest: the CLI end to end on a small selection, the verdict logic, the table."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from parity import faults, selftest

ROOT = Path(__file__).resolve().parents[2]
SMALL_FAULTS = ("fftshift_missing", "merge_offset_sign", "probe_double_scale")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


# ---- end to end ------------------------------------------------------------------------------
def test_cli_small_selftest_writes_selftest_json(tmp_path):
    hub = tmp_path / "hub"
    proc = subprocess.run(
        [sys.executable, "-m", "parity.selftest", "--hub", str(hub), "--fault", *SMALL_FAULTS,
         "--case", "n64_g2", "--false-alarm-seeds", "2", "--quiet"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((hub / "selftest.json").read_text())
    assert doc["schema"] == "parity.selftest" and doc["verdict"] == "pass" and doc["problems"] == []
    assert [f["name"] for f in doc["faults"]] == list(SMALL_FAULTS)
    for row in doc["faults"]:
        fault = faults.get_fault(row["name"])
        assert row["detected"] and row["localised"] and row["status"] == "pass"
        assert row["expected_stage"] == row["found_stage"] == fault.expected_stage
        assert row["caught_by"] == ["n64_g2"] and row["cases_run"] == ["n64_g2"]
        assert row["margin_at_expected"] > 1
        assert row["largest_local_error_stage"] == fault.expected_stage
        assert row["runs"][0]["first_divergent_stage"] == fault.expected_stage
    fa = doc["false_alarm"]
    assert fa["verdict"] == "pass" and fa["seeds_per_case"] == 2 and fa["runs"] == 2 and fa["failures"] == 0
    assert 0 <= fa["worst_margin"] < 1 and fa["worst_case"] == "n64_g2"
    assert doc["clean"][0]["case"] == "n64_g2" and doc["clean"][0]["verdict"] == "pass"
    assert doc["timings"]["total_s"] > 0
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["fault", "expected", "found", "ok"]
    assert any(line.startswith("fftshift_missing") and " far_field_amp " in line and " yes " in line
               for line in lines)
    assert any(line.startswith("selftest PASS in ") for line in lines)
    assert lines[-1] == f"wrote {hub / 'selftest.json'}"


def _with_fault(monkeypatch, replacement):
    table = tuple(replacement if f.name == replacement.name else f for f in faults.FAULTS)
    monkeypatch.setattr(faults, "FAULTS", table)


def test_wrong_expected_stage_or_undetected_fault_exits_1(tmp_path, monkeypatch, capsys):
    """In this process, reference in this process too: a fault declared with a wrong expected
    stage, and a fault that float32 cannot see (a ~1e-8 change of the probe normalisation,
    named explicitly), both make the verdict fail and the exit code 1."""
    wrong = dataclasses.replace(faults.get_fault("fftshift_missing"), expected_stage="exit_wave")
    _with_fault(monkeypatch, wrong)
    hub = tmp_path / "hub"
    rc = selftest.main(["--hub", str(hub), "--fault", "fftshift_missing", "probe_norm_ones_mask",
                        "--case", "n64_g2", "--false-alarm-seeds", "0", "--isolation", "inprocess", "--quiet"])
    assert rc == 1
    doc = json.loads((hub / "selftest.json").read_text())
    assert doc["isolation"] == "inprocess" and doc["pair"]["candidate"] == "torch_impl"
    wrong_row, blind_row = doc["faults"]
    assert doc["verdict"] == "fail"
    assert wrong_row["status"] == "fail" and wrong_row["detected"] and not wrong_row["localised"]
    assert wrong_row["found_stage"] == "far_field_amp" and wrong_row["expected_stage"] == "exit_wave"
    assert wrong_row["reason"] == "first divergent stage far_field_amp in n64_g2, expected exit_wave"
    assert blind_row["status"] == "fail" and not blind_row["detected"] and blind_row["found_stage"] is None
    assert blind_row["reason"] == "not detected in 1 applicable case(s)"
    assert doc["problems"] == ["fault(s) not detected or not localised: fftshift_missing, probe_norm_ones_mask"]
    assert doc["false_alarm"]["verdict"] == "not_run"
    out = capsys.readouterr().out
    assert "  fftshift_missing: first divergent stage far_field_amp in n64_g2, expected exit_wave" in out
    assert "  probe_norm_ones_mask: not detected in 1 applicable case(s)" in out
    assert "selftest FAIL in " in out


# ---- verdict logic (no models) --------------------------------------------------------------
def _run(case, verdict, first=None):
    return {"case": case, "verdict": verdict, "first_divergent_stage": first, "root_cause_stage": first,
            "margin_at_expected": 5.0 if verdict == "fail" else 0.1, "local_error_at_expected": None,
            "problem_at_expected": None, "largest_local_error_stage": first, "largest_local_error": 5.0,
            "seconds": 0.0}


def test_summary_rules():
    f = faults.get_fault("merge_no_recentre")  # must show on n64_g2_biased_softplus
    ok = selftest.summarise_fault(f, [_run("n64_g2_biased_softplus", "fail", "canvas")], required=True)
    assert ok["status"] == "pass" and ok["found_stage"] == "canvas" and ok["margin_at_expected"] == 5.0
    missed = selftest.summarise_fault(f, [_run("n64_g2_biased_softplus", "pass")], required=True)
    assert missed["status"] == "fail" and missed["reason"] == "not detected in 1 applicable case(s)"
    g = faults.get_fault("fftshift_missing")
    mixed = selftest.summarise_fault(g, [_run("a", "fail", "far_field_amp"), _run("b", "fail", "exit_wave")],
                                     required=True)
    assert mixed["status"] == "fail" and mixed["reason"] == "first divergent stage exit_wave in b, expected far_field_amp"
    partial = selftest.summarise_fault(g, [_run("a", "pass"), _run("b", "fail", "far_field_amp")], required=True)
    assert partial["status"] == "pass" and partial["caught_by"] == ["b"] and partial["cases_run"] == ["a", "b"]
    h = faults.get_fault("smoothing_zero_padding")  # must show on n64_g2_f64_smooth
    must = selftest.summarise_fault(h, [_run("other", "fail", "exit_wave"), _run("n64_g2_f64_smooth", "pass")],
                                    required=True)
    assert must["status"] == "fail" and "must show: n64_g2_f64_smooth" in must["reason"]
    assert selftest.summarise_fault(g, [], required=False)["status"] == "skipped"
    assert selftest.summarise_fault(g, [], required=True)["status"] == "fail"


def test_table_format():
    g = faults.get_fault("fftshift_missing")
    doc = {"faults": [selftest.summarise_fault(g, [_run("n64_g2", "fail", "far_field_amp")], required=True)],
           "false_alarm": {"verdict": "pass", "runs": 40, "seeds_per_case": 20, "cases": [
               {"case": "n64_g2", "worst_margin": 0.2, "worst_stage": "phase", "worst_seed": 3, "verdict": "pass",
                "failures": []}], "failures": 0, "worst_margin": 0.2, "worst_case": "n64_g2", "worst_stage": "phase",
               "worst_seed": 3},
           "timings": {"total_s": 1.0, "baseline_s": 0.5, "faults_s": 0.3, "false_alarm_s": 0.2},
           "verdict": "pass", "problems": []}
    text = selftest.format_table(doc)
    assert "fftshift_missing" in text and "1/1 n64_g2" in text
    assert "false alarm: pass, 40 seeded runs (20 seeds x 1 cases), 0 failed; worst margin 0.2 (n64_g2, stage phase, seed 3)" in text
    assert text.splitlines()[-1] == "selftest PASS in 1.0 s (baseline 0.5 s, faults 0.3 s, false alarm 0.2 s)"


def test_list_names_every_fault(capsys):
    assert selftest.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(f.name in out for f in faults.FAULTS)
    assert "NO default case" not in out


def test_a_failing_reference_is_a_usage_error(tmp_path, capsys):
    """A reference side that cannot build is reported in one line with exit code 2."""
    from parity import sides

    sides.register_side("failing", "tests.helpers.sides:FailingSide")
    try:
        rc = selftest.main(["--hub", str(tmp_path / "hub"), "--pair", "failing:torch_impl", "--case", "n64_g1",
                            "--false-alarm-seeds", "0", "--fault", "fftshift_missing", "--quiet"])
    finally:
        sides.unregister_side("failing")
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("parity.selftest: error: the reference failed: RuntimeError: this side cannot build")
    assert not (tmp_path / "hub").exists()


def test_another_pair_runs_the_false_alarm_check_only(tmp_path, capsys):
    """The fault catalogue patches torch_impl: for the example pair only the false-alarm check
    runs (and says why); naming a fault for it is a usage error."""
    hub = tmp_path / "hub"
    assert selftest.main(["--hub", str(hub), "--pair", "example", "--false-alarm-seeds", "2", "--quiet"]) == 0
    doc = json.loads((hub / "selftest.json").read_text())
    assert doc["faults"] == [] and doc["false_alarm"]["runs"] == 4 and doc["false_alarm"]["verdict"] == "pass"
    assert "patches the torch_impl side" in doc["faults_not_run"]
    assert selftest.main(["--hub", str(tmp_path / "h2"), "--pair", "example", "--fault", "fftshift_missing",
                          "--quiet"]) == 2
    assert "the fault catalogue patches the torch_impl side" in capsys.readouterr().err
