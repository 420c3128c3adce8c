"""The worker pool: one long-lived process per side and device, with job timeouts.

Every run of a side outside the calling process goes through :class:`WorkerPool` (the
report, pytest, the self-test, the device probe and the benchmarks). A job travels as a folder
under the pool's root: ``job.json`` (plain fields), ``inputs.npz``; the weight set is written
once per digest under ``weights/`` and a teacher is the capture file its run already wrote, so
no array is encoded twice. The worker (:mod:`parity.worker`) answers one JSON line per job.

A job that runs past ``job_timeout`` seconds, or a worker that dies mid-job, ends as a
:class:`JobError` naming the side, the job and the last lines the worker printed; the worker
is killed and a fresh one starts for the next job. :meth:`submit` / :meth:`wait` let the engine
keep several sides busy at once; :meth:`run` is the one-job form.
"""
from __future__ import annotations

import json
import logging
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .capture import Capture, load_capture
from .jobs import Job, JobResult, weights_digest
from .sides import SideUnavailable, load_side_class

log = logging.getLogger(__name__)

DEFAULT_JOB_TIMEOUT = 900.0
TAIL_LINES = 8


class JobError(RuntimeError):
    """A job that did not produce a capture: ``kind`` is "error" (the side raised), "crash" (the
    worker died), "timeout" or "unavailable"; ``tail``: the worker's last output lines."""

    def __init__(self, side: str, label: str, kind: str, reason: str, tail: Sequence[str] = ()):
        self.side, self.label, self.kind, self.reason, self.tail = side, label, kind, reason, list(tail)
        super().__init__(self.describe())

    def describe(self) -> str:
        text = f"side {self.side}, job {self.label!r}: {self.reason}"
        if self.tail and self.kind in ("crash", "timeout"):
            text += f"; last worker output: {' | '.join(self.tail[-3:])}"
        return text

    def to_dict(self) -> dict:
        return {"side": self.side, "job": self.label, "kind": self.kind, "reason": self.reason, "tail": self.tail}


class JobUnavailable(JobError, SideUnavailable):
    """The side's framework is not installed (worker exit code 3)."""


