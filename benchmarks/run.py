"""python -m benchmarks.run: measure the harness on this machine, print a table, write results JSON.

Sections (``--sections``, default all, in this order): ``report`` (cold wall time of
``python -m parity.report`` and its breakdown), ``compare`` (comparator throughput), ``forward``
(port vs reference forward pass per default case) and ``scaling`` (time and peak memory vs batch
and N). ``--quick`` shrinks every section (fewer repeats, two cases, small points) for a smoke run.
Results go to ``benchmarks/results/<date>.json`` (``<date>-quick.json`` with ``--quick``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from . import comparator, forward, report_wall, scaling
from .common import RESULTS_DIR, loadavg, machine_info, write_json

SECTIONS = ("report", "compare", "forward", "scaling")
QUICK_CASES = ("n64_g2", "n64_g1")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated sections to run (default: {','.join(SECTIONS)})")
    p.add_argument("--quick", action="store_true", help="small repeats and sizes (smoke run, ~1-2 min)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads of the comparator child (default: CPU count, what the harness uses)")
    p.add_argument("--forward-threads", default=None,
                   help="comma-separated thread counts for the forward section, each run in full "
                        "(intra-op = inter-op threads of both backends' workers; default: CPU count,1)")
    p.add_argument("--scaling-threads", type=int, default=1,
                   help="threads of both backends' workers in the scaling section (default 1: load-robust)")
    p.add_argument("--omp-spin", dest="omp_passive", action="store_false",
                   help="start the benchmark workers WITHOUT OMP_WAIT_POLICY=PASSIVE (the harness's workers set "
                        "it; see parity.pool.worker_env)")
    p.add_argument("--report-runs", type=int, default=None, help="cold runs of parity.report (default 2; quick 1)")
    p.add_argument("--report-args", default=None,
                   help="extra arguments for parity.report, one string (default: none = the default suite; "
                        "quick: --case n64_g2 n64_g1)")
    p.add_argument("--compare-repeats", type=int, default=None, help="comparator rounds (default 7; quick 2)")
    p.add_argument("--compare-shape", default=None, help="comparator array shape (default 16,4,128,128)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed forward passes per job (default: forward 3, scaling 2; quick 2)")
    p.add_argument("--warmup", type=int, default=None,
                   help="warm-up passes after the first (cold) one (default: forward 1, scaling 0)")
    p.add_argument("--cases", nargs="+", default=None, help="cases of the forward section (default: the default suite)")
    p.add_argument("--points", default=None, help="scaling points 'N,B;N,B;...' (default: "
                   + ";".join(f"{n},{b}" for n, b in scaling.DEFAULT_POINTS) + ")")
    p.add_argument("--out", type=Path, default=None, help="results file (default benchmarks/results/<date>.json)")
    p.add_argument("--no-write", action="store_true", help="print only, write no results file")
    p.add_argument("--workdir", type=Path, default=None, help="scratch folder (default /tmp/bench-<pid>, removed)")
    return p


def forward_threads(text: Optional[str]) -> List[int]:
    """Thread counts of the forward section: the given list, else (CPU count, 1) without duplicates."""
    if text:
        return [int(v) for v in text.split(",") if v.strip()]
    return list(dict.fromkeys([os.cpu_count() or 1, 1]))


def _headline(results: Dict[str, Any]) -> List[str]:
    lines = []
    s = {k: v for k, v in results["sections"].items() if "error" not in v}
    for k, v in results["sections"].items():
        if "error" in v:
            lines.append(f"{k}: FAILED ({v['error']})")
    if "report" in s:
        r = s["report"]["summary"]
        lines.append(f"report: wall {r['external_wall_s']['median']:.1f}s (median of {r['external_wall_s']['n']}), "
                     f"harness share {100 * r['harness_share']['median']:.1f}% "
                     f"(report's own count {100 * r['report_harness_fraction']['median']:.1f}%) -> "
                     f"<=10%: {'MET' if s['report']['targets']['harness_share_le_10pct'] else 'MISSED'}, "
                     f"<60s: {'MET' if s['report']['targets']['wall_under_60s'] else 'MISSED'}")
    if "compare" in s:
        f = s["compare"]["functions"]
        lines.append(f"compare: full per-stage comparison {f['compare_arrays_patches']['ratio_to_assert_allclose']['median']:.2f}x, "
                     f"compare() one stage {f['compare_one_stage']['ratio_to_assert_allclose']['median']:.2f}x "
                     f"assert_allclose -> <=2x: {'MET' if s['compare']['target_met'] else 'MISSED'}")
    for fw in (s.get("forward") or {}).get("by_threads", []):
        rs = fw["ratio_over_cases"]
        lines.append(f"forward ({fw['threads']} thread(s)): torch/tf warm ratio over cases median {rs['median']:.2f} "
                     f"[{rs['min']:.2f}-{rs['max']:.2f}]; port slower on {len(fw['cases_port_slower'])}/"
                     f"{len(fw['cases'])} cases -> {'MET' if fw['target_met'] else 'MISSED'}")
    if "scaling" in s:
        sc = s["scaling"]
        f = sc["fits"]
        exps = ", ".join(f"{k} {v['exponent']:.2f}" for k, v in f.items() if v["exponent"] is not None)
        m = sc.get("memory_point")
        mem = (f"; peak RSS N={m['N']} B={m['B']} {m['peak_rss_sum_bytes'] / 2 ** 30:.2f} GiB (sum of peaks) -> "
               f"<4GiB: {'MET' if m['target_met'] else 'MISSED'}") if m else ""
        lines.append(f"scaling ({sc['threads']} thread(s)): exponents (all points) {exps}{mem}")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in wanted if s not in SECTIONS]
    if bad:
        print(f"python -m benchmarks.run: error: unknown section(s) {bad}; expected {list(SECTIONS)}", file=sys.stderr)
        return 2
    q = args.quick
    own_workdir = args.workdir is None
    workdir = args.workdir or Path(f"/tmp/bench-{os.getpid()}")
    workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    results: Dict[str, Any] = {
        "schema": "benchmarks.results", "schema_version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": q,
        "command": ["python", "-m", "benchmarks.run", *(sys.argv[1:] if argv is None else list(argv))],
        "threads": args.threads, "machine": machine_info(), "load_start": loadavg(), "sections": {},
    }
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    rendered: List[str] = []

    def section(name: str, title: str, fn) -> None:
        """Run one section; a failing section is recorded with its error and the others still run."""
        try:
            fn()
        except Exception as exc:  # e.g. parity.report crashed: keep the other figures
            log(f"!! section {name} failed: {type(exc).__name__}: {exc}")
            results["sections"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            rendered.append(f"{title}\nFAILED: {type(exc).__name__}: {exc}")

    def do_report() -> None:
        log("== report: cold runs of python -m parity.report")
        extra = args.report_args.split() if args.report_args is not None else (["--case", *QUICK_CASES] if q else [])
        res = report_wall.run(runs=args.report_runs or (1 if q else 2), extra_args=extra, workdir=workdir, log=log)
        results["sections"]["report"] = res
        rendered.append("## 1. python -m parity.report, cold\n" + report_wall.render(res))

    def do_compare() -> None:
        log("== compare: comparator throughput")
        shape = tuple(int(v) for v in args.compare_shape.split(",")) if args.compare_shape else (
            (4, 4, 64, 64) if q else comparator.SHAPE)
        res = comparator.run(shape, repeats=args.compare_repeats or (2 if q else 7), threads=args.threads)
        results["sections"]["compare"] = res
        rendered.append("## 2. comparator throughput\n" + comparator.render(res))

    def do_forward() -> None:
        log("== forward: port vs reference per case")
        runs = []
        results["sections"]["forward"] = {"by_threads": runs}
        for t in forward_threads(args.forward_threads):
            res = forward.run(args.cases or (QUICK_CASES if q else None), threads=t,
                              repeats=args.repeats or (2 if q else 3),
                              warmup=1 if args.warmup is None else args.warmup, workdir=workdir,
                              omp_passive=args.omp_passive, log=log)
            runs.append(res)
            rendered.append(f"## 3. forward pass, port vs reference ({t} thread(s))\n" + forward.render(res))

    def do_scaling() -> None:
        log("== scaling: time and peak memory vs batch and N")
        points = scaling._points(args.points) if args.points else list(
            scaling.QUICK_POINTS if q else scaling.DEFAULT_POINTS)
        res = scaling.run(points, threads=args.scaling_threads, repeats=args.repeats or 2,
                          warmup=0 if args.warmup is None else args.warmup, workdir=workdir,
                          omp_passive=args.omp_passive, log=log)
        results["sections"]["scaling"] = res
        rendered.append("## 4. scaling\n" + scaling.render(res))

    steps = {"report": (do_report, "## 1. python -m parity.report, cold"),
             "compare": (do_compare, "## 2. comparator throughput"),
             "forward": (do_forward, "## 3. forward pass, port vs reference"),
             "scaling": (do_scaling, "## 4. scaling")}
    try:
        for name in SECTIONS:
            if name in wanted:
                fn, title = steps[name]
                section(name, title, fn)
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    results["load_end"] = loadavg()
    results["total_wall_s"] = time.perf_counter() - t_start
    results["headline"] = _headline(results)
    print("\n\n".join(rendered))
    print()
    print("\n".join(results["headline"]))
    print(f"total {results['total_wall_s']:.0f}s; load average (1/5/15 min) {results['load_start']} at start, "
          f"{results['load_end']} at end; {os.cpu_count()} CPUs; "
          f"command: {' '.join(results['command'])}")
    if not args.no_write:
        out = args.out or RESULTS_DIR / (time.strftime("%Y-%m-%d") + ("-quick" if q else "") + ".json")
        write_json(out, results)
        print(f"results: {out}")
    return 1 if any("error" in v for v in results["sections"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
