"""Section ``forward``: port vs reference forward-pass time per case.

Each backend runs in its own long-lived worker process (:class:`benchmarks.pool.BenchPool`) with
the same pinned thread count; the two workers take turns case by case (never at the same time),
so both see similar machine load. Every case runs in float32 (the harness's setting; the default
suite's two float64 cases are run in float32 too). The first pass is the cold one (TensorFlow
traces its graph there), ``warmup`` more passes are discarded, then ``repeats`` passes are timed.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from parity import cases as case_registry
from parity.jobs import Job

from .common import Section, fmt_summary, summarize, table
from .pool import SIDES, BenchPool

BACKENDS = ("tf", "torch")


def backend_figures(bench: Dict[str, Any], warmup: int) -> Dict[str, Any]:
    """Summaries of one job's bench result: cold and warm forward, build, weight loading."""
    times = bench["forward_times"]
    warm = times[1 + warmup:]
    out = {
        "forward_cold_s": times[0] if times else None,
        "forward_warm": summarize(warm),
        "build_s": (bench.get("timings") or {}).get("build_s"),
        "load_weights": summarize(bench.get("load_weights_times", [])),
        "peak_rss_bytes": bench.get("peak_rss_bytes"),
    }
    return out


def case_row(name: str, per_backend: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    tf, pt = per_backend["tf"]["forward_warm"], per_backend["torch"]["forward_warm"]
    row: Dict[str, Any] = {"case": name, **per_backend}
    if tf["median"] and pt["median"]:
        row["ratio_median"] = pt["median"] / tf["median"]
        row["ratio_min"] = pt["min"] / tf["min"]
        # the widest ratio the two spreads allow (samples come from separate processes)
        row["ratio_range"] = [pt["min"] / tf["max"], pt["max"] / tf["min"]]
    return row


def run(case_names: Optional[Sequence[str]] = None, *, threads: int, repeats: int = 5, warmup: int = 1,
        workdir: Optional[Path] = None, omp_passive: bool = True, log=print) -> Dict[str, Any]:
    names = list(case_names) if case_names else [c.name for c in case_registry.suite("default")]
    rows: List[Dict[str, Any]] = []
    with Section("forward") as sec, tempfile.TemporaryDirectory(prefix="fwd-", dir=workdir) as tmp, \
            BenchPool(Path(tmp), threads, omp_passive=omp_passive) as pool:
        for b in BACKENDS:
            pool.start(b)
        for name in names:
            case = case_registry.get_case(name)
            config, weights, inputs = case_registry.prepare(case)
            per: Dict[str, Dict[str, Any]] = {}
            for b in BACKENDS:
                job = Job(side=SIDES[b], config=config, weights=weights, inputs=inputs, dtype="float32", device="cpu",
                          case=case.name, repeats=1 + warmup + repeats)
                _, bench = pool.run(job, save=False, weights_timing=True)
                per[b] = backend_figures(bench, warmup)
            row = case_row(name, per)
            row["batch"] = int(inputs["diffraction"].shape[0])
            row["patches"] = int(inputs["diffraction"].shape[0] * inputs["diffraction"].shape[1])
            row["N"] = int(config["N"])
            row["case_dtype"] = case.dtype
            rows.append(row)
            log(f"  forward [{threads} thread(s)] {name}: tf {fmt_summary(per['tf']['forward_warm'])}  "
                f"torch {fmt_summary(per['torch']['forward_warm'])}  ratio {row.get('ratio_median', float('nan')):.2f}")
        startup = dict(pool.startup)
    ratios = [r["ratio_median"] for r in rows if "ratio_median" in r]
    out = {**sec.record, "threads": threads, "omp_passive": omp_passive, "repeats": repeats, "warmup": warmup,
           "dtype": "float32",
           "workers": startup, "cases": rows,
           "ratio_over_cases": summarize(ratios),
           "cases_port_slower": [r["case"] for r in rows if r.get("ratio_median", 0) > 1.0],
           "target": "port no slower than the reference (ratio torch/tf <= 1)",
           "target_met": bool(ratios) and max(ratios) <= 1.0}
    return out


def render(res: Dict[str, Any]) -> str:
    rows = []
    for r in res["cases"]:
        tf, pt = r["tf"], r["torch"]
        rows.append([r["case"], f"{r['patches']}x{r['N']}^2", fmt_summary(tf["forward_warm"]),
                     fmt_summary(pt["forward_warm"]), f"{r.get('ratio_median', float('nan')):.2f}",
                     f"{r.get('ratio_min', float('nan')):.2f}",
                     f"{fmt_summary({'median': tf['forward_cold_s'], 'n': 1})} / "
                     f"{fmt_summary({'median': pt['forward_cold_s'], 'n': 1})}"])
    head = ["case", "B*C x N^2", "tf warm fwd", "torch warm fwd", "ratio(med)", "ratio(min)", "cold tf / torch"]
    rs = res["ratio_over_cases"]
    tail = (f"threads {res['threads']} (intra = inter-op, both backends"
            f"{', OMP_WAIT_POLICY=PASSIVE' if res.get('omp_passive') else ''}), float32, {res['warmup']} warm-up + "
            f"{res['repeats']} timed passes per case; ratio = torch / tf; over cases: {fmt_summary(rs, 'x')}; "
            f"target (ratio <= 1 for every case): {'MET' if res['target_met'] else 'MISSED'}"
            f"; load {res['load_before']} -> {res['load_after']}")
    return table(rows, head) + "\n" + tail
