"""parity.report's parts without running any model: hub rules, drift, devices, JUnit, the page's
colours, figure helpers and the CLI's summary table (NumPy and matplotlib only, fast)."""
from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from parity.report import hub as hub_mod
from parity.report.devices import parse_devices, resolve_devices
from parity.report.drift import compare_to_baseline, stage_drift
from parity.report.html import colour
from parity.report.junit import to_junit

EPS32 = float(np.finfo(np.float32).eps)


# --------------------------------------------------------------------------- hub
def test_hub_check_new_folder_and_claim(tmp_path):
    hub = hub_mod.Hub(tmp_path / "a" / "b")
    assert hub.check(force=False) is None
    assert not (tmp_path / "a").exists()  # check only looks
    hub.claim(command=["x"], earlier=None)
    marker = json.loads((tmp_path / "a" / "b" / hub_mod.RUNNING).read_text())
    assert marker["pid"] == os.getpid() and marker["command"] == ["x"]
    hub.write_json("analysis/x.json", {"v": 1.5})
    assert hub.written == ["analysis/x.json"]
    hub.release()
    assert not (tmp_path / "a" / "b" / hub_mod.RUNNING).exists()


def test_write_json_is_strict(tmp_path):
    with pytest.raises(ValueError):
        hub_mod.write_json_atomic(tmp_path / "x.json", {"v": math.nan})
    assert not list(tmp_path.iterdir())  # no temporary file left behind


