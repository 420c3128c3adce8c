"""parity.report: run the parity suite (or recheck an earlier run) and write a report hub.

Command line: ``python -m parity.report --help`` (parity/report/__main__.py). Python API::

    from parity.report import ReportOptions, build_report
    outcome = build_report(ReportOptions(hub=Path("reports/x"), cases=("n64_g1",)))
    outcome.exit_code, outcome.document["verdict"]

Steps, with data between them: :mod:`.options` validates and plans (nothing written),
:mod:`.hub` claims the folder, :mod:`.runner` runs (or rechecks) the cases and, after each,
:mod:`.artifacts` writes its captures and draws its figures (:mod:`.figures`, :mod:`.raster`),
:mod:`.document` / :mod:`.drift` / :mod:`.provenance` assemble parity_report.json, :mod:`.html`
and :mod:`.junit` render it; the JSON is written last. Nothing here imports TensorFlow or
PyTorch (the sides do, when a case runs). Library code logs; only the CLI prints.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from parity import cases as case_registry
from parity.capture import CaptureError
from parity.divergences import Registry, judge_cases
from parity.fixtures import FixtureError

from . import document as D
from . import hub as hub_mod
from .artifacts import ArtifactError
from .drift import compare_to_baseline
from .options import Plan, ReportInputError, ReportOptions, make_plan
from .runner import CaseRecord, close_engine, recheck_cases, run_cases
from . import training as training_section

log = logging.getLogger(__name__)

__all__ = ["ArtifactError", "ReportInputError", "ReportOptions", "ReportOutcome", "build_report", "exit_code",
           "REPORT_JSON", "EXIT_PASS", "EXIT_FAIL", "EXIT_BAD_INPUT", "EXIT_NOT_RUN"]

REPORT_JSON = hub_mod.REPORT_JSON


#: Exit codes of a report (``parity report --help`` lists them).
EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_NOT_RUN = 0, 1, 2, 3


@dataclass
class ReportOutcome:
    document: Dict[str, Any]
    hub: Path
    exit_code: int  # 0: pass; 1: a stage failed or drifted; 3: a case could not run (takes precedence over 1)


def exit_code(records: List[CaseRecord], verdict: str) -> int:
    """3 when a case could not run (its record has ``error``), else 0 for a pass and 1 for a fail."""
    if any(r.error for r in records):
        return EXIT_NOT_RUN
    return EXIT_PASS if verdict == "pass" else EXIT_FAIL


def build_report(options: ReportOptions, progress: Optional[Callable[..., None]] = None, *,
                 started: Optional[float] = None, clock: str = "build_report call") -> ReportOutcome:
    """Validate, run (or recheck), write the hub; raises ReportInputError on bad usage or input.

    ``started``: a ``time.perf_counter()`` value the wall time counts from (the CLI passes the
    process start); ``progress``: see parity.report.runner.

    When the run stops early on an exception, the hub is given back first (``Hub.abandon``: what
    this run created is removed, or, after an interruption or once an earlier report was removed,
    the hub stays marked incomplete); an unusable capture or fixture met only then is raised as
    ReportInputError, anything else as it was.
    """
    t_start = time.perf_counter() if started is None else started
    plan = make_plan(options)
    created = D.iso_now()
    try:
        plan.hub.claim(command=options.command, earlier=plan.earlier,
                       keep=(hub_mod.CAPTURES,) if plan.in_place else ())
    except hub_mod.HubError as exc:
        raise ReportInputError(str(exc)) from None
    log.info("hub %s: %s %d case(s)", plan.hub.root, plan.mode,
             len(plan.source_cases) if plan.mode == "recheck" else len(plan.cases) * len(plan.available_devices))
    if progress is not None:
        progress("begin", 0, 0, str(plan.hub.root))
    setup_s = time.perf_counter() - t_start
    run_timings: Dict[str, float] = {}
    try:
        if plan.mode == "recheck":
            records = recheck_cases(plan, progress, run_timings)
        else:
            records = run_cases(plan, progress, run_timings)
        doc = _finish(plan, records, created, t_start, clock, setup_s, run_timings)
    except KeyboardInterrupt:
        plan.hub.abandon("interrupted", interrupted=True)
        raise
    except BaseException as exc:
        left = plan.hub.abandon(f"{type(exc).__name__}: {exc}")
        log.info("report stopped early: %s", left)
        if isinstance(exc, (CaptureError, FixtureError)):  # a file went bad after it was checked
            raise ReportInputError(f"{exc}; {left}") from None
        raise
    finally:
        close_engine(plan)
    code = exit_code(records, doc["verdict"])
    if (doc.get("training") or {}).get("status") == "error":
        code = EXIT_NOT_RUN  # a side's training job did not run to the end
    return ReportOutcome(document=doc, hub=plan.hub.root, exit_code=code)


def _heatmap(plan: Plan, records: List[CaseRecord], verdict_text: str) -> None:
    from . import figures as F

    rows, margins, texts, failed = [], [], [], []
    for r in records:
        by = {s.name: s for s in r.result.stages} if r.result is not None else {}
        rows.append(r.key if r.error is None else f"{r.key} (crashed)")
        shown = [F.shown_margin(by[s].margin, by[s].local_error, by[s].verdict,
                                (by[s].nonfinite or {}).get("elements", 0)) if s in by else (None, "n/a")
                 for s in plan.engine.pair.stage_names]
        margins.append([m for m, _ in shown])
        texts.append([t for _, t in shown])
        failed.append([s in by and by[s].verdict != "pass" for s in plan.engine.pair.stage_names])
    if not rows:
        return
    F.summary_heatmap(plan.hub.path(hub_mod.SUMMARY_PNG), verdict_text, rows, list(plan.engine.pair.stage_names), margins, failed,
                      texts)
    plan.hub.record(hub_mod.SUMMARY_PNG)


def _backward(plan: Plan, records: List[CaseRecord], cases: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The document's backward block (--backward), its heat maps drawn into the hub."""
    from . import backward as B

    figures: Dict[str, str] = {}
    if plan.options.figures:
        try:
            figures = B.heatmaps(records, plan.hub.path, "Backward parity")
            for rel in figures.values():
                plan.hub.record(rel)
        except Exception as exc:  # a figure never fails the run
            log.warning("backward heat maps not drawn: %s", exc, exc_info=True)
    return B.block(cases, figures)


