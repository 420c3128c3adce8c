"""Result objects of a comparison: :class:`StageResult` and :class:`CaseResult`, and their JSON.

Both are small dataclasses, truthy when they pass. JSON: :meth:`CaseResult.to_dict` gives plain
JSON types; non-finite floats are written as the strings ``"nan"``, ``"inf"`` and ``"-inf"``
(strict JSON has no NaN), ``None`` means "not computed", tuples become lists.
:meth:`CaseResult.from_dict` reverses this (per-patch arrays come back as NumPy arrays).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from parity import messages
from parity.jsonable import from_json, to_json

SCHEMA = "parity.case_result"
SCHEMA_VERSION = 1
LABELS = ("ok", "root_cause", "propagated", "not_checked")


@dataclass
class StageResult:
    """Comparison of one stage. Truthy iff ``verdict == "pass"``.

    Numeric fields are None when the stage could not be compared (``problem`` says why).
    ``margin``: the factor by which the tolerance would have to be scaled to pass (<= 1 passes;
    with NaN/Inf values, that of the finite elements: such a stage fails whatever the margin).
    ``min_passing_tolerance``: the tolerance scaled by ``margin``; None when a value is NaN/Inf
    (no tolerance passes). ``local_error``: margin of the teacher-forced comparison (None when
    not computed). ``label``: "ok", "root_cause" (the stage fails when fed the reference's
    inputs, or it passes with them but NaN/Inf appear first here end to end), "propagated" (it
    passes with the reference's inputs but not end to end; with NaN/Inf, only after an earlier
    stage failed) or "not_checked" (it failed and no local comparison was given).
    ``exact`` / ``bound``: True / None for every result computed here (margins are exact); the
    fields stay in the JSON of case_result v1 documents, where ``bound`` "<=" or ">=" marks a
    margin that was only bounded.
    """

    name: str
    verdict: str
    shape: Optional[Tuple[int, ...]] = None
    dtype: Optional[str] = None
    ref_dtype: Optional[str] = None
    tolerance: Optional[Dict[str, Any]] = None
    max_abs: Optional[float] = None
    max_rel: Optional[float] = None
    rel_max: Optional[float] = None
    rel_l2: Optional[float] = None
    mismatch_count: Optional[int] = None
    mismatch_fraction: Optional[float] = None
    allowed_mismatches: Optional[int] = None
    n_elements: Optional[int] = None
    worst_index: Optional[Tuple[int, ...]] = None
    worst_rel_index: Optional[Tuple[int, ...]] = None
    quantiles: Optional[Dict[str, float]] = None
    min_passing_tolerance: Optional[Dict[str, float]] = None
    margin: Optional[float] = None
    n_zero_ref: Optional[int] = None
    n_tiny_ref: Optional[int] = None
    tiny: Optional[float] = None
    nonfinite: Optional[Dict[str, int]] = None
    complex_stats: Optional[Dict[str, Any]] = None
    ulp: Optional[Dict[str, Any]] = None
    ref_max_abs: Optional[float] = None
    witness: Optional[Dict[str, List[float]]] = None
    local_error: Optional[float] = None
    local: Optional[Dict[str, Any]] = None
    label: str = "not_checked"
    problem: Optional[str] = None
    exact: bool = True
    bound: Optional[str] = None
    message: str = ""

    def __bool__(self) -> bool:
        return self.verdict == "pass"

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def to_dict(self) -> Dict[str, Any]:
        return to_json({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StageResult":
        kw: Dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            if f.name in ("name", "verdict", "dtype", "ref_dtype", "label", "problem", "message", "bound", "exact"):
                kw[f.name] = v
            elif f.name in ("shape", "worst_index", "worst_rel_index"):
                kw[f.name] = tuple(v) if v is not None else None
            elif f.name == "tolerance":
                kw[f.name] = _decode_tolerance(v)
            elif f.name in ("complex_stats", "local"):
                kw[f.name] = _decode_nested(v)
            else:
                kw[f.name] = from_json(v)
        return cls(**kw)


def _decode_tolerance(v):
    if v is None:
        return None
    return {k: (from_json(x) if k not in ("source", "reason") else x) for k, x in v.items()}


def _decode_nested(v):
    if v is None:
        return None
    out = {}
    for k, x in v.items():
        if k.endswith("_index") and x is not None:
            out[k] = tuple(x)
        elif k == "tolerance":
            out[k] = _decode_tolerance(x)
        elif k in ("verdict", "problem", "bound"):
            out[k] = x
        else:
            out[k] = from_json(x)
    return out


_ARRAY_KEYS = {"mean", "std", "min", "max", "var_zero_mean", "max_abs", "rel_l2", "amp_max_abs",
               "phase_max_weighted"}


def _arrays_back(obj: Any, key: str = "") -> Any:
    """Nested JSON of patch statistics -> the same with (B, C) arrays restored."""
    if isinstance(obj, Mapping):
        return {k: _arrays_back(v, k) for k, v in obj.items()}
    if key == "worst" and isinstance(obj, list):
        return [tuple(from_json(x)) for x in obj]
    if key in _ARRAY_KEYS and isinstance(obj, list):
        return np.array(from_json(obj), dtype=float)
    return from_json(obj)


@dataclass
class CaseResult:
    """Comparison of one case (all stages). Truthy iff ``verdict == "pass"``.

    ``stages`` in parity.stages order (stages unknown to parity.stages last);
    ``first_divergent_stage``: first failing stage; ``root_cause_stage``: first stage labelled
    root_cause (needs ``local``); ``problems``: structural problems as sentences;
    ``patch_stats``: ``{"reference"|"candidate": {stage: parity.stats.patches.patch_stats(...)}}``;
    ``patch_errors``: ``{stage: parity.stats.patches.patch_errors(...)}``; ``backends``:
    ``{"reference"|"candidate": meta["side"]}`` (``meta["backend"]`` in older captures); ``dtype``/``device``: what the tolerances
    were resolved for (``dtype`` None: per stage from the candidate's dtype).
    """

    name: str
    verdict: str
    stages: List[StageResult] = field(default_factory=list)
    first_divergent_stage: Optional[str] = None
    root_cause_stage: Optional[str] = None
    problems: List[str] = field(default_factory=list)
    patch_stats: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    patch_errors: Dict[str, Any] = field(default_factory=dict)
    backends: Dict[str, Optional[str]] = field(default_factory=dict)
    dtype: Optional[str] = None
    device: str = "cpu"
    meta: Dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.verdict == "pass"

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def stage(self, name: str) -> StageResult:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r} in case {self.name!r}; it has {[s.name for s in self.stages]}")

    @property
    def failed(self) -> List[StageResult]:
        return [s for s in self.stages if not s]

    def summary(self) -> str:
        return messages.format_case_summary(self)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
            "name": self.name, "verdict": self.verdict,
            "first_divergent_stage": self.first_divergent_stage, "root_cause_stage": self.root_cause_stage,
            "problems": list(self.problems), "dtype": self.dtype, "device": self.device,
            "backends": dict(self.backends), "meta": to_json(self.meta),
            "stages": [s.to_dict() for s in self.stages],
            "patch_stats": to_json(self.patch_stats), "patch_errors": to_json(self.patch_errors),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CaseResult":
        if d.get("schema", SCHEMA) != SCHEMA or d.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValueError(f"not a {SCHEMA} v{SCHEMA_VERSION} document: schema={d.get('schema')!r} "
                             f"version={d.get('schema_version')!r}")
        return cls(
            name=d["name"], verdict=d["verdict"],
            stages=[StageResult.from_dict(s) for s in d.get("stages", [])],
            first_divergent_stage=d.get("first_divergent_stage"), root_cause_stage=d.get("root_cause_stage"),
            problems=list(d.get("problems", [])),
            patch_stats=_arrays_back(d.get("patch_stats", {})),
            patch_errors=_arrays_back(d.get("patch_errors", {})),
            backends=dict(d.get("backends", {})), dtype=d.get("dtype"), device=d.get("device", "cpu"),
            meta=from_json(d.get("meta", {})),
        )