def test_force_removes_exactly_the_listed_files(tmp_path):
    root = tmp_path / "hub"
    for rel in ("parity_report.json", "index.html", "analysis/c1/amp.png", "captures/c1/tf.npz",
                "analysis/mine.txt", "notes.md"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    earlier = {"verdict": "pass", "cases": [], "artifacts": [
        "parity_report.json", "index.html", "analysis/c1/amp.png", "captures/c1/tf.npz", "../outside.txt",
        "/etc/passwd"]}
    (root / "parity_report.json").write_text(json.dumps(earlier))
    (tmp_path / "outside.txt").write_text("keep")
    hub = hub_mod.Hub(root)
    with pytest.raises(hub_mod.HubError, match="already holds a parity report"):
        hub.check(force=False)
    got = hub.check(force=True)
    assert got["artifacts"] == earlier["artifacts"]
    hub.claim(command=[], earlier=got, keep=("captures",))
    left = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert left == ["RUNNING", "analysis/mine.txt", "captures/c1/tf.npz", "notes.md"]
    assert not (root / "analysis" / "c1").exists()  # emptied folder pruned
    assert (tmp_path / "outside.txt").read_text() == "keep"


def test_stale_marker_is_replaced_live_one_refused(tmp_path):
    root = tmp_path / "hub"
    root.mkdir()
    (root / hub_mod.RUNNING).write_text(json.dumps({"pid": 2 ** 22 + 12345, "host": "elsewhere"}))
    (root / "summary.png").write_text("from the interrupted run")
    assert hub_mod.Hub(root).check(force=False, planned=["summary.png"]) is None
    import socket

    (root / hub_mod.RUNNING).write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    with pytest.raises(hub_mod.HubError, match="another run"):
        hub_mod.Hub(root).check(force=True)


def test_new_hub_path_is_unique(tmp_path):
    a = hub_mod.new_hub_path(tmp_path)
    a.mkdir()
    b = hub_mod.new_hub_path(tmp_path)
    assert a != b and b.name.startswith(a.name) and a.name.endswith("Z")


def test_case_key():
    assert hub_mod.case_key("n64_g2", "cpu") == "n64_g2"
    assert hub_mod.case_key("n64_g2", "cuda:1") == "n64_g2@cuda-1"


# --------------------------------------------------------------------------- drift
def _stage(max_abs, ref_max=1.0, name="amp", dtype="float32", shape=(1, 1, 4, 4)):
    return {"name": name, "max_abs": max_abs, "ref_max_abs": ref_max, "dtype": dtype, "shape": list(shape),
            "verdict": "pass"}


def test_stage_drift_floor_and_factor():
    # exact then, one round-off now: not drift
    d = stage_drift(_stage(EPS32), _stage(0.0), 10)
    assert not d["flagged"] and d["ratio"] == pytest.approx(2.0)
    # 100 round-offs now vs 1 then: drift
    d = stage_drift(_stage(100 * EPS32), _stage(EPS32), 10)
    assert d["flagged"] and d["ratio"] == pytest.approx(101 / 2)
    # the floor follows the stage scale
    assert not stage_drift(_stage(100 * EPS32, ref_max=1000.0), _stage(EPS32, ref_max=1000.0), 10)["flagged"]
    # non-finite now: flagged; non-finite then or another shape: not comparable
    assert stage_drift(_stage("nan"), _stage(1e-7), 10)["flagged"]
    assert stage_drift(_stage(1e-7), _stage("inf"), 10) is None
    assert stage_drift(_stage(1e-7, shape=(2, 1, 4, 4)), _stage(1e-7), 10) is None
    assert stage_drift({"name": "amp", "max_abs": None}, _stage(1e-7), 10) is None


def test_compare_to_baseline_matches_cases_by_name_and_device():
    now = [{"name": "a", "device": "cpu", "dtype": "float32", "stages": [_stage(1e-3)]},
           {"name": "b", "device": "cpu", "dtype": "float32", "stages": [_stage(1e-3)]},
           {"name": "c", "device": "cpu", "dtype": "float64", "stages": [_stage(1e-3)]},
           {"name": "a", "device": "cuda", "dtype": "float32", "stages": [_stage(1e-3)]}]
    base = {"created": "then", "verdict": "pass", "cases": [
        {"name": "a", "device": "cpu", "dtype": "float32", "stages": [_stage(1e-6)]},
        {"name": "c", "device": "cpu", "dtype": "float32", "stages": [_stage(1e-6)]}]}
    out = compare_to_baseline(now, base, 10, "reports/then")
    assert out["verdict"] == "fail" and out["n_flagged"] == 1
    assert out["flagged"][0]["case"] == "a" and out["flagged"][0]["device"] == "cpu"
    status = {(r["case"], r["device"]): r["status"] for r in out["cases"]}
    assert status[("a", "cpu")] == "compared"
    assert status[("b", "cpu")].startswith("new")
    assert status[("c", "cpu")].startswith("dtype changed")
    assert status[("a", "cuda")].startswith("new")
    assert now[0]["stages"][0]["drift"]["flagged"] and now[1]["stages"][0]["drift"] is None
    assert now[0]["drift_flagged"] == 1 and now[1]["drift_flagged"] == 0


# --------------------------------------------------------------------------- devices
def test_parse_devices():
    assert parse_devices("cpu, cuda,cuda:0,cuda:1") == ["cpu", "cuda", "cuda:1"]
    for bad in ("gpu", "cuda:x", "", " , "):
        with pytest.raises(ValueError, match="cpu, cuda"):
            parse_devices(bad)


def test_resolve_devices_reports_the_reason(monkeypatch):
    from parity.engine import Engine

    engine = Engine()
    monkeypatch.setattr(engine, "devices",
                        lambda: {"reference_tf": {"cpu": "CPU"}, "torch_impl": {"cpu": "CPU", "cuda": "H100"}})
    got = {d.device: d for d in resolve_devices(["cpu", "cuda"], engine)}
    assert got["cpu"].available and not got["cuda"].available
    assert "reference_tf sees no cuda device" in got["cuda"].reason and "torch_impl" not in got["cuda"].reason
    assert got["cuda"].to_dict()["status"] == "unavailable"


# --------------------------------------------------------------------------- junit, html
def _doc():
    st_ok = {"name": "amp", "verdict": "pass", "message": "ok"}
    st_bad = {"name": "canvas", "verdict": "fail", "message": "case b, stage canvas: FAILED\nMismatched elements: 3 / 10"}
    return {
        "devices": [{"device": "cpu", "status": "available"}, {"device": "cuda", "status": "unavailable",
                                                                "reason": "no GPU"}],
        "cases": [
            {"name": "a", "device": "cpu", "verdict": "pass", "stages": [st_ok], "timings": {"total_s": 1.5}},
            {"name": "b", "device": "cpu", "verdict": "fail", "stages": [st_ok, st_bad], "problems": [],
             "first_divergent_stage": "canvas", "root_cause_stage": "canvas", "timings": {"total_s": 2.0}},
            {"name": "c", "device": "cpu", "verdict": "fail", "error": "RuntimeError: boom", "stages": [],
             "timings": {"total_s": 0.1}},
        ],
        "drift": {"factor": 10, "flagged": [{"case": "a", "device": "cpu", "stage": "amp", "then": 1e-9, "now": 1e-6,
                                             "ratio": 1000.0}],
                  "cases": [{"case": "a", "device": "cpu", "status": "compared", "n_flagged": 1},
                            {"case": "b", "device": "cpu", "status": "new (not in the baseline)", "n_flagged": 0}]},
    }


def test_junit_counts():
    root = ET.fromstring(to_junit(_doc()))
    assert root.get("tests") == "6" and root.get("failures") == "2" and root.get("errors") == "1"
    assert root.get("skipped") == "2"
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"parity.cpu", "parity.cuda"}
    failure = next(tc for tc in root.iter("testcase") if tc.get("name") == "b").find("failure")
    assert "root cause canvas" in failure.get("message") and "Mismatched elements" in failure.text
    drift = next(tc for tc in root.iter("testcase") if tc.get("name") == "a drift").find("failure")
    assert "amp" in drift.text


def test_page_colours_follow_the_heat_map_scale():
    assert colour(None) == "#cccccc" and colour("nan") == "#cccccc"
    assert colour(0.0) == colour(1e-9) == "#1a9850"  # clipped at 1e-4
    assert colour(1.0) == "#ffffbf"
    assert colour(1e3) == colour("inf") == "#d73027"


