"""Run a job in its own process: ``python -m parity.adapters.worker JOB_DIR``.

The parent writes ``JOB_DIR/job.npz`` (arrays, no pickles) and ``JOB_DIR/job.json``;
the worker calls :func:`parity.adapters.base.execute` (the same code as in-process) and
writes ``capture.npz`` and, with a teacher, ``local.npz``. Errors are written to
``error.txt`` and the exit code is 2, so the parent can show one clear line.
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
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")},
    )
    error_file = directory / "error.txt"
    if proc.returncode != 0:
        reason = error_file.read_text().strip() if error_file.exists() else (proc.stderr.strip().splitlines() or ["?"])[-1]
        cls = BackendUnavailable if proc.returncode == 3 else RuntimeError
        raise cls(f"{job.backend} worker failed (exit {proc.returncode}): {reason}")
    capture = load_capture(directory / "capture.npz")
    local = None
    if (directory / "local.npz").exists():
        with np.load(directory / "local.npz", allow_pickle=False) as data:
            local = {k: data[k] for k in data.files}
    return JobResult(capture=capture, local=local, timings=dict(capture.meta.get("timings", {})))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    directory = Path(argv[0])
    try:
        result = execute(read_job(directory))
        save_capture(directory / "capture.npz", result.capture)
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


if __name__ == "__main__":
    sys.exit(main())
