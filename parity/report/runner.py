"""Run (or recheck) every case of a plan: CaseRecords, each case's captures and figures written.

``run_cases`` calls :func:`parity.run.run_case` for every (device, case) pair; a case that
raises is recorded as failed with its error (the others still run). ``recheck_cases`` loads
the captures of an earlier hub and compares them again under the plan's tolerances; it never
runs a model. Both report progress through a callback ``progress(event, index, total, info)``
with event "start" (info: the case key) or "done" (info: the CaseRecord).
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from parity import run as run_mod
from parity.capture import Capture, load_capture
from parity.cases import Case
from parity.compare import CaseResult, compare
from parity.tolerances import noise_floor_tolerances

from . import hub as hub_mod
from .artifacts import ArtifactWriter, CaseJob
from .figures import figure_stages
from .options import Plan

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int, Any], None]

#: Per-case timing keys, in the order they are shown.
TIMING_KEYS = ("prepare_s", "import_s", "build_s", "forward_s", "local_s", "load_s", "compare_s", "figures_s",
               "write_s", "other_s", "total_s")


@dataclass
class CaseRecord:
    """One case on one device: the comparison (or the error) and where its files went."""

    name: str
    device: str
    dtype: str
    key: str
    case: Dict[str, Any]  # the case definition (parity.cases.Case.to_dict(), or the source's)
    config: Dict[str, Any]
    result: Optional[CaseResult] = None
    error: Optional[str] = None
    tolerance_mode: str = "table"
    isolation: str = "inprocess"
    backends: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # role -> capture meta (no arrays)
    timings: Dict[str, float] = field(default_factory=dict)
    captures: Dict[str, str] = field(default_factory=dict)  # role -> relative path
    figures: Dict[str, Any] = field(default_factory=dict)
    figure_errors: List[str] = field(default_factory=list)
    files: List[str] = field(default_factory=list)  # hub-relative files written for this case

    @property
    def verdict(self) -> str:
        return "pass" if self.error is None and self.result is not None and self.result.passed else "fail"


def _meta(capture: Capture) -> Dict[str, Any]:
    m = capture.meta
    return {k: m.get(k) for k in ("backend", "dtype", "device", "versions", "determinism", "wall_time_s")}


def _title(rec: CaseRecord) -> str:
    verdict = "PASS" if rec.verdict == "pass" else "FAIL"
    return f"case {rec.name} ({rec.device}, {rec.dtype}): {verdict}"


def _labels(rec: CaseRecord) -> tuple:
    return ("TF float64" if rec.tolerance_mode == "noise_floor" else "TF", "torch")


def _capture_paths(key: str, roles) -> Dict[str, str]:
    return {r: f"{hub_mod.CAPTURES}/{key}/{hub_mod.CAPTURE_FILES[r]}" for r in roles}


def _job(plan: Plan, rec: CaseRecord, captures: Dict[str, Capture], copy: Dict[str, str],
         patch_grids: bool) -> CaseJob:
    res = rec.result
    stages = figure_stages(res.stages, res.first_divergent_stage, res.root_cause_stage) if res is not None else []
    return CaseJob(hub=str(plan.hub.root), key=rec.key, title=_title(rec), result=res, captures=captures, copy=copy,
                   figures=plan.options.figures, figure_stages=tuple(stages), patch_grids=patch_grids,
                   labels=_labels(rec))


def run_cases(plan: Plan, progress: Optional[Progress] = None,
              timings: Optional[Dict[str, float]] = None) -> List[CaseRecord]:
    """Run every case on every available device (device-major order).

    With ``isolation="workers"`` one long-lived worker process per backend serves every case
    (parity.adapters.worker.WorkerPool): each framework is imported once and the two thread
    pools never share a process. After the last case the job folder is removed (every result
    has been read; the workers' open logs are merely unlinked) and the workers are told to stop
    in a daemon thread: their teardown (seconds for TensorFlow) does not hold up the report,
    and they exit on their own at end of input when this process exits.

    Each case's captures and figures are written by an ArtifactWriter thread while the next
    case runs; this returns once they are all written (``timings["files_wait_s"]``: how long
    that took after the last case).
    """
    writer = ArtifactWriter(background=plan.options.background)
    try:
        if plan.isolation != "workers":
            records = _run_cases(plan, progress, None, writer)
        else:
            records = _run_pooled(plan, progress, writer)
        _collect(records, writer, timings)
    except BaseException:
        writer.close(cancel=True)
        raise
    writer.close()
    return records


def _collect(records: List[CaseRecord], writer: ArtifactWriter, timings: Optional[Dict[str, float]]) -> None:
    """Wait for the writer and put each case's files, figures and timings on its record."""
    results = writer.wait()
    for r in records:
        res = results.get(r.key)
        if res is not None:
            r.figures, r.figure_errors, r.files = res["figures"], res["errors"], res["files"]
            r.timings.update(res["timings"])
    if timings is not None:
        timings["files_wait_s"] = writer.wait_s


def _run_pooled(plan: Plan, progress: Optional[Progress], writer: ArtifactWriter) -> List[CaseRecord]:
    from parity.adapters.worker import WorkerPool

    tmp = Path(tempfile.mkdtemp(prefix="parity-report-workers-"))
    pool = WorkerPool(tmp)
    try:
        records = _run_cases(plan, progress, pool, writer)
    except BaseException:
        try:
            pool.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    threading.Thread(target=pool.close, name="parity-report-worker-shutdown", daemon=True).start()
    return records


def _run_cases(plan: Plan, progress: Optional[Progress], pool, writer: ArtifactWriter) -> List[CaseRecord]:
    progress = progress or (lambda *a: None)
    pairs = [(dev, case) for dev in plan.available_devices for case in plan.cases]
    records: List[CaseRecord] = []
    for i, (device, case) in enumerate(pairs):
        key = hub_mod.case_key(case.name, device)
        progress("start", i, len(pairs), key)
        rec, captures = _run_one(plan, case, device, key, pool)
        if rec.result is not None:
            rec.captures = _capture_paths(key, captures)
            rec.timings["total_s"] += writer.submit(_job(plan, rec, captures, {}, patch_grids=i == 0))
        records.append(rec)
        progress("done", i, len(pairs), rec)
    return records


def _run_one(plan: Plan, case: Case, device: str, key: str, pool) -> Tuple[CaseRecord, Dict[str, Capture]]:
    mode = plan.tolerance_mode or getattr(case, "tolerance_mode", "table")
    rec = CaseRecord(name=case.name, device=device, dtype=case.dtype, key=key, case=case.to_dict(),
                     config=case.config.to_dict(), isolation=plan.isolation,
                     tolerance_mode=mode if case.dtype == "float32" else "table")
    kw = {"pool": pool} if pool is not None else {}
    t0 = time.perf_counter()
    try:
        cr = run_mod.run_case(case, device=device, tolerances=plan.table, tolerance_mode=plan.tolerance_mode,
                              noise_floor_k=plan.options.noise_floor_k, isolation=plan.isolation, **kw)
    except Exception as exc:  # a crashing backend fails this case, not the report
        log.error("case %s on %s raised %s: %s", case.name, device, type(exc).__name__, exc)
        log.debug("traceback of case %s", case.name, exc_info=True)
        rec.error = f"{type(exc).__name__}: {exc}"
        rec.timings = {"total_s": time.perf_counter() - t0}
        return rec, {}
    total = time.perf_counter() - t0
    t = cr.timings
    both = lambda k: t.get(f"reference_{k}", 0.0) + t.get(f"port_{k}", 0.0)  # noqa: E731
    rec.timings = {"prepare_s": t.get("prepare_s", 0.0), "import_s": both("import_s"), "build_s": both("build_s"),
                   "forward_s": both("forward_s"), "local_s": both("local_s"), "compare_s": t.get("compare_s", 0.0),
                   "reference_forward_s": t.get("reference_forward_s", 0.0),
                   "port_forward_s": t.get("port_forward_s", 0.0)}
    rec.timings["other_s"] = max(total - sum(rec.timings[k] for k in ("prepare_s", "import_s", "build_s", "forward_s",
                                                                        "local_s", "compare_s")), 0.0)
    rec.timings["total_s"] = total
    rec.result = cr.result
    rec.tolerance_mode = cr.result.meta.get("tolerance_mode", rec.tolerance_mode)
    captures = {"reference": cr.reference, "port": cr.port}
    rec.backends = {"reference": _meta(cr.reference), "port": _meta(cr.port)}
    if cr.local is not None:
        captures["local"] = Capture(stages=cr.local, meta={"backend": "torch", "case": case.name, "kind": "local",
                                                          "teacher": "reference", "dtype": case.dtype,
                                                          "device": device})
    if "reference_float32" in cr.extra:
        captures["reference_float32"] = cr.extra["reference_float32"]
    return rec, captures


# --------------------------------------------------------------------------- recheck
def recheck_cases(plan: Plan, progress: Optional[Progress] = None,
                  timings: Optional[Dict[str, float]] = None) -> List[CaseRecord]:
    """Compare the stored captures of ``plan.source`` again under the plan's tolerances."""
    writer = ArtifactWriter(background=plan.options.background)
    try:
        records = _recheck_cases(plan, progress, writer)
        _collect(records, writer, timings)
    except BaseException:
        writer.close(cancel=True)
        raise
    writer.close()
    return records


def _recheck_cases(plan: Plan, progress: Optional[Progress], writer: ArtifactWriter) -> List[CaseRecord]:
    progress = progress or (lambda *a: None)
    records: List[CaseRecord] = []
    n = len(plan.source_cases)
    for i, sc in enumerate(plan.source_cases):
        e = sc.entry
        device = e.get("device", "cpu")
        key = e.get("key") or hub_mod.case_key(e["name"], device)
        progress("start", i, n, key)
        rec = CaseRecord(name=e["name"], device=device, dtype=e.get("dtype", "float32"), key=key,
                         case=dict(e.get("case") or {}), config=dict(e.get("config") or {}),
                         isolation=e.get("isolation", "inprocess"))
        if e.get("error"):
            rec.error = e["error"]
            rec.timings = {"total_s": 0.0}
            records.append(rec)
            progress("done", i, n, rec)
            continue
        t0 = time.perf_counter()
        loaded = {role: load_capture(path) for role, path in sc.files.items()}
        load_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        mode = plan.tolerance_mode or e.get("tolerance_mode", "table")
        noise = mode == "noise_floor" and rec.dtype == "float32"
        if noise:
            reference = loaded["reference"]
            tol = noise_floor_tolerances(loaded["reference"], loaded["reference_float32"], k=plan.options.noise_floor_k)
        else:
            reference = loaded.get("reference_float32", loaded["reference"])
            tol = plan.table
        local = loaded["local"].stages if "local" in loaded else None
        result = compare(reference, loaded["port"], tol, case=rec.name, dtype=rec.dtype, device=device, local=local)
        result.meta["tolerance_mode"] = rec.tolerance_mode = "noise_floor" if noise else "table"
        result.meta["isolation"] = rec.isolation
        compare_s = time.perf_counter() - t1
        rec.result = result
        rec.backends = {"reference": _meta(reference), "port": _meta(loaded["port"])}
        figs = {"reference": reference, "port": loaded["port"]}
        copy = {role: str(p) for role, p in sc.files.items()}  # linked (or, in place, only listed)
        rec.captures = _capture_paths(key, sc.files)
        rec.timings = {"load_s": load_s, "compare_s": compare_s, "total_s": time.perf_counter() - t0}
        rec.timings["total_s"] += writer.submit(_job(plan, rec, figs, copy, patch_grids=i == 0))
        records.append(rec)
        progress("done", i, n, rec)
    return records
