"""Section ``scaling``: time and peak memory of one case as the batch and N grow.

The case family is ``n64_g2``'s model (gridsize 2, n_filters_scale 1, the other fields at their
defaults) with Glorot weights (seed 1; the trained set exists for N=64 only), at each point
(N, B). Inputs come from :func:`parity.synthetic.make_batch` (integer offsets, disk probe), scaled
as :func:`parity.cases.prepare` does, so no stored fixture is needed.

Each point runs the harness's path of :func:`parity.run.run_case` with worker isolation (table
tolerances): the reference job, then the port job with the reference's stages as teacher, each in
its backend's long-lived worker process (:class:`benchmarks.pool.BenchPool`, same job files and
captures as :class:`parity.pool.WorkerPool`), then :func:`parity.compare.compare` in
the parent. The jobs run extra forward passes (1 warm-up + ``repeats``) for the timing.

All of it runs in a child process (``python -m benchmarks.scaling --child``), the *harness
parent*. Memory: each process's peak RSS (VmHWM, reset before every point with
/proc/self/clear_refs) and their sum, an upper bound of the simultaneous peak; the benchmark
script also samples the RSS of the whole process tree every 50 ms during the harness run (the
observed simultaneous peak). The timing jobs that follow do not count towards memory.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .common import GIB, ROOT, Section, child_env, fit_exponent, fmt_summary, summarize, table, tree_rss_bytes

#: (N, B) points: batch sweeps at N=64 and N=128, then N=256 at B=8.
DEFAULT_POINTS: Tuple[Tuple[int, int], ...] = ((64, 8), (64, 32), (64, 128), (128, 8), (128, 32), (256, 8),
                                              (128, 128))
QUICK_POINTS: Tuple[Tuple[int, int], ...] = ((64, 2), (64, 8), (128, 2))
GRIDSIZE = 2
MODEL = {"n_filters_scale": 1}
MEMORY_POINT = (128, 128)
MEMORY_LIMIT = 4 * GIB
LARGE_BNN = 131072  # B*N*N from which fixed per-call costs are small (fits_large)


def make_inputs(N: int, B: int, seed: int = 1):
    """(config dict, weights, canonical inputs) of the scaling case at (N, B)."""
    import numpy as np

    from parity import synthetic
    from reference_tf.config import ModelConfig
    from reference_tf.weights import init_weights

    cfg = ModelConfig(N=N, gridsize=GRIDSIZE, **MODEL)
    arrays, _ = synthetic.make_batch(N=N, gridsize=GRIDSIZE, B=B, seed=seed, offsets_kind="integer",
                                     probe_kind="disk", probe_scale=cfg.probe_scale)
    inputs = {  # as parity.cases.prepare: stored float32 / complex64, then float64 / complex128
        "diffraction": cfg.scale * np.asarray(arrays["X"].astype(np.float32), dtype=np.float64),
        "offsets": np.asarray(arrays["offsets"], dtype=np.float64),
        "probe_raw": np.asarray(arrays["probe_raw"].astype(np.complex64), dtype=np.complex128),
    }
    return cfg.to_dict(), init_weights(cfg, 1), inputs


def run_point(pool, N: int, B: int, repeats: int, warmup: int, on_harness_done=None) -> Dict[str, Any]:
    """One point in the harness parent.

    1. The harness run, as :func:`parity.run.run_case` does it with workers: inputs, the reference
       job, the port job with the reference's stages as teacher (one forward pass each, captures
       written and read back as npz), :func:`parity.compare.compare`. Peak RSS of every process
       is read here (extra forward passes would hold extra outputs, so none are run).
    2. Timing jobs (no teacher, no capture files): 1 cold + ``warmup`` + ``repeats`` forward passes
       per backend; the warm passes give the forward time.
    """
    from parity.compare import compare
    from parity.jobs import Job
    from parity.tolerances import load_tolerances

    from .common import peak_rss_bytes, reset_peak_rss
    from .pool import SIDES

    reset_peak_rss()
    t0 = time.perf_counter()
    config, weights, inputs = make_inputs(N, B)
    inputs_s = time.perf_counter() - t0
    name = f"scaling_N{N}_B{B}"

    def job(backend, teacher=None, repeats_=1):
        return Job(side=SIDES[backend], config=config, weights=weights, inputs=inputs, dtype="float32", device="cpu",
                   case=name, teacher=teacher, repeats=repeats_)

    ref, rb = pool.run(job("tf"), save=True, reset_hwm=True)
    port, pb = pool.run(job("torch", ref.capture.stages), save=True, reset_hwm=True)
    t0 = time.perf_counter()
    result = compare(ref.capture, port.capture, load_tolerances(), case=name, dtype="float32", device="cpu",
                     local=port.local)
    compare_s = time.perf_counter() - t0
    parent_peak = peak_rss_bytes()
    verdict = result.verdict
    del ref, port, result
    if on_harness_done is not None:
        on_harness_done()
    per: Dict[str, Any] = {}
    for backend, b in (("tf", rb), ("torch", pb)):
        t = b["timings"]
        _, tb = pool.run(job(backend, repeats_=1 + warmup + repeats), save=False)
        times = tb["forward_times"]
        per[backend] = {"forward_warm": summarize(times[1 + warmup:]), "forward_cold_s": times[0],
                        "harness_forward_s": t.get("forward_s"), "build_s": t.get("build_s"),
                        "local_s": t.get("local_s"), "import_s": t.get("import_s"),
                        "read_s": b["read_s"], "save_s": b["save_s"], "write_s": b["write_s"], "load_s": b["load_s"],
                        "transfer_s": b["write_s"] + b["read_s"] + b["save_s"] + b["load_s"],
                        "harness_job_s": b["wall_s"], "peak_rss_bytes": b["peak_rss_bytes"],
                        "hwm_reset": b["hwm_reset"]}
    end_to_end = per["tf"]["harness_job_s"] + per["torch"]["harness_job_s"] + compare_s
    return {"N": N, "B": B, "C": GRIDSIZE ** 2, "BNN": B * N * N, "elements_per_stage": B * GRIDSIZE ** 2 * N * N,
            "inputs_s": inputs_s, "compare_s": compare_s, "harness_s": end_to_end, "verdict": verdict,
            "tf": per["tf"], "torch": per["torch"], "parent_peak_rss_bytes": parent_peak,
            "peak_rss_sum_bytes": (parent_peak or 0) + (rb["peak_rss_bytes"] or 0) + (pb["peak_rss_bytes"] or 0)}


def child_main(points: Sequence[Tuple[int, int]], threads: int, repeats: int, warmup: int, workdir: Path,
               omp_passive: bool = True) -> int:
    from .pool import BenchPool

    out = sys.stdout
    with BenchPool(workdir, threads, omp_passive=omp_passive) as pool:
        for b in ("tf", "torch"):
            pool.start(b)
        out.write("WORKERS " + json.dumps(pool.startup) + "\n")
        out.flush()
        for i, (N, B) in enumerate(points):
            out.write(f"BEGIN {i}\n")
            out.flush()

            def harness_done() -> None:
                out.write(f"HARNESS_DONE {i}\n")
                out.flush()

            res = run_point(pool, N, B, repeats, warmup, harness_done)
            out.write("POINT " + json.dumps(res) + "\n")
            out.flush()
    return 0


class _Sampler:
    """Samples the RSS of a process tree every ``interval`` s; keeps the max per point index."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval = pid, interval
        self.index: Optional[int] = None
        self.peaks: Dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> "_Sampler":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            i = self.index
            if i is None:
                continue
            rss = tree_rss_bytes(self.pid)
            if rss > self.peaks.get(i, 0):
                self.peaks[i] = rss

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def run(points: Sequence[Tuple[int, int]] = DEFAULT_POINTS, *, threads: int, repeats: int = 3, warmup: int = 0,
        workdir: Optional[Path] = None, timeout: float = 900, omp_passive: bool = True, log=print) -> Dict[str, Any]:
    results: List[Dict[str, Any]] = []
    with Section("scaling") as sec, tempfile.TemporaryDirectory(prefix="scaling-", dir=workdir) as tmp:
        cmd = [sys.executable, "-m", "benchmarks.scaling", "--child", "--points",
               ";".join(f"{n},{b}" for n, b in points), "--threads", str(threads), "--repeats", str(repeats),
               "--warmup", str(warmup), "--workdir", tmp] + ([] if omp_passive else ["--omp-spin"])
        err_path = Path(tmp) / "child.err"
        with open(err_path, "w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=str(ROOT),
                                    env=child_env())
        sampler = _Sampler(proc.pid).start()
        deadline = time.perf_counter() + timeout
        workers: Dict[str, Any] = {}
        try:
            for line in proc.stdout:
                if line.startswith("WORKERS "):
                    workers = json.loads(line[8:])
                elif line.startswith("BEGIN "):
                    sampler.index = int(line.split()[1])
                elif line.startswith("HARNESS_DONE "):
                    sampler.index = None  # the timing jobs that follow are not the harness run
                elif line.startswith("POINT "):
                    res = json.loads(line[6:])
                    res["sampled_tree_peak_rss_bytes"] = sampler.peaks.get(len(results))
                    results.append(res)
                    log(f"  scaling N={res['N']} B={res['B']}: tf {fmt_summary(res['tf']['forward_warm'])}  "
                        f"torch {fmt_summary(res['torch']['forward_warm'])}  compare {res['compare_s']:.2f}s  "
                        f"peak sum {res['peak_rss_sum_bytes'] / GIB:.2f} GiB")
                if time.perf_counter() > deadline:
                    proc.kill()
                    raise RuntimeError(f"scaling child exceeded {timeout:.0f}s")
            code = proc.wait()
        finally:
            sampler.stop()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if code != 0:
            raise RuntimeError(f"scaling child failed (exit {code}): {err_path.read_text()[-2000:]}")
    return analyse(results, {**sec.record, "threads": threads, "repeats": repeats, "warmup": warmup,
                             "workers": workers, "gridsize": GRIDSIZE, "model": MODEL, "weights": "glorot:1",
                             "omp_passive": omp_passive})


