"""parity_report.json: assembling the document (its schema is parity.report.schema).

Everything is plain JSON: non-finite floats are the strings "nan", "inf", "-inf" (the
convention of parity.compare / parity.jsonable.to_json), ``None`` means "not computed".

Verdicts: a case passes when every stage passes and it did not crash; with the registry of
known divergences (parity.divergences) a case whose only failures are registered is "known",
one whose registered divergence disappeared "fixed" (a failure until the entry is removed).
``parity_verdict`` is "pass" when every case passes or is known; the top-level ``verdict``
(what gates read, and what the exit code follows) is "pass" when, in addition, no stage
drifted beyond the factor against the baseline. ``verdict_reasons`` says why a verdict is "fail". An unavailable device is listed
in ``devices`` with its reason and does not fail the report.

Each case entry is a superset of :meth:`parity.results.CaseResult.to_dict` (without the
per-patch arrays, which live in analysis/*_patch_stats.json and analysis/patch_errors.json),
so ``CaseResult.from_dict(entry)`` reads it back directly.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from parity.results import SCHEMA as CASE_SCHEMA
from parity.results import SCHEMA_VERSION as CASE_SCHEMA_VERSION
from parity.divergences import verdict_ok
from parity.jsonable import encode_float, to_json

from . import hub as hub_mod
from .devices import DeviceStatus
from .runner import CaseRecord

SCHEMA = "parity.report"
#: 2: sides and pairs (``pair``; per case ``sides`` and ``errors``; captures named
#: ``<role>.<side>.npz``; patch statistics and grids per role; determinism per side).
#: 3: known divergences (``divergences``: the registry applied; a case's ``verdict`` may be
#: "known" or "fixed", with ``raw_verdict`` and ``divergences``; a stage's ``divergence``;
#: ``summary.known`` / ``summary.fixed``). Version 2 hubs are still read (recheck, show, baseline).
SCHEMA_VERSION = 3


def iso_now(t: Optional[float] = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _worst_patches(perr: Optional[Dict[str, Any]]) -> Optional[List[Dict[str, Any]]]:
    if not perr:
        return None
    return [{"b": int(b), "c": int(c), "max_abs": encode_float(v)} for b, c, v in perr.get("worst", [])]


def _tap_notes(meta: Dict[str, Any], stages: List[Dict[str, Any]]) -> None:
    """Declared sides (parity.byo): where each role tapped a stage and whether the harness
    derived it; any side: why a stage was not teacher-forced (its local error not checked)."""
    taps = {role: (meta.get(role) or {}).get("taps") for role in ("reference", "candidate")}
    taps = {role: t for role, t in taps.items() if t}
    reasons = (meta.get("candidate") or {}).get("local_errors") or {}
    for st in stages:
        name = st["name"]
        if taps:
            st["taps"] = {role: t[name]["tap"] for role, t in taps.items() if name in t}
            st["derived"] = any((t.get(name) or {}).get("derived", False) for t in taps.values())
        if name in reasons:
            st["local_not_checked"] = reasons[name]


def case_entry(rec: CaseRecord) -> Dict[str, Any]:
    """The JSON entry of one case on one device."""
    if rec.result is not None:
        res = rec.result
        d = {"schema": CASE_SCHEMA, "schema_version": CASE_SCHEMA_VERSION, "name": res.name, "verdict": res.verdict,
             "first_divergent_stage": res.first_divergent_stage, "root_cause_stage": res.root_cause_stage,
             "problems": list(res.problems), "dtype": res.dtype, "device": res.device, "backends": dict(res.backends),
             "stages": [sr.to_dict() for sr in res.stages]}  # CaseResult.to_dict() less the per-patch arrays
        for st, sr in zip(d["stages"], res.stages):
            st["worst_patches"] = _worst_patches(res.patch_errors.get(sr.name))
            st["drift"] = None
        _tap_notes(res.meta or {}, d["stages"])
    else:
        d = {"schema": CASE_SCHEMA, "schema_version": CASE_SCHEMA_VERSION, "name": rec.name, "verdict": "fail",
             "first_divergent_stage": None, "root_cause_stage": None,
             "problems": [f"the case did not run to the end: {rec.error}"], "backends": {}, "stages": []}
    d.update(to_json({
        "name": rec.name, "key": rec.key, "device": rec.device, "dtype": rec.dtype, "verdict": rec.verdict,
        "error": rec.error, "errors": list(rec.errors), "sides": dict(rec.sides), "config": rec.config, "case": rec.case, "tolerance_mode": rec.tolerance_mode,
        "isolation": rec.isolation,
        "versions": {role: (m or {}).get("versions") for role, m in rec.backends.items()},
        "timings": {k: float(v) for k, v in rec.timings.items()},
        "captures": dict(rec.captures), "figures": rec.figures, "figure_errors": list(rec.figure_errors),
        "drift_flagged": 0,
    }))
    for key in ("own_losses", "given", "upstream"):
        # own_losses: each side's own loss (its code, its reduction) beside the canonical loss stages;
        # given: what a side that translates the case config was given; upstream: the user's checkout
        per_side = {rec.sides.get(role, role): m[key] for role, m in rec.backends.items() if (m or {}).get(key)}
        if per_side:
            d[key] = to_json(per_side)
    if rec.backward is not None:
        from .backward import case_entry as backward_entry

        d["backward"] = backward_entry(rec.backward)
    return d


def device_entries(devices: Sequence[DeviceStatus], cases: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One entry per requested device: status, reason, and the verdict of its cases."""
    out = []
    for dev in devices:
        d = dev.to_dict()
        mine = [c for c in cases if c["device"] == dev.device]
        d["cases"] = [c["key"] for c in mine]
        d["passed"] = sum(c["verdict"] == "pass" for c in mine)
        d["known"] = sum(c["verdict"] == "known" for c in mine)
        d["failed"] = len(mine) - d["passed"] - d["known"]
        d["verdict"] = None if not dev.available else ("pass" if d["failed"] == 0 else "fail")
        out.append(d)
    return out


