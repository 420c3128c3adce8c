"""BenchPool: one long-lived benchmark worker (benchmarks.worker) per backend, jobs through folders.

The parent side mirrors :class:`parity.adapters.worker.WorkerPool` (same job files, written with
:func:`parity.adapters.worker.write_job`, captures read back with
:func:`parity.adapters.worker.read_result`), so a job costs here what it costs the harness; the
worker adds per-forward timings, pinned threads and peak-RSS readings.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from parity.adapters.base import Job, JobResult
from parity.adapters.worker import read_result, write_job

from .common import ROOT, child_env


class BenchPool:
    def __init__(self, root: Path, threads: int, omp_passive: bool = True):
        """``omp_passive``: start the workers with OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads
        sleep instead of spinning; see benchmarks/README.md)."""
        self.root = Path(root)
        self.omp_passive = omp_passive
        self.root.mkdir(parents=True, exist_ok=True)
        self.threads = int(threads)
        self._procs: Dict[str, subprocess.Popen] = {}
        self.startup: Dict[str, Dict[str, Any]] = {}
        self._count = 0

    def start(self, backend: str) -> subprocess.Popen:
        proc = self._procs.get(backend)
        if proc is not None and proc.poll() is None:
            return proc
        t = str(self.threads)
        log = open(self.root / f"{backend}-worker.log", "ab")
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", "--backend", backend, "--threads", t, "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, cwd=str(ROOT),
            env=child_env({"OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t,
                           **({"OMP_WAIT_POLICY": "PASSIVE"} if self.omp_passive else {})}))
        log.close()
        line = proc.stdout.readline()
        if not line.startswith("ready "):
            proc.wait(timeout=30)
            raise RuntimeError(f"{backend} benchmark worker did not start (exit {proc.returncode}): {self._tail(backend)}")
        info = json.loads(line[len("ready "):])
        info["start_wall_s"] = time.perf_counter() - t0
        self.startup[backend] = info
        self._procs[backend] = proc
        return proc

    def _tail(self, backend: str) -> str:
        lines = (self.root / f"{backend}-worker.log").read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "?"

    def pids(self) -> Dict[str, int]:
        return {b: p.pid for b, p in self._procs.items() if p.poll() is None}

    def run(self, job: Job, *, save: bool = True, reset_hwm: bool = False,
            weights_timing: bool = False) -> Tuple[Optional[JobResult], Dict[str, Any]]:
        """Run a job in its backend's worker. Returns (JobResult with the capture when ``save``,
        else None; the worker's bench result plus ``wall_s``, the parent's time for the whole job)."""
        proc = self.start(job.backend)
        self._count += 1
        directory = self.root / f"job{self._count:04d}-{job.backend}-{job.dtype}"
        directory.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        write_job(job, directory)
        (directory / "bench.json").write_text(json.dumps({"save": save, "reset_hwm": reset_hwm,
                                                          "weights_timing": weights_timing}))
        write_s = time.perf_counter() - t0
        proc.stdin.write(f"{directory}\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line.startswith("done "):
            proc.wait(timeout=10)
            raise RuntimeError(f"{job.backend} benchmark worker died (exit {proc.returncode}): {self._tail(job.backend)}")
        code = int(line.split()[1])
        if code != 0:
            err = directory / "error.txt"
            raise RuntimeError(f"{job.backend} job failed: {err.read_text().strip() if err.exists() else '?'}")
        bench = json.loads((directory / "bench_result.json").read_text())
        result = None
        t1 = time.perf_counter()
        if save:
            result = read_result(job.backend, directory, 0)
        bench["load_s"] = time.perf_counter() - t1
        bench["write_s"] = write_s
        bench["wall_s"] = time.perf_counter() - t0
        for f in directory.iterdir():  # big batches: do not keep the job files around
            f.unlink()
        directory.rmdir()
        return result, bench

    def close(self) -> None:
        for proc in self._procs.values():  # end of input for every worker first, so they exit together
            if proc.poll() is None:
                proc.stdin.close()
        for proc in self._procs.values():
            if proc.poll() is None:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs.clear()

    def __enter__(self) -> "BenchPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
