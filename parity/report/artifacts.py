"""Per-case files of a hub: the captures and the case's figures.

:func:`write_case` writes ``captures/<case>/<role>.<side>.npz`` (roles reference, candidate,
local and, under the noise floor, reference_float32; compressed,
parity.capture.save_capture; a recheck source's captures are hard-linked or copied) and draws
``analysis/<case>/*.png``.

A figure that cannot be drawn is logged and listed in the result's ``errors``; it never fails
the run. A capture that cannot be written raises :class:`ArtifactError` (the hub would not be
replayable).

Cost on the 2-core target: ~0.2 s per case for the captures, ~0.15 s for the figures;
:class:`ArtifactWriter` does it in a thread while the next case runs. (A separate process,
tried first, slowed the backends by as much as it saved; a thread in this process, which mostly
waits for the backend processes, does not.)
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from parity.capture import Capture, save_capture
from parity.results import CaseResult

from . import hub as hub_mod

log = logging.getLogger(__name__)


class ArtifactError(RuntimeError):
    """A case's files could not be written (e.g. the disk is full); names the case and the cause."""


@dataclass
class CaseJob:
    hub: str
    key: str
    title: str
    result: Optional[CaseResult]
    captures: Dict[str, Capture] = field(default_factory=dict)  # role -> capture (written unless in copy)
    copy: Dict[str, str] = field(default_factory=dict)  # role -> the same capture as a file: linked/copied
    paths: Dict[str, str] = field(default_factory=dict)  # role -> hub-relative path of its capture file
    figures: bool = True
    figure_stages: Tuple[str, ...] = ()
    patch_grids: bool = False  # also draw analysis/{reference,candidate}_patch_grid.png (the first case)
    labels: Tuple[str, str] = ("reference", "candidate")


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # another file system
        shutil.copyfile(src, tmp)
    os.chmod(tmp, hub_mod.FILE_MODE)
    os.replace(tmp, dst)


def _capture_arrays(job: CaseJob, role: str) -> Optional[Dict[str, np.ndarray]]:
    cap = job.captures.get(role)
    return cap.stages if cap is not None else None


class ArtifactWriter:
    """Runs :func:`write_case` for one case after another in a background thread.

    Compressing captures (zlib) and encoding PNGs release the GIL, and during a case this
    process mostly waits for the backend processes, so the previous case's files are written
    meanwhile (measured on 2 cores: no slowdown of the backends). :meth:`wait` must be called,
    and return, before the report claims a verdict: it re-raises a failed write as
    ArtifactError. With ``background=False`` every job runs at once, in the caller's thread.
    """

    def __init__(self, background: bool = True) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parity-report-files") if background \
            else None
        self._futures: List[Tuple[str, Future]] = []
        self.results: Dict[str, Dict[str, Any]] = {}
        self.wait_s = 0.0

    def submit(self, job: CaseJob) -> float:
        """Queue the job (or run it, without a thread); returns the seconds the caller spent."""
        t0 = time.perf_counter()
        if self._pool is None:
            self.results[job.key] = write_case(job)
        else:
            self._futures.append((job.key, self._pool.submit(write_case, job)))
        return time.perf_counter() - t0

    def wait(self) -> Dict[str, Dict[str, Any]]:
        """Every job's result (key -> write_case's dict); raises ArtifactError for a failed one."""
        t0 = time.perf_counter()
        try:
            for key, fut in self._futures:
                self.results[key] = fut.result()
        finally:
            self._futures = []
            self.wait_s += time.perf_counter() - t0
        return self.results

    def close(self, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)


def write_case(job: CaseJob) -> Dict[str, Any]:
    """Write one case's captures and figures; returns files, figures, timings and errors.
    Raises ArtifactError when a file cannot be written."""
    try:
        return _write_case(job)
    except OSError as exc:
        raise ArtifactError(f"case {job.key}: cannot write its files: {exc}") from None


def _write_case(job: CaseJob) -> Dict[str, Any]:
    from . import figures as F  # matplotlib only where figures are drawn

    root = Path(job.hub)
    files: List[str] = []
    errors: List[str] = []
    out_figs: Dict[str, Any] = {"stages": {}}
    t0 = time.perf_counter()
    for role, capture in job.captures.items():
        if role in job.copy:
            continue
        rel = job.paths[role]
        save_capture(root / rel, capture)
        os.chmod(root / rel, hub_mod.FILE_MODE)  # save_capture leaves mkstemp's private 0600
        files.append(rel)
    for role, src in job.copy.items():
        rel = job.paths[role]
        if Path(src).resolve() != (root / rel).resolve():
            _link_or_copy(Path(src), root / rel)
        files.append(rel)
    write_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    res = job.result
    ref = _capture_arrays(job, "reference")
    port = _capture_arrays(job, "candidate")
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
            for role, arrays, label in (("reference", ref, job.labels[0]), ("candidate", port, job.labels[1])):
                rel = draw(f"{role}_patch_grid", hub_mod.PATCH_GRIDS[role], F.patch_grid,
                           f"{label}: {job.title}, stages amp and phase", arrays["amp"], arrays["phase"],
                           scale, lims)
                if rel:
                    out_figs["patch_grids"][role] = rel
    figures_s = time.perf_counter() - t0
    return {"key": job.key, "files": files, "figures": out_figs, "errors": errors,
            "timings": {"write_s": write_s, "figures_s": figures_s}}
