"""Drift against a baseline report: per case and stage, the error now vs then.

The error compared is ``max_abs`` (greatest |candidate - reference| of the stage), independent of the
tolerances in force, so a tolerance change is not mistaken for drift. The growth factor is

    ratio = (now + floor) / (then + floor),   floor = eps(stage dtype) * max|reference| of the stage

so a stage that was exact (0) and now differs by a rounding error or two is not flagged, while
one that grew tenfold above float round-off is. A stage is *flagged* when ``ratio > factor``,
whether or not it still passes; a non-finite error now (NaN/Inf) against a finite one then is
always flagged. Cases are matched by (name, device); a case whose dtype changed, or that is new
or crashed on either side, is listed but not compared. Operates on JSON dicts only.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from parity.jsonable import decode_float, encode_float

METRIC = "max_abs"
_EPS = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}


def _eps(dtype: Optional[str]) -> float:
    if dtype in ("complex64", "float32"):
        return _EPS["float32"]
    if dtype in ("complex128", "float64"):
        return _EPS["float64"]
    return _EPS["float32"]


def _num(v: Any) -> Optional[float]:
    v = decode_float(v)
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def stage_drift(now: Mapping[str, Any], then: Mapping[str, Any], factor: float) -> Optional[Dict[str, Any]]:
    """Drift of one stage entry vs its baseline entry; None when not comparable."""
    a, b = _num(then.get(METRIC)), _num(now.get(METRIC))
    if a is None or b is None or now.get("shape") != then.get("shape"):
        return None
    if not math.isfinite(a):
        return None
    scale = max(_num(now.get("ref_max_abs")) or 0.0, _num(then.get("ref_max_abs")) or 0.0)
    floor = _eps(now.get("dtype")) * (scale if scale > 0 and math.isfinite(scale) else 1.0)
    ratio = math.inf if not math.isfinite(b) else (b + floor) / (a + floor)
    return {"metric": METRIC, "then": encode_float(a), "now": encode_float(b), "floor": floor,
            "ratio": encode_float(ratio), "flagged": bool(ratio > factor)}


def compare_to_baseline(cases: Sequence[Dict[str, Any]], baseline: Mapping[str, Any], factor: float,
                        baseline_path: str = "") -> Dict[str, Any]:
    """Annotate every stage entry of ``cases`` with ``drift`` and return the report's drift block."""
    index = {}
    for e in baseline.get("cases", []):
        if isinstance(e, dict) and "name" in e:
            index[(e["name"], e.get("device", "cpu"))] = e
    flagged: List[Dict[str, Any]] = []
    per_case: List[Dict[str, Any]] = []
    for case in cases:
        old = index.get((case["name"], case.get("device", "cpu")))
        row: Dict[str, Any] = {"case": case["name"], "device": case.get("device", "cpu"), "status": "compared",
                               "n_flagged": 0, "max_ratio": None}
        for st in case.get("stages", []):
            st["drift"] = None
        if old is None:
            row["status"] = "new (not in the baseline)"
        elif old.get("dtype") != case.get("dtype"):
            row["status"] = f"dtype changed ({old.get('dtype')} -> {case.get('dtype')}); not compared"
        elif case.get("error") or old.get("error") or not old.get("stages"):
            row["status"] = "not compared (a run crashed)"
        else:
            old_stages = {s.get("name"): s for s in old.get("stages", []) if isinstance(s, dict)}
            worst = None
            for st in case.get("stages", []):
                prev = old_stages.get(st.get("name"))
                d = stage_drift(st, prev, factor) if prev is not None else None
                st["drift"] = d
                if d is None:
                    continue
                r = decode_float(d["ratio"])
                worst = r if worst is None or r > worst else worst
                if d["flagged"]:
                    row["n_flagged"] += 1
                    flagged.append({"case": case["name"], "device": case.get("device", "cpu"), "stage": st["name"],
                                    "then": d["then"], "now": d["now"], "ratio": d["ratio"],
                                    "verdict": st.get("verdict")})
            row["max_ratio"] = None if worst is None else encode_float(worst)
        case["drift_flagged"] = row["n_flagged"]
        per_case.append(row)
    return {
        "baseline": {"hub": baseline_path, "created": baseline.get("created"), "verdict": baseline.get("verdict")},
        "factor": factor, "metric": METRIC,
        "floor": "eps(stage dtype) x max|reference| of the stage, added to both errors",
        "verdict": "fail" if flagged else "pass", "n_flagged": len(flagged), "flagged": flagged, "cases": per_case,
    }
