"""BenchPool: the harness's worker pool (parity.pool.WorkerPool) with benchmark workers.

One :class:`parity.pool.WorkerPool` per backend runs ``python -m benchmarks.worker`` (pinned
threads, every forward pass timed, peak-RSS readings) over the same job folders, weight hand-over
and timeouts as the harness, so a job costs here what it costs the harness.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from parity.jobs import Job, JobResult
from parity.pool import WorkerPool

from .common import ROOT, child_env

#: Benchmark backend names -> the harness's sides.
SIDES = {"tf": "reference_tf", "torch": "torch_impl"}
BACKENDS = {v: k for k, v in SIDES.items()}


class BenchPool:
    def __init__(self, root: Path, threads: int, omp_passive: bool = True):
        """``omp_passive``: start the workers with OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads
        sleep instead of spinning; see benchmarks/README.md)."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.threads = int(threads)
        self.omp_passive = omp_passive
        self._pools: Dict[str, WorkerPool] = {}
        self.startup: Dict[str, Dict[str, Any]] = {}

    def _pool(self, backend: str) -> WorkerPool:
        if backend not in self._pools:
            t = str(self.threads)
            env = child_env({"OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t,
                             "OMP_WAIT_POLICY": "PASSIVE" if self.omp_passive else "ACTIVE"})
            self._pools[backend] = WorkerPool(self.root / backend, module="benchmarks.worker",
                                              args=("--backend", backend, "--threads", t), env=env, cwd=str(ROOT))
        return self._pools[backend]

    def start(self, backend: str) -> Dict[str, Any]:
        t0 = time.perf_counter()
        info = self._pool(backend).start(SIDES[backend])
        info["start_wall_s"] = time.perf_counter() - t0
        self.startup[backend] = info
        return info

    def pids(self) -> Dict[str, int]:
        return {BACKENDS[k[0]]: pid for p in self._pools.values() for k, pid in p.pids().items()}

    def run(self, job: Job, *, save: bool = True, reset_hwm: bool = False,
            weights_timing: bool = False) -> Tuple[Optional[JobResult], Dict[str, Any]]:
        """Run a job in its backend's worker. Returns (JobResult with the capture when ``save``,
        else None; the worker's bench result plus ``wall_s``, the parent's time for the whole job)."""
        backend = BACKENDS[job.side]
        if backend not in self.startup:
            self.start(backend)
        pool = self._pool(backend)
        t0 = time.perf_counter()
        opts = json.dumps({"save": save, "reset_hwm": reset_hwm, "weights_timing": weights_timing})
        result = pool.run(job, extra_files={"bench.json": opts})
        directory = pool.last.directory
        bench = json.loads((directory / "bench_result.json").read_text())
        bench["wall_s"] = time.perf_counter() - t0
        shutil.rmtree(directory, ignore_errors=True)  # big batches: do not keep the job files around
        return (result if save else None), bench

    def close(self) -> None:
        for p in self._pools.values():
            p.close(wait=False)
        for p in self._pools.values():
            p.close()
        self._pools.clear()

    def __enter__(self) -> "BenchPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