def _config(plan: Plan, records: List[CaseRecord]) -> Dict[str, Any]:
    o = plan.options
    return {
        "schema": "parity.report_config", "schema_version": 1, "mode": plan.mode, "hub": str(plan.hub.root),
        "suite": plan.suite, "cases": [r.name for r in records if r.device == (records[0].device if records else "cpu")],
        "case_definitions": {r.key: r.case for r in records},
        "devices": [d.device for d in plan.devices], "dtype": o.dtype, "tolerances": str(plan.tolerance_path),
        "tolerance_mode": plan.tolerance_mode_name, "noise_floor_k": o.noise_floor_k, "isolation": plan.isolation,
        "baseline": str(o.baseline) if o.baseline else None, "drift_factor": o.drift_factor,
        "recheck": str(o.recheck) if o.recheck else None, "in_place": plan.in_place,
        "junit": str(o.junit) if o.junit else None, "force": o.force, "figures": o.figures,
        "command": list(o.command), "options": o.to_dict(), "pair": plan.engine.pair.to_dict(),
        "job_timeout_s": o.job_timeout,
    }


def _device_matrix(plan: Plan) -> Optional[Dict[str, Any]]:
    """With a device besides the CPU in --devices: the device matrix of the plan's first case
    (parity.matrix: each side on each device vs its own CPU float64 and float32 runs, the
    candidate on the GPU vs the reference on the CPU). Unavailable devices appear with the reason."""
    if plan.mode != "run" or all(d.device == "cpu" for d in plan.devices) or not plan.cases:
        return None
    from parity.matrix import run_matrix

    case = plan.cases[0]
    t0 = time.perf_counter()
    result = run_matrix(case, [d.device for d in plan.devices], tolerances=plan.tolerance_path, engine=plan.engine)
    out = result.to_dict()
    out["time_s"] = time.perf_counter() - t0
    return out