def tolerance_block(plan) -> Dict[str, Any]:
    path = Path(plan.tolerance_path)
    try:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        sha = None
    t = plan.table
    return to_json({
        "mode": plan.tolerance_mode_name, "path": str(path), "sha256": sha,
        "noise_floor_k": plan.options.noise_floor_k if plan.tolerance_mode != "table" else None,
        "table": {"defaults": dict(t.defaults), "stages": {k: dict(v) for k, v in t.stages.items()},
                  "device_overrides": {k: dict(v) for k, v in t.device_overrides.items()}},
        "note": {
            "noise_floor": "float32 cases are gated against k x the reference's own float32 error vs its float64 "
                           "run (the per-stage tolerances are in each stage entry); float64 cases use the table",
            "table": "per-stage tolerances resolved from the table are in each stage entry",
            "per_case": "each case uses its own mode (the case entry's tolerance_mode): the table, or the noise "
                        "floor for float32 cases that ask for it; the resolved tolerances are in each stage entry",
        }[plan.tolerance_mode_name],
    })


def timing_block(records: Sequence[CaseRecord], wall_s: float, clock: str, setup_s: float,
                 busy_s: Optional[float] = None) -> Dict[str, Any]:
    """Where the wall time went.

    ``sides_work_s``: the sides' own work summed over jobs (framework import, model build,
    forward passes, teacher-forced stages); jobs of the two sides overlap in their workers, so
    ``backend_s`` is the wall time during which at least one side was working (``busy_s`` from
    the engine; the sum when not given) and ``harness_s`` the rest (start-up, inputs, moving
    jobs and captures between processes, compare, figures, captures, JSON and HTML).
    """
    def total(key: str) -> float:
        return float(sum(r.timings.get(key, 0.0) for r in records))

    forward = total("forward_s")
    work = forward + total("import_s") + total("build_s") + total("local_s")
    backend = min(work, busy_s) if busy_s is not None else work
    wall = max(wall_s, 1e-9)
    cases_s = total("total_s")
    return {
        "clock": clock, "wall_s": wall_s, "setup_s": setup_s, "cases_s": cases_s,
        "finish_s": max(wall_s - setup_s - cases_s, 0.0),
        "forward_s": forward, "reference_forward_s": total("reference_forward_s"),
        "candidate_forward_s": total("candidate_forward_s"),
        "sides_work_s": work, "backend_s": backend, "import_s": total("import_s"), "build_s": total("build_s"), "local_s": total("local_s"),
        "isolation_s": total("other_s"), "prepare_s": total("prepare_s"), "compare_s": total("compare_s"),
        "load_s": total("load_s"), "figures_s": total("figures_s"), "write_s": total("write_s"),
        "outside_forward_s": wall_s - forward, "outside_forward_fraction": (wall_s - forward) / wall,
        "harness_s": wall_s - backend, "harness_fraction": (wall_s - backend) / wall,
        "definitions": {
            "wall_s": "from the start of the process (CLI) or of build_report until the report was assembled "
                      "(writing index.html and this file is not included)",
            "forward_s": "both sides' forward passes (parity.jobs.execute 'forward_s')",
            "sides_work_s": "forward + framework import + model build + teacher-forced local stages, summed over "
                            "every job of both sides",
            "backend_s": "wall time during which at least one side was working (the two sides' jobs overlap)",
            "isolation_s": "moving jobs and captures between processes (parity.run isolation; part of harness_s)",
            "harness_s": "wall_s - backend_s: everything but the sides' own work (start-up, inputs, job "
                         "transport, compare, figures, captures, JSON)",
            "figures_s/write_s": "drawing a case's figures / compressing and writing its capture files, in a "
                                 "thread while the next case runs (not part of the cases' total_s)",
            "finish_s": "after the last case: the last files (files_wait_s), heat map, analysis JSON, document",
        },
    }