def analyse(results: List[Dict[str, Any]], meta: Dict[str, Any]) -> Dict[str, Any]:
    x = [r["BNN"] for r in results]
    fits = {
        "tf_forward_warm": fit_exponent(x, [r["tf"]["forward_warm"]["median"] for r in results]),
        "torch_forward_warm": fit_exponent(x, [r["torch"]["forward_warm"]["median"] for r in results]),
        "compare": fit_exponent(x, [r["compare_s"] for r in results]),
        "harness_end_to_end": fit_exponent(x, [r["harness_s"] for r in results]),
        "peak_rss_sum": fit_exponent(x, [r["peak_rss_sum_bytes"] for r in results]),
    }
    big = [r for r in results if r["BNN"] >= LARGE_BNN]
    xb = [r["BNN"] for r in big]
    fits_large = {
        "tf_forward_warm": fit_exponent(xb, [r["tf"]["forward_warm"]["median"] for r in big]),
        "torch_forward_warm": fit_exponent(xb, [r["torch"]["forward_warm"]["median"] for r in big]),
        "compare": fit_exponent(xb, [r["compare_s"] for r in big]),
        "harness_end_to_end": fit_exponent(xb, [r["harness_s"] for r in big]),
    }
    mem = [r for r in results if (r["N"], r["B"]) == MEMORY_POINT]
    out = {**meta, "points": results, "fits": fits, "fits_large": fits_large, "large_bnn": LARGE_BNN,
           "fit_over": "log(time or bytes) vs log(B*N*N), least squares; fits: all points, fits_large: B*N*N >= "
                       f"{LARGE_BNN} (fixed per-call costs matter less)"}
    if mem:
        m = mem[0]
        bound = m["peak_rss_sum_bytes"]
        out["memory_point"] = {"N": m["N"], "B": m["B"], "peak_rss_sum_bytes": bound,
                               "sampled_tree_peak_rss_bytes": m.get("sampled_tree_peak_rss_bytes"),
                               "limit_bytes": MEMORY_LIMIT, "target_met": bound < MEMORY_LIMIT}
    out["target"] = "cost linear in B*N*N (fitted exponent ~1); peak RSS at B=128, N=128 < 4 GiB"
    return out


