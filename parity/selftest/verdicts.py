"""The self-test's judgement: one fault run -> a row; rows -> the fault's status (no models).

A fault is *detected* when at least one case fails under it; *localised* when the first
divergent stage of every catching case is the fault's expected stage; it must be caught in
every case of its ``must_show`` list that was run.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from .. import faults as fault_catalogue
from ..results import CaseResult


def _finite_or_none(x):
    return None if x is None else float(x)


def _worst_margin(result: CaseResult) -> Tuple[Optional[str], float]:
    """(stage, max over stages of end-to-end margin and local error); inf for structural problems."""
    best: Tuple[Optional[str], float] = (None, 0.0)
    for s in result.stages:
        vals = [v for v in (s.margin, s.local_error) if v is not None]
        if s.problem is not None:
            vals.append(math.inf)
        for v in vals:
            if v > best[1] or best[0] is None:
                best = (s.name, float(v))
    return best


def _largest_local(result: CaseResult, local: Mapping[str, Any], reference: Mapping[str, Any]
                   ) -> Tuple[Optional[str], Optional[float]]:
    """(stage, largest teacher-forced margin). compare() attaches no local result to a stage whose
    end-to-end comparison is structural; such a stage counts as inf when its teacher-forced
    output does not have the reference's shape either."""
    best: Tuple[Optional[str], Optional[float]] = (None, None)
    for s in result.stages:
        v = s.local_error
        if v is None and s.problem is not None and s.name in local and s.name in reference \
                and np.shape(local[s.name]) != np.shape(reference[s.name]):
            v = math.inf
        if v is None:
            continue
        if best[1] is None or v > best[1]:
            best = (s.name, float(v))
    return best


def summarise_fault(fault: fault_catalogue.Fault, runs: List[Dict[str, Any]], *, required: bool) -> Dict[str, Any]:
    """One flat dict per fault (the table row), with the per-case runs nested."""
    caught = [r for r in runs if r["verdict"] == "fail"]
    detected = bool(caught)
    first = caught[0] if caught else None
    mislocalised = [r for r in caught if r["first_divergent_stage"] != fault.expected_stage]
    ran = {r["case"] for r in runs}
    missed_must = [c for c in fault.must_show if c in ran and c not in {r["case"] for r in caught}]
    if not runs:
        status = "fail" if required else "skipped"
        reason = "no applicable case was run" + ("" if required else " (not counted: cases were restricted)")
    elif not detected:
        status, reason = "fail", f"not detected in {len(runs)} applicable case(s)"
    elif mislocalised:
        where = ", ".join(f"{r['first_divergent_stage']} in {r['case']}" for r in mislocalised)
        status, reason = "fail", f"first divergent stage {where}, expected {fault.expected_stage}"
    elif missed_must:
        status, reason = "fail", f"not caught in case(s) where it must show: {', '.join(missed_must)}"
    else:
        status, reason = "pass", "detected and localised"
    margin = None
    structural = None
    if first is not None:
        margin = first["margin_at_expected"]
        structural = first["problem_at_expected"]
    return {
        "name": fault.name,
        "description": fault.description,
        "upstream": fault.upstream,
        "expected_stage": fault.expected_stage,
        "applies_to": fault.applies.text,
        "network": fault.network,
        "detected": detected,
        "found_stage": first["first_divergent_stage"] if first else None,
        "root_cause_stage": first["root_cause_stage"] if first else None,
        "largest_local_error_stage": first["largest_local_error_stage"] if first else None,
        "largest_local_error": first["largest_local_error"] if first else None,
        "margin_at_expected": margin,
        "local_error_at_expected": first["local_error_at_expected"] if first else None,
        "structural_at_expected": structural,
        "caught_by": [r["case"] for r in caught],
        "cases_run": [r["case"] for r in runs],
        "must_show": list(fault.must_show),
        "localised": detected and not mislocalised,
        "status": status,
        "reason": reason,
        "notes": fault.notes,
        "runs": runs,
    }


SUMMARY_KEYS = ("name", "expected_stage", "found_stage", "status", "margin_at_expected", "largest_local_error_stage",
                "largest_local_error", "caught_by", "cases_run", "description")


def summary_row(row: Mapping[str, Any]) -> Dict[str, Any]:
    """The compact form of a fault row (the terminal table's columns) for a report section."""
    out = {k: row[k] for k in SUMMARY_KEYS}
    out["structural"] = bool(row["structural_at_expected"])
    return out


