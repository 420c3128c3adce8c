"""Run (or recheck) every case of a plan: CaseRecords, each case's captures and figures written.

``run_cases`` builds one engine plan (parity.engine) of every (device, case) comparison of the
pair and executes it; each decided case is recorded and its files are handed to the writer
while the next cases run. A case whose run fails (an error, a crash, a timeout of a side) is
recorded with the side, the job and the reason; the others still run. ``recheck_cases``
compares the captures of an earlier hub again under the plan's tolerances (stored nodes of a
plan: it never runs a model). Both report progress through a callback
``progress(event, index, total, info)`` with event "start" (info: the case key) or "done"
(info: the CaseRecord).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from parity.capture import Capture
from parity.divergences import judge_case, stage_graph
from parity.engine import Comparison, Engine, NoiseFloor, Outcome, Stored, role_of, uses_noise_floor

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
    result: Optional[Any] = None  # parity.compare.CaseResult
    error: Optional[str] = None
    errors: List[Dict[str, Any]] = field(default_factory=list)  # per failed job: side, job, kind, reason, tail
    tolerance_mode: str = "table"
    isolation: str = "inprocess"
    sides: Dict[str, str] = field(default_factory=dict)  # role -> side name
    backends: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # role -> capture meta (no arrays)
    timings: Dict[str, float] = field(default_factory=dict)
    captures: Dict[str, str] = field(default_factory=dict)  # role -> hub-relative path
    figures: Dict[str, Any] = field(default_factory=dict)
    figure_errors: List[str] = field(default_factory=list)
    files: List[str] = field(default_factory=list)  # hub-relative files written for this case
    status: Optional[str] = None  # the verdict under the known divergences (None: no entry matched)
    backward: Optional[Any] = None  # --backward: the parity.backward.BackwardResult

    @property
    def verdict(self) -> str:
        return "pass" if self.error is None and self.result is not None and self.result.passed else "fail"


def _judge(plan: Plan, rec: CaseRecord) -> None:
    """The case's verdict under the plan's known divergences, for the progress line (the report
    judges its case entries again, in full)."""
    if plan.divergences is None or rec.result is None:
        return
    res = rec.result
    entry = {"name": rec.name, "dtype": rec.dtype, "verdict": res.verdict, "problems": list(res.problems),
             "stages": [s.to_dict() for s in res.stages]}
    got = judge_case(entry, plan.divergences, stage_graph(plan.engine.pair.stages))
    rec.status = got["verdict"] if got else None


def _meta(capture: Capture) -> Dict[str, Any]:
    m = capture.meta
    out = {k: m.get(k) for k in ("side", "framework", "dtype", "device", "versions", "determinism", "wall_time_s")}
    out.update({k: m[k] for k in ("given", "own_losses", "upstream") if m.get(k)})  # sides that translate the case
    return out


def _title(rec: CaseRecord) -> str:
    verdict = "PASS" if rec.verdict == "pass" else "FAIL"
    if rec.status in ("known", "fixed"):
        verdict += f" ({'known divergence' if rec.status == 'known' else 'a registered divergence is fixed'})"
    return f"case {rec.name} ({rec.device}, {rec.dtype}): {verdict}"


def _labels(rec: CaseRecord) -> tuple:
    ref = rec.sides.get("reference", "reference")
    return (f"{ref} float64" if rec.tolerance_mode == "noise_floor" else ref, rec.sides.get("candidate", "candidate"))


def _capture_paths(key: str, sides: Dict[str, str], roles) -> Dict[str, str]:
    side_of = {"reference": sides["reference"], "reference_float32": sides["reference"],
               "candidate": sides["candidate"], "local": sides["candidate"]}
    return {r: f"{hub_mod.CAPTURES}/{key}/{hub_mod.capture_name(r, side_of[r])}" for r in roles}


def _job(plan: Plan, rec: CaseRecord, captures: Dict[str, Capture], copy: Dict[str, str],
         patch_grids: bool) -> CaseJob:
    res = rec.result
    stages = figure_stages(res.stages, res.first_divergent_stage, res.root_cause_stage,
                           plan.engine.pair.stage_list) if res is not None else []
    return CaseJob(hub=str(plan.hub.root), key=rec.key, title=_title(rec), result=res, captures=captures, copy=copy,
                   paths=dict(rec.captures), figures=plan.options.figures, figure_stages=tuple(stages),
                   patch_grids=patch_grids, labels=_labels(rec))


def run_cases(plan: Plan, progress: Optional[Progress] = None,
              timings: Optional[Dict[str, float]] = None) -> List[CaseRecord]:
    """Run every case on every available device (device-major order) through the plan's engine.

    With ``isolation="workers"`` one long-lived worker process per side serves every case
    (parity.pool): each framework is imported once, the two sides' thread pools never share
    a process, and the reference of the next case runs while the candidate of this one does.

    Each case's captures and figures are written by an ArtifactWriter thread while the next
    case runs; this returns once they are all written (``timings["files_wait_s"]``: how long
    that took after the last case).
    """
    writer = ArtifactWriter(background=plan.options.background)
    try:
        records = _run_cases(plan, plan.engine, progress, writer)
        _collect(records, writer, timings)
        if timings is not None:
            timings["sides_busy_s"] = plan.busy_s
    except BaseException:
        writer.close(cancel=True)
        raise
    writer.close()
    return records


def close_engine(plan: Plan) -> None:
    """Stop the plan's workers in a daemon thread: their teardown (seconds for TensorFlow)
    does not hold up the report, and they exit on their own at end of input."""
    threading.Thread(target=plan.engine.close, name="parity-report-worker-shutdown", daemon=True).start()


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


def _run_cases(plan: Plan, engine: Engine, progress: Optional[Progress], writer: ArtifactWriter) -> List[CaseRecord]:
    progress = progress or (lambda *a: None)
    pairs = [(dev, case) for dev in plan.available_devices for case in plan.cases]
    eplan = engine.plan()
    for i, (device, case) in enumerate(pairs):
        eplan.add_case(case, device=device, tolerances=plan.table, tolerance_mode=plan.tolerance_mode,
                       noise_floor_k=plan.options.noise_floor_k, key=hub_mod.case_key(case.name, device),
                       tag=(i, case), meta={"isolation": plan.isolation},
                       task="backward" if plan.options.backward else "forward")
    records: List[CaseRecord] = []
    clock = {"t": time.perf_counter()}

    def started(c: Comparison) -> None:
        progress("start", c.tag[0], len(pairs), c.key)

    def decided(o: Outcome) -> None:
        i, case = o.comparison.tag
        now = time.perf_counter()
        rec, captures = _record(plan, case, o, now - clock["t"])
        clock["t"] = now
        _judge(plan, rec)
        if rec.result is not None:
            rec.timings["total_s"] += writer.submit(_job(plan, rec, captures, {}, patch_grids=i == 0))
        records.append(rec)
        progress("done", i, len(pairs), rec)

    engine.run(eplan, on_outcome=decided, on_start=started)
    plan.busy_s = engine.state.busy_s
    return records


def _record(plan: Plan, case, o: Outcome, total: float) -> Tuple[CaseRecord, Dict[str, Capture]]:
    c = o.comparison
    pair = plan.engine.pair
    rec = CaseRecord(name=case.name, device=c.device, dtype=case.dtype, key=c.key, case=case.to_dict(),
                     config=case.config.to_dict(), isolation=plan.isolation,
                     tolerance_mode=c.meta.get("tolerance_mode", "table"),
                     sides={"reference": pair.reference, "candidate": pair.candidate})
    if o.result is None or o.error is not None:
        log.error("case %s on %s: %s", case.name, c.device, o.error)
        rec.error, rec.errors = o.error, list(o.errors)
        rec.timings = {"total_s": total}
        return rec, {}
    t = {f"{role}_{k}": v for role, jr in o.outputs.items() for k, v in jr.timings.items()}
    both = lambda k: sum(v for name, v in t.items() if name.endswith("_" + k) and not name.startswith("local"))  # noqa: E731
    rec.timings = {"prepare_s": o.timings.get("prepare_s", 0.0), "import_s": both("import_s"),
                   "build_s": both("build_s"), "forward_s": both("forward_s"), "local_s": both("local_s"),
                   "compare_s": o.timings.get("compare_s", 0.0),
                   "reference_forward_s": t.get("reference_forward_s", 0.0),
                   "candidate_forward_s": t.get("candidate_forward_s", 0.0)}
    rec.timings["other_s"] = max(total - sum(rec.timings[k] for k in ("prepare_s", "import_s", "build_s", "forward_s",
                                                                        "local_s", "compare_s")), 0.0)
    rec.timings["total_s"] = total
    if plan.options.backward:
        rec.timings["backward_s"] = both("backward_s")
        rec.backward = o.backward
    rec.result = o.result
    ref, cand = o.outputs["reference"].capture, o.outputs["candidate"].capture
    captures = {"reference": ref, "candidate": cand}
    rec.backends = {"reference": _meta(ref), "candidate": _meta(cand)}
    if o.local is not None:
        captures["local"] = Capture(stages=o.local, meta={"side": pair.candidate, "case": case.name, "kind": "local",
                                                          "teacher": "reference", "dtype": case.dtype,
                                                          "device": c.device, "stage_names": list(pair.stage_names)})
    if "reference_float32" in o.outputs:
        captures["reference_float32"] = o.outputs["reference_float32"].capture
    rec.captures = _capture_paths(c.key, rec.sides, captures)
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
    """One plan of stored nodes; the noise-floor decision is the engine's."""
    progress = progress or (lambda *a: None)
    records: List[CaseRecord] = []
    n = len(plan.source_cases)
    engine = Engine(plan.engine.pair, isolation="inprocess")  # stored nodes only: nothing runs
    eplan = engine.plan()
    for i, sc in enumerate(plan.source_cases):
        e = sc.entry
        device = e.get("device", "cpu")
        key = e.get("key") or hub_mod.case_key(e["name"], device)
        rec = CaseRecord(name=e["name"], device=device, dtype=e.get("dtype", "float32"), key=key,
                         case=dict(e.get("case") or {}), config=dict(e.get("config") or {}),
                         isolation=e.get("isolation", "inprocess"), sides=dict(sc.sides))
        if e.get("error"):
            rec.error, rec.errors = e["error"], list(e.get("errors") or [])
            rec.timings = {"total_s": 0.0}
            records.append(rec)
            progress("done", i, n, rec)
            continue
        nodes = {role: eplan.add(Stored(role, Path(p))) for role, p in sc.files.items()}
        mode = plan.tolerance_mode or e.get("tolerance_mode", "table")
        if uses_noise_floor(mode, rec.dtype):
            reference = nodes["reference"]
            tol = NoiseFloor(nodes["reference"], nodes["reference_float32"], plan.options.noise_floor_k)
        else:  # a source that ran under the noise floor holds the float32 reference too
            reference = nodes.get("reference_float32", nodes["reference"])
            tol = plan.table
        eplan.compare(Comparison(key=key, case=rec.name, dtype=rec.dtype, device=device, reference=reference,
                                 candidate=nodes["candidate"], tolerance=tol, local=nodes.get("local"),
                                 meta={"tolerance_mode": "noise_floor" if isinstance(tol, NoiseFloor) else "table",
                                       "isolation": rec.isolation}, tag=(i, rec, sc)))
        records.append(rec)
    clock = {"t": time.perf_counter()}

    def started(c: Comparison) -> None:
        progress("start", c.tag[0], n, c.key)

    def decided(o: Outcome) -> None:
        i, rec, sc = o.comparison.tag
        if o.result is None:
            rec.error, rec.errors = o.error, list(o.errors)
        else:
            rec.result = o.result
            rec.tolerance_mode = o.result.meta["tolerance_mode"]
            ref, cand = o.outputs[role_of(o.comparison.reference)].capture, o.outputs["candidate"].capture
            rec.backends = {"reference": _meta(ref), "candidate": _meta(cand)}
            rec.captures = {role: f"{hub_mod.CAPTURES}/{rec.key}/{Path(p).name}" for role, p in sc.files.items()}
            copy = {role: str(p) for role, p in sc.files.items()}  # linked (or, in place, only listed)
            now = time.perf_counter()
            load_s = sum(jr.timings.get("load_s", 0.0) for jr in o.outputs.values())
            rec.timings = {"load_s": load_s, "compare_s": o.timings.get("compare_s", 0.0), "total_s": now - clock["t"]}
            clock["t"] = now
            _judge(plan, rec)
            rec.timings["total_s"] += writer.submit(_job(plan, rec, {"reference": ref, "candidate": cand}, copy,
                                                         patch_grids=i == 0))
        progress("done", i, n, rec)

    engine.run(eplan, on_outcome=decided, on_start=started)
    return records
