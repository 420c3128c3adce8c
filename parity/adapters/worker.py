"""Run jobs in other processes: one fresh process per job, or one long-lived worker per backend.

``python -m parity.adapters.worker JOB_DIR`` runs one job; ``python -m parity.adapters.worker
--serve`` reads job folders from stdin, one per line, and answers ``done <code>`` per job on
stdout (imports happen once; anything a library prints goes to stderr).

The parent writes ``JOB_DIR/job.npz`` (arrays, no pickles) and ``JOB_DIR/job.json``; the
worker calls :func:`parity.adapters.base.execute` (the same code as in-process) and writes
``capture.npz`` and, with a teacher, ``local.npz``. Errors are written to ``error.txt`` with
code 2 (3: the backend is not installed), so the parent can show one clear line.

Why workers: TensorFlow's and PyTorch's thread pools compete when both live in one process
(measured here: the port's forward went from 22 ms alone to 0.1-1.8 s after TensorFlow ran in
the same process, on 2 cores), and some builds of the two crash when imported together.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Dict

import numpy as np

from ..capture import load_capture, save_capture
from .base import BackendUnavailable, Job, JobResult, execute

_GROUPS = ("weights", "inputs", "teacher")


def worker_env() -> Dict[str, str]:
    """Environment of a worker process.

    OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep instead of spinning; on a loaded 2-core
    machine spinning made the port's forward 4-5x slower (measured by benchmarks/, n64_g2:
    296 ms -> 60 ms). It does not change any result.
    """
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def write_job(job: Job, directory: Path) -> None:
    arrays: Dict[str, np.ndarray] = {}
    for group in _GROUPS:
        for key, value in (getattr(job, group) or {}).items():
            arrays[f"{group}/{key}"] = np.asarray(value)
    np.savez(directory / "job.npz", **arrays)
    meta = {
        "backend": job.backend,
        "config": job.config,
        "dtype": job.dtype,
        "device": job.device,
        "case": job.case,
        "repeats": job.repeats,
        "has_teacher": job.teacher is not None,
        "faults": list(job.faults),
        "allow_tf32": job.allow_tf32,
    }
    (directory / "job.json").write_text(json.dumps(meta))


def read_job(directory: Path) -> Job:
    meta = json.loads((directory / "job.json").read_text())
    groups: Dict[str, Dict[str, np.ndarray]] = {g: {} for g in _GROUPS}
    with np.load(directory / "job.npz", allow_pickle=False) as data:
        for key in data.files:
            group, name = key.split("/", 1)
            groups[group][name] = data[key]
    return Job(
        backend=meta["backend"],
        config=meta["config"],
        weights=groups["weights"],
        inputs=groups["inputs"],
        dtype=meta["dtype"],
        device=meta["device"],
        case=meta["case"],
        teacher=groups["teacher"] if meta["has_teacher"] else None,
        repeats=meta["repeats"],
        faults=tuple(meta.get("faults", ())),
        allow_tf32=bool(meta.get("allow_tf32", False)),
    )


def run_in_subprocess(job: Job, directory: Path, timeout_s: float = 1800) -> JobResult:
    """Execute ``job`` in a fresh Python process; raise RuntimeError with its one-line error."""
    directory.mkdir(parents=True, exist_ok=True)
    write_job(job, directory)
    proc = subprocess.run(
        [sys.executable, "-m", "parity.adapters.worker", str(directory)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=worker_env(),
    )
    return read_result(job.backend, directory, proc.returncode, proc.stderr)


def read_result(backend: str, directory: Path, code: int, stderr: str = "") -> JobResult:
    error_file = directory / "error.txt"
    if code != 0:
        reason = error_file.read_text().strip() if error_file.exists() else (stderr.strip().splitlines() or ["?"])[-1]
        cls = BackendUnavailable if code == 3 else RuntimeError
        raise cls(f"{backend} worker failed (exit {code}): {reason}")
    capture = load_capture(directory / "capture.npz")
    local = None
    if (directory / "local.npz").exists():
        with np.load(directory / "local.npz", allow_pickle=False) as data:
            local = {k: data[k] for k in data.files}
    return JobResult(capture=capture, local=local, timings=dict(capture.meta.get("timings", {})))


class WorkerPool:
    """One long-lived worker process per backend; jobs go through folders under ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._procs: Dict[str, subprocess.Popen] = {}
        self._count = 0

    def _proc(self, backend: str) -> subprocess.Popen:
        proc = self._procs.get(backend)
        if proc is None or proc.poll() is not None:
            log = open(self.root / f"{backend}-worker.log", "ab")
            proc = subprocess.Popen(
                [sys.executable, "-m", "parity.adapters.worker", "--serve"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                env=worker_env(),
            )
            self._procs[backend] = proc
        return proc

    def run(self, job: Job) -> JobResult:
        self._count += 1
        directory = self.root / f"job{self._count:04d}-{job.backend}-{job.dtype}"
        directory.mkdir(parents=True, exist_ok=True)
        write_job(job, directory)
        proc = self._proc(job.backend)
        proc.stdin.write(f"{directory}\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line.startswith("done "):
            proc.wait(timeout=10)
            tail = (self.root / f"{job.backend}-worker.log").read_text(errors="replace").strip().splitlines()
            raise RuntimeError(f"{job.backend} worker died (exit {proc.returncode}): {tail[-1] if tail else '?'}")
        return read_result(job.backend, directory, int(line.split()[1]))

    def close(self) -> None:
        for proc in self._procs.values():  # tell every worker first, then wait for them together
            if proc.poll() is None:
                proc.stdin.close()
        for proc in self._procs.values():
            if proc.poll() is None:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self._procs.clear()

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _run_one(directory: Path) -> int:
    try:
        result = execute(read_job(directory))
        save_capture(directory / "capture.npz", result.capture, compress=False)  # a local hand-over
        if result.local is not None:
            np.savez(directory / "local.npz", **result.local)
        return 0
    except BackendUnavailable as exc:
        (directory / "error.txt").write_text(str(exc))
        return 3
    except Exception as exc:  # report one clear line to the parent, full trace on stderr
        (directory / "error.txt").write_text(f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 2


def _serve() -> int:
    """Answer job folders from stdin on the original stdout; library output goes to stderr."""
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if line.strip():
            code = _run_one(Path(line.strip()))
            answers.write(f"done {code}\n")
            answers.flush()
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--serve":
        return _serve()
    if len(argv) != 1:
        print("usage: python -m parity.adapters.worker JOB_DIR | --serve", file=sys.stderr)
        return 2
    return _run_one(Path(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