def verdicts(cases: Sequence[Dict[str, Any]], drift: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    failed = [c for c in cases if not verdict_ok(c["verdict"])]
    reasons = []
    crashed = [c for c in failed if c.get("error")]
    fixed = [c for c in failed if c["verdict"] == "fixed"]
    if failed:
        reasons.append(f"{len(failed)} of {len(cases)} cases failed: " + ", ".join(c["key"] for c in failed[:10])
                       + (" ..." if len(failed) > 10 else ""))
    if fixed:
        reasons.append(f"{len(fixed)} case(s) no longer show a registered divergence (fixed: remove the entry): "
                       + ", ".join(c["key"] for c in fixed[:10]))
    if crashed:
        reasons.append(f"{len(crashed)} case(s) did not run to the end: " + ", ".join(c["key"] for c in crashed[:5]))
    if drift and drift["n_flagged"]:
        reasons.append(f"{drift['n_flagged']} stage(s) drifted by more than x{drift['factor']:g} against the baseline")
    parity = "pass" if not failed else "fail"
    overall = "pass" if parity == "pass" and not (drift and drift["n_flagged"]) else "fail"
    return {"verdict": overall, "parity_verdict": parity, "verdict_reasons": reasons}


def summary_counts(cases: Sequence[Dict[str, Any]], devices: Sequence[Dict[str, Any]],
                   drift: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    return {"cases": len(cases), "passed": sum(c["verdict"] == "pass" for c in cases),
            "known": sum(c["verdict"] == "known" for c in cases),
            "fixed": sum(c["verdict"] == "fixed" for c in cases),
            "failed": sum(not verdict_ok(c["verdict"]) for c in cases),
            "crashed": sum(bool(c.get("error")) for c in cases),
            "devices_available": [d["device"] for d in devices if d["status"] == "available"],
            "devices_unavailable": [d["device"] for d in devices if d["status"] != "available"],
            "drift_flagged": drift["n_flagged"] if drift else None}


def patch_stats_file(records: Sequence[CaseRecord], role: str) -> Dict[str, Any]:
    """analysis/<role>_patch_stats.json: per case, per patch-shaped stage, per-patch statistics
    of the side that played ``role`` ("reference" or "candidate")."""
    cases: Dict[str, Any] = {}
    sides = []
    for r in records:
        if r.result is None:
            continue
        stats = r.result.patch_stats.get(role, {})
        side = r.sides.get(role)
        if side not in sides:
            sides.append(side)
        cases[r.key] = {"name": r.name, "device": r.device, "dtype": r.dtype, "side": side,
                        "capture_dtype": (r.backends.get(role) or {}).get("dtype"),
                        "stages": to_json(stats)}
    return {
        "schema": "parity.patch_stats", "schema_version": 2, "role": role, "sides": sides,
        "description": ("per-patch statistics of every (B, C|K, N, N) stage, computed in float64 over each N x N "
                        "patch: per_patch.{mean, std, min, max, var_zero_mean} are (B, C) arrays; global_mean, "
                        "global_std (unbiased) and var_zero_mean (mean of the per-patch variances, as in "
                        "PatchStatsLogger) summarise the stage; complex stages have the same under amplitude "
                        "and phase (rad)"),
        "cases": cases,
    }


def patch_errors_file(records: Sequence[CaseRecord]) -> Dict[str, Any]:
    return {
        "schema": "parity.patch_errors", "schema_version": 1,
        "description": ("per-patch |candidate - reference| of every (B, C|K, N, N) stage: max_abs and rel_l2 are (B, C) "
                        "arrays; complex stages add amp_max_abs and phase_max_weighted; worst: top patches "
                        "as [b, c, max_abs]"),
        "cases": {r.key: to_json(r.result.patch_errors) for r in records if r.result is not None},
    }


def fixed_files(junit: Optional[str]) -> Dict[str, Any]:
    return {"index": hub_mod.INDEX_HTML, "summary": hub_mod.SUMMARY_PNG, "schema": hub_mod.SCHEMA_JSON,
            "config": hub_mod.CONFIG_JSON, "patch_stats": dict(hub_mod.PATCH_STATS),
            "patch_grids": dict(hub_mod.PATCH_GRIDS), "patch_errors": hub_mod.PATCH_ERRORS, "junit": junit}