# --------------------------------------------------------------------------- figures
def test_tiles_and_mosaic():
    from parity.report.figures import MAX_TILES, _resample, mosaic, tiles_of

    x = np.arange(5 * 4 * 3 * 3, dtype=float).reshape(5, 4, 3, 3)
    tiles, labels, what = tiles_of(x)
    assert len(tiles) == MAX_TILES and labels[0] == "0,0" and labels[-1] == "3,3" and "5x4" in what
    m = mosaic(tiles, gap=1)
    assert m.shape == (4 * 3 + 3, 4 * 3 + 3) and np.isnan(m[3, 0]) and m[0, 0] == 0
    assert len(tiles_of(np.zeros((2, 7, 7)))[0]) == 2 and len(tiles_of(np.zeros((7, 7)))[0]) == 1
    with pytest.raises(ValueError):
        tiles_of(np.zeros(3))
    big = np.zeros((1000, 1000))
    big[500, 500] = 1.0
    small = _resample(big, peak=True)
    assert max(small.shape) <= 400 and small.max() == 1.0  # block max keeps the peak
    assert _resample(np.zeros((20, 20)), peak=False).shape[0] >= 140


def test_stage_figure_is_written_and_readable(tmp_path):
    import matplotlib.image as mpimg

    from parity.report.figures import error_by_stage, stage_figure, summary_heatmap

    rng = np.random.default_rng(0)
    ref = (rng.standard_normal((2, 4, 16, 16)) + 1j * rng.standard_normal((2, 4, 16, 16))).astype(np.complex64)
    stage_figure(tmp_path / "c.png", "case x", "exit_wave", ref, ref * (1 + 1e-6))
    stage_figure(tmp_path / "r.png", "case x", "amp", ref.real, ref.real)  # identical: no division by zero
    error_by_stage(tmp_path / "e.png", "case x", [{"name": "amp", "margin": 0.5, "local_error": 0.1, "verdict": "pass"},
                                                  {"name": "canvas", "margin": None, "local_error": None,
                                                   "verdict": "fail"}])
    summary_heatmap(tmp_path / "s.png", "t", ["a", "b"], ["amp", "canvas"], [[0.1, 2.0], [None, 0.0]],
                    [[False, True], [False, False]])
    for name in ("c.png", "r.png", "e.png", "s.png"):
        img = mpimg.imread(tmp_path / name)
        assert img.ndim == 3 and min(img.shape[:2]) > 50


def test_shown_margin_of_a_stage_with_nonfinite_values():
    from parity.report.figures import shown_margin

    assert shown_margin(0.5, None, "pass") == (0.5, "0.5")
    assert shown_margin(0.01, 5.0, "fail") == (5.0, "L5")
    # the margin of the finite elements is no error / tolerance of a stage that holds NaN or Inf
    assert shown_margin(0.01, 0.01, "fail", nonfinite=1) == (math.inf, "NaN/Inf")
    assert shown_margin(0.01, None, "fail", nonfinite=3) == (math.inf, "NaN/Inf")


# --------------------------------------------------------------------------- CLI summary
def test_summary_table_lists_failures():
    from parity.report.__main__ import summary_table

    doc = _doc()
    for c in doc["cases"]:
        c.update(dtype="float32", key=c["name"], drift_flagged=1 if c["name"] == "a" else 0)
    doc.update(verdict="fail", hub="reports/x", summary={"passed": 1, "cases": 3},
               timings={"wall_s": 10.0, "forward_s": 5.0, "harness_s": 1.0, "harness_fraction": 0.1})
    doc["drift"].update(baseline={"hub": "reports/then"}, n_flagged=1)
    text = summary_table(doc)
    assert "verdict: FAIL  1/3 cases passed" in text
    assert "b: 1 failing stage(s): canvas" in text and "c: did not run to the end: RuntimeError: boom" in text
    assert "device cuda: unavailable (no GPU)" in text and "amp: max |d| 1e-09 -> 1e-06 (x1e+03)" in text
    assert "Mismatched elements" in summary_table(doc, verbose=1)
    quiet = summary_table(doc, quiet=True)
    assert "\na " not in quiet and "wall" not in quiet


def test_summary_table_shows_nonfinite_stages():
    from parity.report.__main__ import summary_table

    doc = _doc()
    b = doc["cases"][1]
    b["stages"][1].update(margin=0.0152, nonfinite={"elements": 1})
    b["stages"][0].update(margin=0.5)
    for c in doc["cases"]:
        c.update(dtype="float32", key=c["name"])
    doc.update(verdict="fail", hub="reports/x", summary={"passed": 1, "cases": 3}, drift=None,
               timings={"wall_s": 10.0, "forward_s": 5.0, "harness_s": 1.0, "harness_fraction": 0.1})
    text = summary_table(doc)
    assert "b: 1 failing stage(s): canvas (NaN/Inf)" in text
    row = next(line for line in text.splitlines() if line.startswith("b "))
    assert "canvas NaN/Inf" in row and "x0.0152" not in text
