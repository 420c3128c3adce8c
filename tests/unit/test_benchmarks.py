"""Smoke tests of benchmarks/ (the pieces of python -m benchmarks.run) at tiny sizes; no timing assertions."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks import comparator, forward, report_wall, run as bench_run, scaling
from benchmarks.common import (descendants, fit_exponent, fmt_summary, peak_rss_bytes, ratio_summary, summarize,
                               table, to_jsonable, tree_rss_bytes, write_json)


def test_summarize_and_ratios():
    s = summarize([3.0, 1.0, 2.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.0, 1.0, 3.0, 3)
    assert summarize([])["median"] is None
    r = ratio_summary([2.0, 4.0], [1.0, 2.0])
    assert r["median"] == 2.0 and r["n"] == 2
    assert fmt_summary(s).startswith("2.00s [")
    assert fmt_summary({"median": 0.5, "min": 0.5, "max": 0.5, "n": 1}, "%") == "50.0%"


def test_fit_exponent():
    x = [1e3, 1e4, 1e5]
    f = fit_exponent(x, [2e-3 * v for v in x])
    assert f["exponent"] == pytest.approx(1.0) and f["r2"] == pytest.approx(1.0)
    assert fit_exponent(x, [5.0, 5.0, 5.0])["exponent"] == pytest.approx(0.0, abs=1e-12)
    assert fit_exponent([1.0, 1.0], [1.0, 2.0])["exponent"] is None  # one distinct x


def test_table_json_and_proc(tmp_path):
    text = table([["a", "1"], ["bbb", "22"]], ["k", "v"])
    assert text.splitlines()[0].startswith("k") and "bbb" in text
    write_json(tmp_path / "r.json", {"x": np.float64(1.5), "nan": float("nan"), "p": tmp_path})
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["x"] == 1.5 and doc["nan"] == "nan"
    assert to_jsonable((np.int64(2),)) == [2]
    import os

    assert os.getpid() in descendants(os.getpid())
    assert tree_rss_bytes(os.getpid()) > 0 and peak_rss_bytes() > 0


def _report_doc():
    case = {"key": "c", "timings": {"prepare_s": 0.1, "import_s": 2.0, "build_s": 1.0, "forward_s": 3.0,
                                    "reference_forward_s": 2.0, "candidate_forward_s": 1.0, "local_s": 0.5,
                                    "compare_s": 0.2, "other_s": 0.1, "handoff_s": 0.0, "total_s": 7.0,
                                    "figures_s": 1.5, "write_s": 0.5}}
    return {"timings": {"wall_s": 10.0, "setup_s": 1.0, "harness_fraction": 0.35}, "cases": [case]}


def test_report_breakdown_and_render():
    b = report_wall.breakdown(_report_doc())
    assert b["finish_s"] == pytest.approx(2.0)  # 10 - 1 - 7
    assert b["harness_s"] == pytest.approx(4.0)  # 10 - (2 + 1 + 3)
    assert b["harness_share"] == pytest.approx(0.4)
    assert b["background_s"] == pytest.approx(2.0)
    b.update(external_wall_s=10.5, cpu_s=12.0)
    keys = [k for k, _ in report_wall.ROWS] + [k for k, _ in report_wall.FRACTIONS] + ["forward_s", "harness_s"]
    res = {"summary": {k: summarize([b[k]]) for k in keys}, "runs": [{}], "command": ["python", "-m", "parity.report"],
           "n_cases": 1, "isolation": "workers", "targets": {"harness_share_le_10pct": False, "wall_under_60s": True},
           "load_before": [0.0], "load_after": [0.0]}
    assert "harness share" in report_wall.render(res)


def test_comparator_tiny():
    res = comparator.measure((2, 1, 8, 8), repeats=1, threads=1)
    assert set(res["functions"]) == {comparator.BASELINE, "torch_assert_close", *comparator.OURS}
    for v in res["functions"].values():
        assert v["time"]["n"] == 1 and v["time"]["median"] > 0
    res.update(load_before=[0.0], load_after=[0.0], target_met=False)
    assert "assert_allclose" in comparator.render(res)


def _bench(times):
    return {"forward_times": times, "timings": {"build_s": 0.1}, "load_weights_times": [0.01, 0.02],
            "peak_rss_bytes": 1 << 20}


def test_forward_rows_and_render():
    per = {"tf": forward.backend_figures(_bench([1.0, 0.5, 0.2, 0.2]), warmup=1),
           "torch": forward.backend_figures(_bench([1.0, 0.5, 0.3, 0.1]), warmup=1)}
    assert per["tf"]["forward_warm"]["values"] == [0.2, 0.2]
    row = forward.case_row("x", per)
    assert row["ratio_median"] == pytest.approx(1.0)
    row.update(patches=4, N=64)
    res = {"cases": [row], "threads": 1, "omp_passive": False, "warmup": 1, "repeats": 2,
           "ratio_over_cases": summarize([1.0]), "target_met": True, "load_before": [], "load_after": []}
    assert "ratio" in forward.render(res)


def _point(N, B, t):
    side = {"forward_warm": summarize([t]), "transfer_s": 0.1, "peak_rss_bytes": 2 ** 30}
    return {"N": N, "B": B, "BNN": B * N * N, "compare_s": t / 2, "harness_s": 3 * t, "tf": side, "torch": side,
            "parent_peak_rss_bytes": 2 ** 29, "peak_rss_sum_bytes": 5 * 2 ** 29, "sampled_tree_peak_rss_bytes": 2 ** 30}


def test_scaling_analyse_and_render():
    pts = [_point(64, 8, 0.1), _point(64, 32, 0.4), _point(128, 128, 6.4)]
    res = scaling.analyse(pts, {"threads": 1, "repeats": 2, "warmup": 0, "gridsize": 2, "model": {}, "weights": "w",
                                "load_before": [], "load_after": []})
    assert res["fits"]["tf_forward_warm"]["exponent"] == pytest.approx(1.0)
    assert res["memory_point"]["target_met"] is True  # 2.5 GiB < 4 GiB
    assert "fitted exponent" in scaling.render(res)
    assert scaling._points("64,2;128,8") == [(64, 2), (128, 8)]


def test_cli_parsing():
    p = bench_run.build_parser()
    a = p.parse_args(["--quick", "--sections", "compare", "--forward-threads", "1"])
    assert a.quick and a.sections == "compare"
    assert bench_run.forward_threads("2,1") == [2, 1]
    assert bench_run.main(["--sections", "nope", "--no-write"]) == 2


def test_bench_pool_torch_job(tmp_path):
    """The worker protocol end to end with the port only (the cheaper framework): timed passes and a capture."""
    from parity import cases
    from parity.jobs import Job

    from benchmarks.pool import BenchPool

    config, weights, inputs = cases.prepare(cases.get_case("n64_g2").with_(batch=1))
    with BenchPool(tmp_path / "pool", threads=1) as pool:
        job = Job(side="torch_impl", config=config, weights=weights, inputs=inputs, repeats=3)
        res, bench = pool.run(job, save=True, reset_hwm=True, weights_timing=True)
        assert len(bench["forward_times"]) == 3 and len(bench["load_weights_times"]) == 3
        assert bench["peak_rss_bytes"] > 0 and bench["wall_s"] >= bench["execute_s"]
        assert "exit_wave" in res.capture.stages
        assert pool.startup["torch"]["intra_op"] == 1
        _, bench2 = pool.run(job, save=False)
        assert math.isfinite(bench2["forward_times"][-1])
    assert not list((tmp_path / "pool").rglob("job0*"))  # job folders are removed


def test_taps_overhead_at_a_tiny_size():
    pytest.importorskip("torch")
    pytest.importorskip("keras")
    from benchmarks import taps

    rows = taps.measure(["8x2x4x1"], repeats=1, warmup=0, log=lambda *a, **k: None)
    assert [r["side"] for r in rows] == ["example_torch", "example_keras"]
    assert all(r[k]["n"] == 1 for r in rows for k in ("plain", "hooks", "forward"))
    assert taps.parse_size("16x2x8x2") == {"size": 16, "channels": 2, "features": 8, "batch": 2}