def _finish(plan: Plan, records: List[CaseRecord], created: str, t_start: float, clock: str,
            setup_s: float, run_timings: Dict[str, float]) -> Dict[str, Any]:
    from . import html, junit, provenance, schema

    hub = plan.hub
    o = plan.options
    for r in records:
        for rel in r.files:
            hub.record(rel)
    for role, rel in hub_mod.PATCH_STATS.items():
        hub.write_json(rel, D.patch_stats_file(records, role), indent=None)
    hub.write_json(hub_mod.PATCH_ERRORS, D.patch_errors_file(records), indent=None)
    cases = [D.case_entry(r) for r in records]
    divergences = judge_cases(cases, plan.divergences or Registry(pair=plan.engine.pair.name, enabled=False),
                              plan.engine.pair.stages)
    n_pass = sum(r.verdict == "pass" for r in records)
    if o.figures:
        counts = divergences["counts"]
        known = "".join(f", {counts[v]} {v}" for v in ("known", "fixed") if counts[v])
        verdict_text = (f"Forward parity: {n_pass} of {len(records)} cases passed{known} "
                        f"({plan.tolerance_mode_name.replace('_', ' ')} tolerances"
                        f"{', recheck' if plan.mode == 'recheck' else ''})")
        try:
            _heatmap(plan, records, verdict_text)
        except Exception as exc:  # a figure never fails the run
            log.warning("summary heat map not drawn: %s", exc, exc_info=True)

    backward = _backward(plan, records, cases) if o.backward else None
    drift = None
    if plan.baseline is not None:
        drift = compare_to_baseline(cases, plan.baseline, o.drift_factor, str(o.baseline))
    devices = D.device_entries(plan.devices, cases)
    verdicts = D.verdicts(cases, drift)
    if backward is not None and backward["verdict"] != "pass":
        verdicts["verdict"] = "fail"
        verdicts["verdict_reasons"] = list(verdicts["verdict_reasons"]) + backward["reasons"]
    matrix = _device_matrix(plan)
    training = training_section.run(plan)  # None without --train-steps
    if training is not None and training.get("verdict") == "fail":
        verdicts["verdict"] = "fail"
        verdicts["verdict_reasons"] = list(verdicts.get("verdict_reasons", [])) + [
            f"training steps of {training['case']}: " + (training.get("reason") or "; ".join(training["problems"]))]
    if matrix is not None and matrix["verdict"] != "pass":
        verdicts["verdict"] = "fail"
        verdicts["verdict_reasons"] = list(verdicts.get("verdict_reasons", [])) + [
            f"device matrix of {matrix['case']}: a device disagrees with its CPU reference"]
    if plan.mode == "recheck":
        prov_cases = [case_registry.CASES[r.name] for r in records if r.name in case_registry.CASES]
    else:
        prov_cases = list(plan.cases)
    prov = provenance.collect(backend_metas=provenance.backend_metas(records), devices=devices,
                              cases=prov_cases, tolerance_mode=plan.tolerance_mode_name, isolation=plan.isolation,
                              command=o.command)
    recheck_of = None
    if plan.mode == "recheck":
        src = plan.source or {}
        recheck_of = {"hub": str(o.recheck), "created": src.get("created"), "verdict": src.get("verdict"),
                      "tolerances": (src.get("tolerances") or {}).get("mode"), "in_place": plan.in_place,
                      "provenance": src.get("provenance")}
    config = _config(plan, records)
    hub.write_json(hub_mod.CONFIG_JSON, config)
    hub.write_json(hub_mod.SCHEMA_JSON, schema.report_schema(backward=backward is not None))

    junit_rel = None
    if o.junit is not None:
        try:
            junit_rel = str(Path(o.junit).resolve().relative_to(hub.root.resolve()))
        except ValueError:
            junit_rel = None
    wall = time.perf_counter() - t_start
    doc: Dict[str, Any] = {
        "schema": D.SCHEMA, "schema_version": D.SCHEMA_VERSION,
        **verdicts,
        "created": created, "finished": D.iso_now(), "mode": plan.mode, "recheck_of": recheck_of,
        "hub": str(hub.root), "pair": plan.engine.pair.to_dict(),
        "summary": D.summary_counts(cases, devices, drift),
        "provenance": prov, "config": config, "tolerances": D.tolerance_block(plan),
        "devices": devices, "device_matrix": matrix, "cases": cases, "drift": drift, "divergences": divergences,
        "timings": {**D.timing_block(records, wall, clock, setup_s, run_timings.get("sides_busy_s")),
                    **run_timings},
        "files": D.fixed_files(str(o.junit) if o.junit else None),
    }
    refused = plan.refused or (plan.source or {}).get("not_expressible")
    if refused:  # cases a side cannot express: not run, not failed, listed with the reason
        doc["not_expressible"] = {name: dict(why) for name, why in refused.items()}
    if training is not None:
        doc["training"] = training
    if backward is not None:  # schema version 3: the backward section
        from .backward import SCHEMA_VERSION as BACKWARD_SCHEMA_VERSION

        doc["schema_version"] = BACKWARD_SCHEMA_VERSION
        doc["backward"] = backward
    artifacts = list(hub.written) + [hub_mod.INDEX_HTML] + ([junit_rel] if junit_rel else []) + [hub_mod.REPORT_JSON]
    doc["artifacts"] = list(dict.fromkeys(artifacts))
    hub.write_text(hub_mod.INDEX_HTML, html.render(doc))
    if o.junit is not None:
        hub_mod.write_bytes_atomic(Path(o.junit), junit.to_junit(doc))
    hub.write_json(hub_mod.REPORT_JSON, doc)  # last: from here on the hub claims a verdict
    hub.release()
    log.info("hub %s: verdict %s", hub.root, doc["verdict"])
    return doc
