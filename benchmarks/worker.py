"""A backend worker for the benchmarks: the harness's own job path, with every forward pass timed.

``python -m benchmarks.worker --backend tf|torch --threads T --serve`` pins the framework's thread
pools (intra-op and inter-op both T) before anything runs, then serves requests exactly like
``python -m parity.worker --serve`` (the same protocol and loop, :func:`parity.worker.serve`).

A job folder holds what :meth:`parity.pool.WorkerPool.write_job` writes plus ``bench.json``
(``save``: write capture.npz / local.npz as the harness's worker does; ``reset_hwm``: reset the
peak-RSS counter first; ``weights_timing``: also time ``model.load_weights`` on the built model).
The job runs through :func:`parity.jobs.execute`, exactly as in the harness; the only
addition is a wrapper on the side's ``forward`` and ``build`` that records each call's time.
The answer is ``bench_result.json``: every forward time, execute's timings, the read / execute /
save split and the worker's peak RSS (VmHWM).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List

from .common import peak_rss_bytes, reset_peak_rss, rss_bytes

_CALLS: Dict[str, Any] = {"forward": [], "model": None, "build": []}


def setup_threads(backend: str, threads: int) -> Dict[str, Any]:
    """Import the backend's framework and pin its thread pools; returns what was set and the import time."""
    t0 = time.perf_counter()
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # already started (cannot happen in a fresh worker)
            pass
        info = {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    elif backend == "tf":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        info = {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
    else:
        raise ValueError(f"unknown backend {backend!r}")
    info["import_s"] = time.perf_counter() - t0
    return info


def instrument(backend: str) -> None:
    """Wrap the side class's forward and build so every call is timed (this process only)."""
    from parity.sides import side_class

    cls = side_class({"tf": "reference_tf", "torch": "torch_impl"}[backend])
    if getattr(cls, "_bench_instrumented", False):
        return
    forward, build = cls.forward, cls.build

    def timed_forward(self, model, inputs):
        t0 = time.perf_counter()
        out = forward(self, model, inputs)
        _CALLS["forward"].append(time.perf_counter() - t0)
        return out

    def timed_build(self, *args, **kwargs):
        t0 = time.perf_counter()
        model = build(self, *args, **kwargs)
        _CALLS["build"].append(time.perf_counter() - t0)
        _CALLS["model"] = model
        return model

    cls.forward, cls.build = timed_forward, timed_build
    cls._bench_instrumented = True


def run_job(directory: Path) -> Dict[str, Any]:
    """Run one job folder; returns the bench result (also written to bench_result.json)."""
    import numpy as np

    from parity.capture import save_capture
    from parity.jobs import execute
    from parity.worker import read_job

    opts = json.loads((directory / "bench.json").read_text()) if (directory / "bench.json").exists() else {}
    res: Dict[str, Any] = {"hwm_reset": reset_peak_rss() if opts.get("reset_hwm") else False}
    _CALLS["forward"], _CALLS["build"], _CALLS["model"] = [], [], None
    t0 = time.perf_counter()
    job = read_job(directory)
    res["read_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = execute(job)
    res["execute_s"] = time.perf_counter() - t0
    res["timings"] = dict(result.timings)
    res["forward_times"] = list(_CALLS["forward"])
    res["build_times"] = list(_CALLS["build"])
    if opts.get("weights_timing") and _CALLS["model"] is not None:
        loads: List[float] = []
        for _ in range(3):
            t0 = time.perf_counter()
            _CALLS["model"].load_weights(job.weights)
            loads.append(time.perf_counter() - t0)
        res["load_weights_times"] = loads
    _CALLS["model"] = None
    t0 = time.perf_counter()
    if opts.get("save", True):
        save_capture(directory / "capture.npz", result.capture)
        if result.local is not None:
            np.savez(directory / "local.npz", **result.local)
    res["save_s"] = time.perf_counter() - t0
    res["peak_rss_bytes"] = peak_rss_bytes()
    res["rss_bytes"] = rss_bytes(os.getpid())
    return res


def _run_dir(directory: Path) -> int:
    try:
        res = run_job(directory)
        (directory / "bench_result.json").write_text(json.dumps(res))
        return 0
    except Exception as exc:  # one clear line for the parent, the trace on stderr
        (directory / "error.txt").write_text(f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 2


def serve(backend: str, threads: int) -> int:
    from parity.worker import serve as serve_requests

    def setup():
        startup = setup_threads(backend, threads)
        instrument(backend)
        return startup

    return serve_requests(run=_run_dir, setup=setup)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    p.add_argument("--backend", required=True, choices=("tf", "torch"))
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--serve", action="store_true", required=True)
    a = p.parse_args(argv)
    return serve(a.backend, a.threads)


if __name__ == "__main__":
    sys.exit(main())
