"""Section ``compare``: comparator throughput on one pair of arrays.

The pair: a (16, 4, 128, 128) complex64 reference and a candidate that differs by ~1e-7
relative (both tolerances pass). Timed, interleaved round by round so load hits all alike:

* ``numpy.testing.assert_allclose`` and ``torch.testing.assert_close`` (the simplest tools);
* ``parity.stats.errors.error_stats`` (error statistics only);
* ``parity.stats.errors.compare_arrays(..., patches=True)``: everything the report needs for a patch
  stage (error statistics, per-patch errors, per-patch statistics of both sides);
* ``parity.compare.compare`` of a one-stage capture (``exit_wave``) with the tolerance table:
  the above plus building the StageResult.

It runs in a fresh child process (``python -m benchmarks.comparator``) with pinned threads, so
nothing else imported by the benchmark script (or another framework) shares its thread pools.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any, Dict, Sequence, Tuple

from .common import ROOT, Section, child_env, fmt_summary, ratio_summary, summarize, table

SHAPE = (16, 4, 128, 128)
BASELINE = "numpy_assert_allclose"
OURS = ("error_stats", "compare_arrays_patches", "compare_one_stage")


def make_pair(shape: Sequence[int], seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    ref = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    cand = (ref * (1 + 1e-7 * rng.standard_normal(shape))).astype(np.complex64)
    return ref, cand


def functions(ref, cand) -> Dict[str, Any]:
    import numpy as np
    import torch

    from parity.compare import compare
    from parity.stats.errors import compare_arrays, error_stats
    from parity.tolerances import load_tolerances

    tol = {"rtol": 1e-5, "atol": 0.0, "atol_scaled": 1e-5}
    table_ = load_tolerances()
    tr, tc = torch.from_numpy(ref), torch.from_numpy(cand)
    return {
        BASELINE: lambda: np.testing.assert_allclose(cand, ref, rtol=1e-5, atol=1e-5),
        "torch_assert_close": lambda: torch.testing.assert_close(tc, tr, rtol=1e-5, atol=1e-5),
        "error_stats": lambda: error_stats(ref, cand, tol),
        "compare_arrays_patches": lambda: compare_arrays(ref, cand, tol, patches=True),
        "compare_one_stage": lambda: compare({"exit_wave": ref}, {"exit_wave": cand}, table_, dtype="float32",
                                             stages=["exit_wave"]),
    }


def measure(shape: Sequence[int] = SHAPE, repeats: int = 7, threads: int = 1) -> Dict[str, Any]:
    """Interleaved timing in this process; returns per-function summaries and ratios to the baseline."""
    import torch

    torch.set_num_threads(threads)
    ref, cand = make_pair(shape)
    fns = functions(ref, cand)
    for f in fns.values():  # warm-up (imports, first-touch pages)
        f()
    times: Dict[str, list] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    n = ref.size
    out: Dict[str, Any] = {"shape": list(shape), "dtype": "complex64", "elements": n, "bytes_per_array": ref.nbytes,
                           "repeats": repeats, "threads": threads, "functions": {}}
    for k, ts in times.items():
        s = summarize(ts)
        out["functions"][k] = {"time": s, "melements_per_s": n / s["median"] / 1e6,
                               "ratio_to_assert_allclose": ratio_summary(ts, times[BASELINE])}
    return out


def run(shape: Sequence[int] = SHAPE, repeats: int = 7, threads: int = 1, timeout: float = 600) -> Dict[str, Any]:
    with Section("compare") as sec:
        cmd = [sys.executable, "-m", "benchmarks.comparator", "--child", "--shape", ",".join(map(str, shape)),
               "--repeats", str(repeats), "--threads", str(threads)]
        t = str(threads)
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT), timeout=timeout,
                              env=child_env({"OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t, "OPENBLAS_NUM_THREADS": t}))
        if proc.returncode != 0:
            raise RuntimeError(f"comparator child failed: {proc.stderr.strip()[-2000:]}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update(sec.record)
    full = res["functions"]["compare_arrays_patches"]["ratio_to_assert_allclose"]["median"]
    stage = res["functions"]["compare_one_stage"]["ratio_to_assert_allclose"]["median"]
    res["target"] = "full per-stage comparison with per-patch statistics <= 2x numpy.testing.assert_allclose"
    res["target_met"] = max(full, stage) <= 2.0
    return res


def render(res: Dict[str, Any]) -> str:
    rows = []
    for k, v in res["functions"].items():
        rows.append([k, fmt_summary(v["time"]), f"{v['melements_per_s']:.1f}", fmt_summary(v["ratio_to_assert_allclose"], "x")])
    head = ["function", "time", "Melem/s", "x assert_allclose (per round)"]
    tail = (f"pair {tuple(res['shape'])} complex64 ({res['bytes_per_array'] / 2 ** 20:.0f} MiB each), "
            f"{res['repeats']} interleaved rounds, {res['threads']} thread(s); target (full <= 2x assert_allclose): "
            f"{'MET' if res['target_met'] else 'MISSED'}; load {res['load_before']} -> {res['load_after']}")
    return table(rows, head) + "\n" + tail


def _parse_shape(text: str) -> Tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.comparator")
    p.add_argument("--child", action="store_true", help="measure in this process and print JSON")
    p.add_argument("--shape", type=_parse_shape, default=SHAPE)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(measure(a.shape, a.repeats, a.threads)))
    else:
        print(render(run(a.shape, a.repeats, a.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
