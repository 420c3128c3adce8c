"""Per-case files of a hub: the captures and the case's figures.

:func:`write_case` saves ``captures/<case>/{tf,torch,local[,tf_float32]}.npz`` (or links/copies
them from a recheck source) and draws ``analysis/<case>/*.png``. It is a plain function of a
picklable :class:`CaseJob`, so :class:`ArtifactSink` can run it in a background process while
the next case runs its reference, or inline.

A figure that cannot be drawn is logged and listed in the result's ``errors``; it never fails
the run. A capture that cannot be written raises (the hub would not be replayable).
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from parity.capture import Capture, save_capture
from parity.compare import CaseResult

from . import hub as hub_mod

log = logging.getLogger(__name__)


@dataclass
class CaseJob:
    hub: str
    key: str
    title: str
    result: Optional[CaseResult]
    captures: Dict[str, Capture] = field(default_factory=dict)  # role -> capture (written unless in copy)
    copy: Dict[str, str] = field(default_factory=dict)  # role -> existing capture file to link/copy instead
    figures: bool = True
    figure_stages: Tuple[str, ...] = ()
    patch_grids: bool = False  # also draw analysis/{tf,torch}_patch_grid.png (the default case)
    labels: Tuple[str, str] = ("TF", "torch")


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _capture_arrays(job: CaseJob, role: str) -> Optional[Dict[str, np.ndarray]]:
    cap = job.captures.get(role)
    return cap.stages if cap is not None else None


def write_case(job: CaseJob) -> Dict[str, Any]:
    """Write one case's captures and figures; returns files, figures, timings and errors."""
    from . import figures as F  # matplotlib only where figures are drawn

    root = Path(job.hub)
    files: List[str] = []
    errors: List[str] = []
    out_figs: Dict[str, Any] = {"stages": {}}
    t0 = time.process_time()  # CPU seconds: a paused background process does not count
    for role, capture in job.captures.items():
        if role in job.copy:
            continue
        rel = f"{hub_mod.CAPTURES}/{job.key}/{hub_mod.CAPTURE_FILES[role]}"
        save_capture(root / rel, capture)
        os.chmod(root / rel, hub_mod.FILE_MODE)  # save_capture leaves mkstemp's private 0600
        files.append(rel)
    for role, src in job.copy.items():
        rel = f"{hub_mod.CAPTURES}/{job.key}/{hub_mod.CAPTURE_FILES[role]}"
        if Path(src).resolve() != (root / rel).resolve():
            _link_or_copy(Path(src), root / rel)
        files.append(rel)
    write_s = time.process_time() - t0

    t0 = time.process_time()
    res = job.result
    ref = _capture_arrays(job, "reference")
    port = _capture_arrays(job, "port")
    if job.figures and res is not None and ref is not None and port is not None:
        base = f"{hub_mod.ANALYSIS}/{job.key}"

        def draw(name: str, rel: str, fn, *args) -> Optional[str]:
            try:
                fn(root / rel, *args)
            except Exception as exc:  # a figure never fails the run
                log.warning("figure %s of case %s not drawn: %s", name, job.key, exc, exc_info=True)
                errors.append(f"{rel}: {type(exc).__name__}: {exc}")
                return None
            files.append(rel)
            return rel

        for stage in job.figure_stages:
            if stage in ref and stage in port and ref[stage].shape == port[stage].shape:
                rel = draw(stage, f"{base}/{stage}.png", F.stage_figure, job.title, stage, ref[stage], port[stage],
                           job.labels)
                if rel:
                    out_figs["stages"][stage] = rel
        stage_dicts = [{"name": s.name, "margin": s.margin, "local_error": s.local_error, "verdict": s.verdict}
                       for s in res.stages]
        out_figs["error_by_stage"] = draw("error_by_stage", f"{base}/error_by_stage.png", F.error_by_stage,
                                          f"{job.title}: error / tolerance by stage", stage_dicts)
        if res.patch_errors:
            ref_max = {s.name: s.ref_max_abs for s in res.stages}
            out_figs["patch_errors"] = draw("patch_errors", f"{base}/patch_errors.png", F.patch_error_scatter,
                                            f"{job.title}: per-patch error", res.patch_errors, ref_max)
        hist = {}
        for stage in job.figure_stages:
            if stage in ref and stage in port and ref[stage].shape == port[stage].shape:
                hist[stage] = F.histogram_data(ref[stage], port[stage])
        if hist:
            out_figs["error_histogram"] = draw("error_histogram", f"{base}/error_histogram.png", F.error_histogram,
                                               f"{job.title}: distribution of the elementwise error", hist)
        if job.patch_grids and all(s in ref and s in port for s in ("amp", "phase")):
            tiles = F.tiles_of(ref["amp"])[0]
            scale = max(float(np.max(np.abs(t))) for t in tiles)
            ptiles = F.tiles_of(ref["phase"])[0]
            lims = (min(float(np.min(t)) for t in ptiles), max(float(np.max(t)) for t in ptiles))
            if lims[1] <= lims[0]:
                lims = (lims[0] - 1e-6, lims[0] + 1e-6)
            out_figs["patch_grids"] = {}
            for backend, arrays, label in (("tf", ref, job.labels[0]), ("torch", port, job.labels[1])):
                rel = draw(f"{backend}_patch_grid", hub_mod.PATCH_GRIDS[backend], F.patch_grid,
                           f"{label}: {job.title}, stages amp and phase", arrays["amp"], arrays["phase"],
                           scale, lims)
                if rel:
                    out_figs["patch_grids"][backend] = rel
    figures_s = time.process_time() - t0
    return {"key": job.key, "files": files, "figures": out_figs, "errors": errors,
            "timings": {"write_s": write_s, "figures_s": figures_s}}


