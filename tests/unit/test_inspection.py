"""parity compare and parity show (parity/inspection.py): agreement with the report, output, refusals."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from parity.capture import load_capture
from parity.inspection import CANDIDATE_ROLES, compare_main, show_main
from parity.report import hub as hub_mod

CASE = "n64_g1"


def _captures(hub):
    """role -> path of the one case's captures, from the report's own map ("candidate": the compared one)."""
    case = hub["doc"]["cases"][0]
    caps = {role: hub["root"] / rel for role, rel in case["captures"].items()}
    caps["candidate"] = next(caps[r] for r in CANDIDATE_ROLES if r in caps)
    return caps


def _stage(doc, name):
    return next(s for s in doc["cases"][0]["stages"] if s["name"] == name)


def _one_line(capsys):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


# --------------------------------------------------------------------------- compare
def test_compare_agrees_with_the_report_on_a_stage(one_case_hub, capsys):
    caps = _captures(one_case_hub)
    assert compare_main([str(caps["reference"]), str(caps["candidate"]), "--stage", "canvas"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == _stage(one_case_hub["doc"], "canvas")["message"]


def test_compare_every_stage_and_a_plain_npz(one_case_hub, tmp_path, capsys):
    caps = _captures(one_case_hub)
    assert compare_main([str(caps["reference"]), str(caps["candidate"])]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    doc_stages = one_case_hub["doc"]["cases"][0]["stages"]
    assert lines[:-1] == [s["message"] for s in doc_stages] and lines[-1].startswith(f"case {CASE}: passed")
    # the same arrays in plain .npz files (no metadata) give the same numbers under the case's dtype
    for role in ("reference", "candidate"):
        np.savez(tmp_path / f"{role}.npz", **load_capture(caps[role]).stages)
    assert compare_main([str(tmp_path / "reference.npz"), str(tmp_path / "candidate.npz"), "--stage", "canvas",
                         "--dtype", "float32"]) == 0
    plain = capsys.readouterr().out.strip()
    assert plain == _stage(one_case_hub["doc"], "canvas")["message"].replace(f"case {CASE}", "case <unnamed>")


def test_compare_tight_tolerances_fail(one_case_hub, tmp_path, capsys):
    tight = tmp_path / "tight.toml"
    tight.write_text("[defaults.float32]\nrtol = 0.0\natol = 0.0\natol_scaled = 1e-12\n"
                     "[defaults.float64]\nrtol = 0.0\natol = 0.0\natol_scaled = 1e-18\n")
    caps = _captures(one_case_hub)
    assert compare_main([str(caps["reference"]), str(caps["candidate"]), "--stage", "canvas",
                         "--tolerances", str(tight)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"case {CASE}, stage canvas: FAILED") and "Mismatched elements" in out


def test_compare_truncated_capture_is_one_line(one_case_hub, tmp_path, capsys):
    caps = _captures(one_case_hub)
    bad = tmp_path / "cut.npz"
    data = caps["candidate"].read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    assert compare_main([str(caps["reference"]), str(bad)]) == 2
    line = _one_line(capsys)
    assert str(bad) in line and "corrupt or truncated" in line


@pytest.mark.parametrize("args, words", [
    (["{ref}", "{missing}"], ["does not exist"]),
    (["{ref}", "{port}", "--stage", "bogus"], ["unknown stage 'bogus'", "canvas"]),
    (["{ref}", "{port}", "--tolerances", "{missing}"], ["tolerance file", "does not exist"]),
    (["{ref}", "{foreign}"], ["not stages", "foreign.npz"]),
    (["{ref}"], ["the following arguments are required"]),
])
def test_compare_bad_input(args, words, one_case_hub, tmp_path, capsys):
    caps = _captures(one_case_hub)
    np.savez(tmp_path / "foreign.npz", weights=np.zeros(3))
    subs = {"{ref}": str(caps["reference"]), "{port}": str(caps["candidate"]), "{missing}": str(tmp_path / "missing"),
            "{foreign}": str(tmp_path / "foreign.npz")}
    assert compare_main([subs.get(a, a) for a in args]) == 2
    line = _one_line(capsys)
    for w in words:
        assert w in line


# --------------------------------------------------------------------------- show
def test_show_summary_case_and_stage(one_case_hub, capsys):
    root = one_case_hub["root"]
    assert show_main([str(root)]) == 0
    out = capsys.readouterr().out
    assert "verdict: PASS  1/1 cases passed" in out and CASE in out
    assert show_main([str(root), CASE]) == 0
    out = capsys.readouterr().out
    assert f"case {CASE}: passed" in out
    for rel in one_case_hub["doc"]["cases"][0]["captures"].values():
        assert str(root / rel) in out
    assert show_main([str(root), CASE, "canvas"]) == 0
    out = capsys.readouterr().out
    case = one_case_hub["doc"]["cases"][0]
    assert out.startswith(_stage(one_case_hub["doc"], "canvas")["message"] + "\n")
    assert str(root / case["figures"]["stages"]["canvas"]) in out
    cand = next(case["captures"][r] for r in CANDIDATE_ROLES if r in case["captures"])
    assert f"parity compare {root / case['captures']['reference']} {root / cand}" in out


def test_show_failing_stage_exit_1(one_case_hub, tmp_path, capsys):
    copy = tmp_path / "hub"
    shutil.copytree(one_case_hub["root"], copy)
    doc = json.loads((copy / hub_mod.REPORT_JSON).read_text())
    doc["verdict"] = doc["cases"][0]["verdict"] = "fail"
    doc["cases"][0]["stages"][5]["verdict"] = "fail"
    (copy / hub_mod.REPORT_JSON).write_text(json.dumps(doc))
    assert show_main([str(copy)]) == 1
    assert show_main([str(copy), CASE, doc["cases"][0]["stages"][5]["name"]]) == 1
    assert show_main([str(copy), CASE, doc["cases"][0]["stages"][4]["name"]]) == 0


def test_show_of_an_interrupted_hub_is_incomplete(one_case_hub, tmp_path, capsys):
    from parity.report import ReportOptions, build_report

    def interrupt(event, index, total, info):
        if event == "start":
            raise KeyboardInterrupt

    hub = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        build_report(ReportOptions(hub=hub, recheck=one_case_hub["root"]), interrupt)
    assert (hub / hub_mod.RUNNING).is_file() and not (hub / hub_mod.REPORT_JSON).exists()
    for args in ([str(hub)], [str(hub), CASE], [str(hub), CASE, "canvas"]):
        assert show_main(args) == 2
        line = _one_line(capsys)
        assert f"hub {hub} is incomplete" in line and "interrupted" in line and "no verdict" in line


def test_show_of_a_hub_being_written(tmp_path, capsys):
    import os
    import socket

    hub = tmp_path / "busy"
    hub.mkdir()
    (hub / hub_mod.RUNNING).write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(),
                                                   "started": "2030-01-01T000000Z"}))
    assert show_main([str(hub)]) == 2
    line = _one_line(capsys)
    assert "incomplete" in line and "still running" in line and "2030-01-01T000000Z" in line


@pytest.mark.parametrize("args, words", [
    (["{missing}"], ["does not exist"]),
    (["{empty}"], ["no parity_report.json"]),
    (["{hub}", "nope"], ["no case 'nope'", CASE]),
    (["{hub}", CASE, "nope"], ["no stage 'nope'", "canvas"]),
])
def test_show_bad_input(args, words, one_case_hub, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    subs = {"{missing}": str(tmp_path / "missing"), "{empty}": str(tmp_path / "empty"),
            "{hub}": str(one_case_hub["root"])}
    assert show_main([subs.get(a, a) for a in args]) == 2
    line = _one_line(capsys)
    for w in words:
        assert w in line