def render(res: Dict[str, Any]) -> str:
    rows = []
    for r in res["points"]:
        rows.append([f"{r['N']}", f"{r['B']}", f"{r['BNN']:,}", fmt_summary(r["tf"]["forward_warm"]),
                     fmt_summary(r["torch"]["forward_warm"]), f"{r['compare_s']:.2f}s",
                     f"{r['tf']['transfer_s'] + r['torch']['transfer_s']:.2f}s", f"{r['harness_s']:.1f}s",
                     f"{r['tf']['peak_rss_bytes'] / GIB:.2f}/{r['torch']['peak_rss_bytes'] / GIB:.2f}/"
                     f"{r['parent_peak_rss_bytes'] / GIB:.2f}",
                     f"{r['peak_rss_sum_bytes'] / GIB:.2f}",
                     f"{(r.get('sampled_tree_peak_rss_bytes') or 0) / GIB:.2f}"])
    head = ["N", "B", "B*N*N", "tf warm fwd", "torch warm fwd", "compare", "npz transfer", "harness run",
            "peak GiB tf/torch/parent", "sum GiB", "sampled GiB"]
    f = res["fits"]
    fit_txt = ", ".join(f"{k} {v['exponent']:.2f} (r2 {v['r2']:.3f})" for k, v in f.items() if v["exponent"] is not None)
    fl = res.get("fits_large") or {}
    large_txt = ", ".join(f"{k} {v['exponent']:.2f}" for k, v in fl.items() if v["exponent"] is not None)
    lines = [table(rows, head),
             f"fitted exponent vs B*N*N, all points: {fit_txt}",
             f"fitted exponent, points with B*N*N >= {res.get('large_bnn')}: {large_txt or '-'}",
             f"threads {res['threads']}, float32, {res['warmup']} warm-up + {res['repeats']} timed passes per backend; "
             f"model gridsize {res['gridsize']} {res['model']} {res['weights']}; load {res['load_before']} -> "
             f"{res['load_after']}"]
    m = res.get("memory_point")
    if m:
        lines.append(f"peak RSS at N={m['N']} B={m['B']}: sum of process peaks {m['peak_rss_sum_bytes'] / GIB:.2f} GiB, "
                     f"sampled simultaneous {(m['sampled_tree_peak_rss_bytes'] or 0) / GIB:.2f} GiB; "
                     f"target < 4 GiB: {'MET' if m['target_met'] else 'MISSED'}")
    return "\n".join(lines)


def _points(text: str) -> List[Tuple[int, int]]:
    return [tuple(int(v) for v in p.split(",")) for p in text.split(";") if p]  # type: ignore[misc]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling")
    p.add_argument("--child", action="store_true")
    p.add_argument("--points", type=_points, default=list(DEFAULT_POINTS), help="N,B;N,B;...")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--omp-spin", dest="omp_passive", action="store_false",
                   help="workers without OMP_WAIT_POLICY=PASSIVE (the harness's workers set it)")
    a = p.parse_args(argv)
    if a.child:
        return child_main(a.points, a.threads, a.repeats, a.warmup, a.workdir, a.omp_passive)
    print(render(run(a.points, threads=a.threads, repeats=a.repeats, warmup=a.warmup, workdir=a.workdir,
                     omp_passive=a.omp_passive)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