class ArtifactError(RuntimeError):
    """A case's files could not be written (e.g. the disk is full); names the case and the cause."""


def _serve(tasks, results) -> None:
    """The background process: write_case for every job until a None arrives."""
    # Ctrl-C goes to the whole process group; the parent decides what happens.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import matplotlib

    matplotlib.use("Agg")
    from . import figures  # noqa: F401  (imported while the first case runs)

    while True:
        job = tasks.get()
        if job is None:
            return
        try:
            results.put((job.key, None, write_case(job)))
        except BaseException as exc:  # reported to the parent, which raises ArtifactError
            results.put((job.key, f"{type(exc).__name__}: {exc}", None))


_CAN_PAUSE = hasattr(signal, "SIGSTOP") and hasattr(signal, "SIGCONT")


class ArtifactSink:
    """Runs :func:`write_case` jobs in one background process, or inline.

    In the background the jobs overlap the next case's reference (TensorFlow) job, which leaves
    a core idle while it builds its graph. :meth:`paused` stops the background process while the
    port runs: measured on 2 cores, any process competing with PyTorch's OpenMP thread pool,
    even at the lowest priority, slowed the port's forward passes from 0.05 s to 1-2 s. A job
    is queued only when the background process is idle, otherwise it runs inline, so a slow
    (e.g. loaded) machine never piles up work to wait for at the end.
    """

    def __init__(self, background: bool = True):
        self._done: Dict[str, Dict[str, Any]] = {}
        self._pending: List[str] = []
        self._proc = None
        self.drain_s = 0.0
        self.handoff_s = 0.0
        self.paused_s = 0.0
        self.queued = self.inline = 0  # jobs run in the background / here
        if background:
            ctx = multiprocessing.get_context("spawn")  # never fork a process that holds TF/torch threads
            self._tasks, self._results = ctx.Queue(), ctx.Queue()
            self._proc = ctx.Process(target=_serve, args=(self._tasks, self._results), daemon=True,
                                     name="parity-report-artifacts")
            self._proc.start()

    @property
    def background(self) -> bool:
        return self._proc is not None

    def submit(self, job: CaseJob) -> float:
        """Queue a job (background process idle) or run it here; returns this process's seconds."""
        t0 = time.perf_counter()
        if self._proc is not None:
            self._collect(block=False)
        if self._proc is not None and not self._pending:
            self._tasks.put(job)
            self._pending.append(job.key)
            self.queued += 1
        else:
            try:
                self._done[job.key] = write_case(job)
            except OSError as exc:
                raise ArtifactError(f"case {job.key}: cannot write its files: {exc}") from None
            self.inline += 1
        dt = time.perf_counter() - t0
        self.handoff_s += dt
        return dt

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the background process for the duration (no-op inline or without SIGSTOP)."""
        if self._proc is None or not _CAN_PAUSE or not self._proc.is_alive():
            yield
            return
        t0 = time.perf_counter()
        os.kill(self._proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self._proc.pid, signal.SIGCONT)
            self.paused_s += time.perf_counter() - t0

    def _collect(self, block: bool) -> None:
        """Take finished results off the queue (all pending ones when ``block``)."""
        while self._pending:
            try:
                key, error, result = self._results.get(timeout=1.0) if block else self._results.get_nowait()
            except queue.Empty:
                if not block:
                    return
                if not self._proc.is_alive():
                    raise ArtifactError(f"the process writing figures and captures died (exit "
                                        f"{self._proc.exitcode}) before case {self._pending[0]}") from None
                continue
            self._pending.remove(key)
            if error is not None:
                raise ArtifactError(f"case {key}: cannot write its files: {error}")
            self._done[key] = result

    def results(self) -> Dict[str, Dict[str, Any]]:
        """Wait for every job; raises ArtifactError for a job that failed (or a dead process)."""
        t0 = time.perf_counter()
        try:
            if self._proc is not None:
                self._collect(block=True)
        finally:
            self.drain_s += time.perf_counter() - t0
        return self._done

    def close(self, cancel: bool = False) -> None:
        if self._proc is None:
            return
        if cancel:
            self._proc.terminate()
        else:
            self._tasks.put(None)
        self._proc.join(timeout=30)
        if self._proc.is_alive():
            self._proc.kill()
        for q in (self._tasks, self._results):
            q.close()
            q.cancel_join_thread()
        self._proc = None
