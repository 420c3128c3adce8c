"""Two captures -> a :class:`CaseResult`. Never raises on a numeric mismatch.

:func:`compare` checks the stage sets, shapes and dtype kinds, computes the error statistics of
every stage (parity.stats.errors), per-patch statistics for patch-shaped stages, and, when given
teacher-forced candidate stages (``local``), labels each stage as the root cause of a failure or
as having inherited it. To judge the same captures under other tolerances, compare them again
(``python -m parity.report --recheck`` does this for a whole hub).

It raises only for programmer errors: unknown stage names (in ``stages``, tolerances or
``local``), a tolerance missing for a compared stage, or an unsupported argument type.

The result objects and their JSON are in :mod:`parity.results`.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from parity import messages
from parity.capture import Capture
from parity.results import CaseResult, StageResult
from parity.stages import StageList, stage_list as as_stage_list
from parity.stats.errors import TINY_REL, compare_arrays, error_stats
from parity.stats.patches import TOP_K
from parity.tolerances import Tolerance, ToleranceTable, dtype_key

# CaseResult and StageResult are the types compare() returns; callers import them from here too.
__all__ = ["CaseResult", "StageResult", "compare"]

# Fields of StageResult filled from parity.stats.errors.error_stats (same names).
_STAT_FIELDS = ("max_abs", "max_rel", "rel_max", "rel_l2", "mismatch_count", "mismatch_fraction",
                "allowed_mismatches", "worst_index", "worst_rel_index", "quantiles", "min_passing_tolerance",
                "margin", "n_zero_ref", "n_tiny_ref", "tiny", "nonfinite", "complex_stats", "ulp", "ref_max_abs",
                "witness")
# What a local (teacher-forced) comparison keeps: its verdict and enough to explain it.
_LOCAL_FIELDS = ("verdict", "margin", "max_abs", "rel_max", "ref_max_abs", "mismatch_count", "allowed_mismatches",
                 "witness", "nonfinite", "tolerance", "problem")


# --------------------------------------------------------------------------- inputs
def _unpack(x: Any, what: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    if isinstance(x, Capture):
        return dict(x.stages), dict(x.meta)
    if isinstance(x, Mapping):
        return dict(x), {}
    raise TypeError(f"{what} must be a Capture or a dict stage -> array, got {type(x).__name__}")


def _side_of(meta: Mapping[str, Any]) -> Any:
    """The side a capture came from (``backend`` in captures written before sides had names)."""
    return meta.get("side", meta.get("backend"))


def _stage_order(stages: Optional[Sequence[str]], sl: StageList) -> List[str]:
    if stages is None:
        return list(sl.names)
    unknown = [s for s in stages if s not in sl]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown} in stages=; known stages are {list(sl.names)}")
    wanted = set(stages)
    return [s for s in sl.names if s in wanted]


class _Tolerances:
    """Resolves the tolerance of a stage from a ToleranceTable, a dict or a single Tolerance."""

    def __init__(self, tolerances: Any, dtype: Optional[str], device: str, sl: StageList):
        self.dtype, self.device = (dtype_key(dtype) if dtype is not None else None), device
        self.table = self.single = None
        self.map: Dict[str, Tolerance] = {}
        if isinstance(tolerances, ToleranceTable):
            self.table = tolerances
        elif isinstance(tolerances, Tolerance):
            self.single = tolerances
        elif isinstance(tolerances, Mapping):
            unknown = [s for s in tolerances if s not in sl]
            if unknown:
                raise ValueError(f"tolerances name unknown stage(s) {unknown}; known stages are {list(sl.names)}")
            for s, t in tolerances.items():
                self.map[s] = t if isinstance(t, Tolerance) else Tolerance.from_dict(t)
        else:
            raise TypeError(f"tolerances must be a ToleranceTable, a dict stage -> Tolerance or a Tolerance, "
                            f"got {type(tolerances).__name__}")

    def check_covers(self, stages: Sequence[str]) -> None:
        if self.map or (self.table is None and self.single is None):
            missing = [s for s in stages if s not in self.map]
            if missing:
                raise ValueError(f"no tolerance given for stage(s) {missing}; pass one for every compared "
                                 f"stage, or stages=[...] to compare fewer")

    def __call__(self, stage: str, array_dtype: Any) -> Tolerance:
        if self.single is not None:
            return self.single
        if self.table is None:
            return self.map[stage]
        return self.table.for_stage(stage, self.dtype or dtype_key(array_dtype), self.device)


def _kind_problem(name: str, ref: np.ndarray, cand: np.ndarray, sl: StageList) -> Optional[str]:
    for side, a in (("reference", ref), ("candidate", cand)):
        if a.dtype.kind not in "fc":
            return f"{side} dtype {a.dtype} is not floating point or complex"
    stage = sl.by_name.get(name)
    rk, ck = ref.dtype.kind == "c", cand.dtype.kind == "c"
    if rk != ck:
        want = f" (stage {name} is {'complex' if stage.complex else 'real'})" if stage else ""
        return (f"dtype kind mismatch: reference {ref.dtype} is {'complex' if rk else 'real'} but candidate "
                f"{cand.dtype} is {'complex' if ck else 'real'}{want}")
    if stage is not None and stage.complex != rk:
        return (f"stage {name} is {'complex' if stage.complex else 'real'} but both captures hold "
                f"{ref.dtype}/{cand.dtype} arrays")
    return None


def _local_stats(name: str, ref: np.ndarray, loc: Any, tol: Tolerance, tiny_rel: float,
                 sl: StageList) -> Dict[str, Any]:
    loc = np.asarray(loc)
    problem = None
    if loc.shape != ref.shape:
        problem = f"shape mismatch: reference {ref.shape} vs local {loc.shape}; arrays are never broadcast"
    else:
        problem = _kind_problem(name, ref, loc, sl)
    if problem is not None:
        return {"verdict": "fail", "margin": math.inf, "problem": problem, "tolerance": tol.to_dict()}
    s = error_stats(ref, loc, tol, tiny_rel=tiny_rel)
    out = {k: s[k] for k in _LOCAL_FIELDS if k in s}
    out.update(tolerance=tol.to_dict(), problem=None)
    return out


def _label(verdict_e2e: str, local: Optional[Mapping[str, Any]], nonfinite: int = 0,
           upstream_failed: bool = False) -> str:
    """ok / root_cause / propagated / not_checked from the end-to-end verdict and the local result.

    A stage whose local comparison passes but whose end-to-end values hold NaN/Inf (``nonfinite``
    mismatched elements) is "propagated" only when an earlier stage failed end to end; otherwise
    the non-finite values first appear at this stage, and it is the root cause.
    """
    if local is None:
        return "ok" if verdict_e2e == "pass" else "not_checked"
    if local["verdict"] != "pass":
        return "root_cause"
    if verdict_e2e == "pass":
        return "ok"
    return "root_cause" if nonfinite and not upstream_failed else "propagated"


def _finish_stage(sr: StageResult, e2e_verdict: str, case: str, perr, upstream_failed: bool = False) -> StageResult:
    sr.label = _label(e2e_verdict, sr.local, (sr.nonfinite or {}).get("elements", 0), upstream_failed)
    sr.local_error = None if sr.local is None else sr.local.get("margin")
    local_fail = sr.local is not None and sr.local["verdict"] != "pass"
    sr.verdict = "pass" if (e2e_verdict == "pass" and not local_fail) else "fail"
    sr.message = messages.format_stage_failure(case, sr, perr)
    return sr


def _finish_case(res: CaseResult) -> CaseResult:
    failing = [s for s in res.stages if not s]
    res.first_divergent_stage = failing[0].name if failing else None
    roots = [s for s in res.stages if s.label == "root_cause"]
    res.root_cause_stage = roots[0].name if roots else None
    res.verdict = "pass" if not failing and not res.problems else "fail"
    return res


# --------------------------------------------------------------------------- compare
def compare(reference: Any, candidate: Any, tolerances: Any, *, case: str = "", dtype: Optional[str] = None,
            device: Optional[str] = None, local: Any = None, stages: Optional[Sequence[str]] = None,
            tiny_rel: float = TINY_REL, top_k: int = TOP_K, stage_list: Any = None) -> CaseResult:
    """Compare a candidate capture with a reference capture, stage by stage.

    ``reference``/``candidate``: Capture or ``{stage: array}`` (canonical layout).
    ``tolerances``: ToleranceTable (resolved per stage for ``dtype``, default the precision of
    the candidate array, and ``device``, default ``candidate.meta["device"]`` or "cpu"), a dict
    ``{stage: Tolerance}`` covering every compared stage, or one Tolerance for all.
    ``local``: ``{stage: array}`` (or Capture) of candidate stages computed from the
    *reference's* inputs (teacher forcing); compared with the same tolerance, it labels stages
    root_cause / propagated. ``stages``: compare only these (default: every stage of
    ``stage_list``, the pair's :class:`parity.stages.StageList`; default the built-in pair's).
    ``case``: the case name (default ``candidate.meta["case"]``).
    """
    ref_arrays, ref_meta = _unpack(reference, "reference")
    cand_arrays, cand_meta = _unpack(candidate, "candidate")
    local_arrays = _unpack(local, "local")[0] if local is not None else {}
    sl = as_stage_list(stage_list)
    unknown_local = [s for s in local_arrays if s not in sl]
    if unknown_local:
        raise ValueError(f"local names unknown stage(s) {unknown_local}; known stages are {list(sl.names)}")
    order = _stage_order(stages, sl)
    case = case or str(cand_meta.get("case") or ref_meta.get("case") or "")
    device = device or str(cand_meta.get("device") or "cpu")
    tol_for = _Tolerances(tolerances, dtype, device, sl)
    tol_for.check_covers(order)

    res = CaseResult(name=case, verdict="pass", dtype=tol_for.dtype, device=device,
                     backends={"reference": _side_of(ref_meta), "candidate": _side_of(cand_meta)},
                     meta={"reference": ref_meta, "candidate": cand_meta},
                     patch_stats={"reference": {}, "candidate": {}})
    upstream_failed = False  # whether a stage before this one failed end to end
    for name in order:
        sr, e2e_verdict = _compare_stage(name, ref_arrays, cand_arrays, local_arrays, tol_for, res, tiny_rel, top_k,
                                         upstream_failed, sl)
        res.stages.append(sr)
        upstream_failed = upstream_failed or e2e_verdict != "pass"
    for side, arrays in (("reference", ref_arrays), ("candidate", cand_arrays)):
        for name in arrays:
            if name not in sl:
                problem = f"unknown stage {name!r} in the {side} capture; known stages are {list(sl.names)}"
                res.problems.append(problem)
                sr = StageResult(name=name, verdict="fail", problem=problem)
                res.stages.append(_finish_stage(sr, "fail", case, None))
    return _finish_case(res)


def _compare_stage(name, ref_arrays, cand_arrays, local_arrays, tol_for, res, tiny_rel, top_k,
                   upstream_failed, sl: StageList) -> Tuple[StageResult, str]:
    """The finished StageResult of one stage and its end-to-end verdict."""
    case = res.name
    in_ref, in_cand = name in ref_arrays, name in cand_arrays
    if not (in_ref and in_cand):
        where = "both captures" if not (in_ref or in_cand) else ("the candidate" if in_ref else "the reference")
        problem = f"stage {name} is missing from {where}"
        res.problems.append(problem)
        sr = StageResult(name=name, verdict="fail", problem=problem)
        return _finish_stage(sr, "fail", case, None), "fail"
    ref, cand = np.asarray(ref_arrays[name]), np.asarray(cand_arrays[name])
    sr = StageResult(name=name, verdict="fail", shape=tuple(cand.shape), dtype=cand.dtype.name,
                     ref_dtype=ref.dtype.name, n_elements=int(cand.size))
    problem = None
    if ref.shape != cand.shape:
        problem = (f"shape mismatch: reference {ref.shape} vs candidate {cand.shape}; "
                   f"arrays are never broadcast or reshaped")
    else:
        problem = _kind_problem(name, ref, cand, sl)
    if problem is None:
        try:
            tol = tol_for(name, cand.dtype)
        except ValueError as exc:  # e.g. a float16 candidate: no tolerance for that precision
            problem = str(exc)
    if problem is not None:
        sr.problem = problem
        res.problems.append(f"stage {name}: {problem}")
        return _finish_stage(sr, "fail", case, None), "fail"

    stage = sl.by_name[name]
    patches = stage.patch_shaped and ref.ndim == 4
    arrays = compare_arrays(ref, cand, tol, tiny_rel=tiny_rel, patches=patches, top_k=top_k)
    stats, perr = arrays["errors"], arrays["patch_errors"]
    sr.tolerance = tol.to_dict()
    for k in _STAT_FIELDS:
        setattr(sr, k, stats[k])
    if patches:
        res.patch_errors[name] = perr
        res.patch_stats["reference"][name] = arrays["patch_stats"]["reference"]
        res.patch_stats["candidate"][name] = arrays["patch_stats"]["candidate"]
    if name in local_arrays:
        sr.local = _local_stats(name, ref, local_arrays[name], tol, tiny_rel, sl)
    return _finish_stage(sr, stats["verdict"], case, perr, upstream_failed), stats["verdict"]