def worker_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment of a worker process.

    OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep instead of spinning; on a loaded 2-core
    machine spinning made the port's forward 4-5x slower (measured by benchmarks/, n64_g2:
    296 ms -> 60 ms). It does not change any result.
    """
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.update(extra or {})
    return env


def _tail(path: Path, n: int = TAIL_LINES) -> List[str]:
    try:
        lines = [ln.rstrip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return []
    return lines[-n:]


@dataclass
class Ticket:
    """A submitted job: ``tag`` is the caller's (the engine's job key)."""

    job: Job
    tag: object
    directory: Path
    started: float
    deadline: float
    info: Dict[str, object] = field(default_factory=dict)


class _Worker:
    def __init__(self, pool: "WorkerPool", key: Tuple[str, str], n: int):
        self.key = key
        self.log_path = pool.root / f"worker-{key[0]}-{key[1].replace(':', '-')}-{n}.log"
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", pool.module, *pool.args, "--serve"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log_file, env=worker_env(pool.env), cwd=pool.cwd)
        self.buffer = b""
        self.ready: Optional[dict] = None
        self.ticket: Optional[Ticket] = None

    def send(self, msg: dict) -> None:
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()

    def lines(self) -> Tuple[List[dict], bool]:
        """Read what is available: (decoded answer lines, at end of file)."""
        chunk = os.read(self.proc.stdout.fileno(), 65536)
        if not chunk:
            return [], True
        self.buffer += chunk
        out = []
        while b"\n" in self.buffer:
            raw, self.buffer = self.buffer.split(b"\n", 1)
            if raw.strip():
                try:
                    out.append(json.loads(raw))
                except ValueError:
                    out.append({"event": "garbage", "text": raw.decode(errors="replace")})
        return out, False

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


class WorkerPool:
    """Worker processes keyed by (side, device); jobs through folders under ``root``.

    ``job_timeout``: seconds a job may run (None: no limit). ``fresh``: every job in a new
    process (what ``isolation="subprocess"`` means; sides whose class says ``fresh_process``
    always get one). ``module``/``args``/``env``: the worker program and its environment
    (benchmarks run an instrumented worker with pinned threads).
    """

    def __init__(self, root: Optional[Path] = None, *, job_timeout: Optional[float] = DEFAULT_JOB_TIMEOUT,
                 fresh: bool = False, module: str = "parity.worker", args: Sequence[str] = (),
                 env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None):
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="parity-pool-")) if root is None else Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "weights").mkdir(exist_ok=True)
        self.job_timeout = job_timeout
        self.fresh = fresh
        self.module, self.args, self.env, self.cwd = module, tuple(args), dict(env or {}), cwd
        self._workers: Dict[Tuple[str, str], _Worker] = {}
        self._sel = selectors.DefaultSelector()
        self._weights: Dict[str, Path] = {}
        self._inputs: Dict[str, Path] = {}  # batch inputs shared by several jobs, written once
        self._count = 0
        self._started = 0
        self.restarts = 0

    # ------------------------------------------------------------------ workers
    def _worker(self, key: Tuple[str, str]) -> _Worker:
        w = self._workers.get(key)
        if w is None or w.proc.poll() is not None:
            if w is not None:
                self._drop(w)
            self._started += 1
            w = _Worker(self, key, self._started)
            self._workers[key] = w
            self._sel.register(w.proc.stdout, selectors.EVENT_READ, w)
        return w

    def _drop(self, w: _Worker) -> None:
        try:
            self._sel.unregister(w.proc.stdout)
        except (KeyError, ValueError):
            pass
        w.kill()
        if self._workers.get(w.key) is w:
            del self._workers[w.key]

    @staticmethod
    def key(job: Job) -> Tuple[str, str]:
        return (job.side, job.device)

    def busy(self, job: Job) -> bool:
        w = self._workers.get(self.key(job))
        return w is not None and w.ticket is not None

    @property
    def in_flight(self) -> int:
        return sum(w.ticket is not None for w in self._workers.values())

    # ------------------------------------------------------------------ jobs
    def _weights_file(self, job: Job) -> Path:
        wid = job.weights_id or weights_digest(job.weights)
        job.weights_id = wid
        path = self._weights.get(wid)
        if path is None:
            path = self.root / "weights" / f"{wid}.npz"
            np.savez(path, **{k: np.asarray(v) for k, v in job.weights.items()})
            self._weights[wid] = path
        return path

    def write_job(self, job: Job, directory: Path, teacher_file: Optional[Path] = None,
                  extra_files: Optional[Dict[str, str]] = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in (extra_files or {}).items():  # e.g. a benchmark worker's options
            (directory / name).write_text(text)
        inputs_file = self._inputs.get(job.inputs_id) if job.inputs_id else None
        if inputs_file is None:
            inputs_file = (self.root / "weights" / f"inputs-{job.inputs_id}.npz") if job.inputs_id \
                else directory / "inputs.npz"
            np.savez(inputs_file, **{k: np.asarray(v) for k, v in job.inputs.items()})
            if job.inputs_id:
                self._inputs[job.inputs_id] = inputs_file
        if job.teacher is not None and teacher_file is None:
            teacher_file = directory / "teacher.npz"
            from .capture import Capture, save_capture

            save_capture(teacher_file, Capture(stages=dict(job.teacher)), compress=False)
        weights_file = self._weights_file(job)  # sets job.weights_id
        meta = {"side": job.side, "target": job.target, "config": job.config, "dtype": job.dtype,
                "device": job.device, "case": job.case, "repeats": job.repeats, "faults": list(job.faults),
                "allow_tf32": job.allow_tf32, "graph": [[n, list(i)] for n, i in job.graph],
                "weights_id": job.weights_id, "weights_file": str(weights_file),
                "teacher_file": str(teacher_file) if teacher_file is not None else None, "label": job.label,
                "inputs_file": str(inputs_file), "task": job.task, "train": job.train}
        if job.task == "backward":
            meta.update(losses=list(job.losses))
        if job.teacher_gradients is not None:
            np.savez(directory / "teacher_gradients.npz", **{k: np.asarray(v) for k, v in job.teacher_gradients.items()})
            meta["teacher_gradients_file"] = str(directory / "teacher_gradients.npz")
        (directory / "job.json").write_text(json.dumps(meta, default=str))

    def start(self, side: str, device: str = "cpu", timeout: float = 600.0) -> dict:
        """Start the worker of (side, device) now and wait for its ready line (what it reported
        at start-up, e.g. a benchmark worker's pinned threads)."""
        w = self._worker((side, device))
        deadline = time.monotonic() + timeout
        while w.ready is None:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sel.select(timeout=left):
                self._drop(w)
                raise JobError(side, "start-up", "timeout", f"the worker did not start in {timeout:g} s",
                               _tail(w.log_path))
            answers, eof = w.lines()
            for msg in answers:
                if msg.get("event") == "ready":
                    w.ready = msg
            if eof and w.ready is None:
                self._drop(w)
                raise JobError(side, "start-up", "crash", f"the worker exited at start-up (exit code "
                               f"{w.proc.returncode})", _tail(w.log_path))
        return dict(w.ready)

    def pids(self) -> Dict[Tuple[str, str], int]:
        return {k: w.proc.pid for k, w in self._workers.items() if w.proc.poll() is None}

    def submit(self, job: Job, tag: object = None, *, teacher_file: Optional[Path] = None,
               extra_files: Optional[Dict[str, str]] = None) -> Ticket:
        """Start ``job`` on its side's worker (which must be idle: see :meth:`busy`)."""
        w = self._worker(self.key(job))
        if w.ticket is not None:
            raise RuntimeError(f"the worker of side {job.side} on {job.device} is busy")
        self._count += 1
        directory = self.root / f"job{self._count:04d}-{job.side}-{job.dtype}"
        self.write_job(job, directory, teacher_file, extra_files)
        now = time.monotonic()
        deadline = now + self.job_timeout if self.job_timeout else float("inf")
        w.ticket = Ticket(job=job, tag=tag, directory=directory, started=now, deadline=deadline)
        try:
            w.send({"op": "run", "dir": str(directory)})
        except (BrokenPipeError, OSError):
            pass  # the worker is gone; wait() reports it with its last lines
        return w.ticket

    def wait(self, timeout: Optional[float] = None) -> List[Tuple[Ticket, Union[JobResult, JobError]]]:
        """Block until at least one in-flight job finishes (or ``timeout`` passes); return the
        finished ones as (ticket, JobResult or JobError)."""
        done: List[Tuple[Ticket, Union[JobResult, JobError]]] = []
        end = None if timeout is None else time.monotonic() + timeout
        while not done:
            busy = [w for w in self._workers.values() if w.ticket is not None]
            if not busy:
                return done
            now = time.monotonic()
            wake = min(w.ticket.deadline for w in busy)
            if end is not None:
                wake = min(wake, end)
            events = self._sel.select(timeout=None if wake == float("inf") else max(0.0, wake - now))
            for skey, _ in events:
                w = skey.data
                answers, eof = w.lines()
                for msg in answers:
                    if msg.get("event") == "ready":
                        w.ready = msg
                    elif msg.get("event") == "done" and w.ticket is not None:
                        done.append(self._finish(w, msg))
                if eof:
                    t = w.ticket
                    self._drop(w)
                    if t is not None:
                        code = w.proc.returncode
                        done.append((t, JobError(t.job.side, t.job.label, "crash",
                                                 f"the worker died (exit code {code}) while running the job",
                                                 _tail(w.log_path))))
                        self.restarts += 1
            now = time.monotonic()
            for w in [w for w in self._workers.values() if w.ticket is not None and now >= w.ticket.deadline]:
                t = w.ticket
                self._drop(w)
                self.restarts += 1
                done.append((t, JobError(t.job.side, t.job.label, "timeout",
                                         f"no answer after {self.job_timeout:g} s (job timeout); the worker was "
                                         f"killed", _tail(w.log_path))))
            if end is not None and time.monotonic() >= end:
                break
        return done

    def _finish(self, w: _Worker, msg: dict) -> Tuple[Ticket, Union[JobResult, JobError]]:
        t, w.ticket = w.ticket, None
        t.info = {k: v for k, v in msg.items() if k != "event"}
        code = int(msg.get("code", 2))
        fresh = self.fresh or getattr(load_side_class(t.job.target), "fresh_process", False)
        if fresh:
            self._drop(w)
        if code != 0:
            err = t.directory / "error.txt"
            reason = err.read_text().strip() if err.exists() else f"exit code {code}"
            cls = JobUnavailable if code == 3 else JobError
            return t, cls(t.job.side, t.job.label, "unavailable" if code == 3 else "error", reason, _tail(w.log_path))
        path = t.directory / "capture.npz"
        if not path.exists():  # a worker asked not to hand a capture back (benchmarks)
            return t, JobResult(capture=Capture(stages={}, meta={"side": t.job.side}), timings={})
        capture = load_capture(path)
        local = None
        if (t.directory / "local.npz").exists():
            with np.load(t.directory / "local.npz", allow_pickle=False) as data:
                local = {k: data[k] for k in data.files}
        gradients = None
        if (t.directory / "gradients.npz").exists():
            with np.load(t.directory / "gradients.npz", allow_pickle=False) as data:
                gradients = {k: data[k] for k in data.files}
        result = JobResult(capture=capture, local=local, timings=dict(capture.meta.get("timings", {})),
                           crash=capture.meta.get("crash"), file=t.directory / "capture.npz", gradients=gradients)
        return t, result

    def run(self, job: Job, *, teacher_file: Optional[Path] = None,
            extra_files: Optional[Dict[str, str]] = None) -> JobResult:
        """Run one job and wait for it; raise :class:`JobError` when it fails. The finished
        ticket (its folder and the worker's answer) is ``self.last``."""
        if self.busy(job):
            raise RuntimeError(f"the worker of side {job.side} on {job.device} is busy")
        ticket = self.submit(job, teacher_file=teacher_file, extra_files=extra_files)
        while True:
            for t, out in self.wait():
                if t is ticket:
                    self.last = t
                    if isinstance(out, JobError):
                        raise out
                    return out

    def devices(self, side: str, target: str, device: str = "cpu") -> Dict[str, str]:
        """The devices ``side`` sees, asked of its worker (keeps frameworks out of this process)."""
        w = self._worker((side, device))
        if w.ticket is not None:
            raise RuntimeError(f"the worker of side {side} is busy")
        w.send({"op": "devices", "side": side, "target": target})
        deadline = time.monotonic() + (self.job_timeout or 600)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sel.select(timeout=left):
                self._drop(w)
                return {"__error__": f"the device probe of side {side} did not answer in time"}
            answers, eof = w.lines()
            for msg in answers:
                if msg.get("event") == "devices":
                    return msg["devices"] if "devices" in msg else {"__error__": msg.get("error", "?")}
            if eof:
                self._drop(w)
                return {"__error__": f"the worker of side {side} died: {' | '.join(_tail(w.log_path)[-2:])}"}

    # ------------------------------------------------------------------ closing
    def close(self, wait: bool = True) -> None:
        """Tell every worker to stop (end of input), wait for them (``wait``), remove an own root."""
        workers = list(self._workers.values())
        for w in workers:
            try:
                w.proc.stdin.close()
            except OSError:
                pass
        if wait:
            for w in workers:
                try:
                    w.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    w.proc.kill()
        for w in workers:
            try:
                self._sel.unregister(w.proc.stdout)
            except (KeyError, ValueError):
                pass
            if wait:
                w.proc.stdout.close()
        self._workers.clear()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
