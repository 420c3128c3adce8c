"""The device matrix: every stage of a case on each device, checked against CPU references.

For each side of the pair (the reference and the candidate) and each requested device:

* ``<side>/cpu/float32`` vs ``<side>/cpu/float64`` (the side's own float64 oracle), always
  run, so this code path is exercised on a CPU-only machine too;
* ``<side>/<gpu>/float32`` vs ``<side>/cpu/float64`` and vs ``<side>/cpu/float32``;
* ``<candidate>/<gpu>/float32`` vs ``<reference>/cpu/float32`` (the candidate on the GPU
  against the reference on the CPU);
* with ``tf32=True``: ``<side>/<gpu>/float32+tf32`` vs the same without TF32, which shows how
  much TF32 changes each stage.

A device a side cannot see is an ``unavailable`` entry with the reason; it never fails the
matrix. Tolerances come from the table resolved for the candidate's device, so per-device
overrides (``[device_overrides.cuda.float32.<stage>]``, each with a reason) apply. The matrix
is one plan of :mod:`parity.engine`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from . import cases as case_registry
from .results import CaseResult
from .engine import Comparison, Engine, Run
from .pairs import Pair, resolve_pair
from .tolerances import ToleranceTable, load_tolerances

log = logging.getLogger(__name__)


@dataclass
class MatrixEntry:
    """One comparison of the matrix, or one unavailable (side, device)."""

    side: str
    device: str
    candidate: str  # e.g. "torch_impl/cuda/float32+tf32"
    reference: Optional[str]  # e.g. "torch_impl/cpu/float64"
    status: str  # "compared" | "unavailable" | "error"
    reason: Optional[str] = None
    result: Optional[CaseResult] = None

    @property
    def verdict(self) -> str:
        if self.status == "error":
            return "fail"
        return self.result.verdict if self.result is not None else "unavailable"

    def to_dict(self) -> dict:
        d = {"side": self.side, "device": self.device, "candidate": self.candidate,
             "reference": self.reference, "status": self.status, "reason": self.reason, "verdict": self.verdict}
        if self.result is not None:
            d["stages"] = [
                {"name": s.name, "verdict": s.verdict, "max_abs": s.max_abs, "rel_max": s.rel_max,
                 "max_rel": s.max_rel, "margin": s.margin, "ulp_max": (s.ulp or {}).get("max") if isinstance(s.ulp, dict) else None}
                for s in self.result.stages
            ]
        return d


@dataclass
class MatrixResult:
    case: str
    entries: List[MatrixEntry] = field(default_factory=list)
    devices: Dict[str, Dict[str, object]] = field(default_factory=dict)  # side -> device -> name / reason

    @property
    def verdict(self) -> str:
        judged = [e for e in self.entries if e.status != "unavailable"]
        return "pass" if all(e.verdict == "pass" for e in judged) else "fail"

    def __bool__(self) -> bool:
        return self.verdict == "pass"

    def to_dict(self) -> dict:
        return {"case": self.case, "verdict": self.verdict, "devices": self.devices,
                "entries": [e.to_dict() for e in self.entries]}


def _label(side: str, device: str, dtype: str, tf32: bool = False) -> str:
    return f"{side}/{device}/{dtype}" + ("+tf32" if tf32 else "")


def run_matrix(
    case: Union[str, case_registry.Case],
    devices: Sequence[str] = ("cpu", "cuda"),
    *,
    tolerances: Optional[Union[ToleranceTable, str, Path]] = None,
    tf32: bool = False,
    isolation: str = "workers",
    pair: Union[None, str, Pair] = None,
    engine: Optional[Engine] = None,
    available: Optional[Dict[str, Dict[str, str]]] = None,
) -> MatrixResult:
    """Run ``case`` over the device matrix (see the module docstring).

    ``available``: side -> {device: name} as the sides report it (probed when None).
    """
    own = engine is None
    if own:
        engine = Engine(resolve_pair(pair), isolation=isolation)
    try:
        return _run_matrix(engine, case, devices, tolerances, tf32, available)
    finally:
        if own:
            engine.close()


def _run_matrix(engine: Engine, case, devices, tolerances, tf32, available) -> MatrixResult:
    pair = engine.pair
    if isinstance(case, str):
        case = pair.cases.get_case(case)
    if not isinstance(tolerances, ToleranceTable):
        tolerances = load_tolerances(tolerances)
    if available is None:
        available = engine.devices()
    sides = list(dict.fromkeys((pair.reference, pair.candidate)))
    out = MatrixResult(case=case.name, devices={s: dict(available.get(s, {})) for s in sides})
    plan = engine.plan()
    labels: Dict[str, str] = {}

    def node(side, device, dtype, tf32_on=False) -> str:
        key = plan.add(Run("matrix", side, case, dtype, device, allow_tf32=tf32_on))
        labels[key] = _label(side, device, dtype, tf32_on)
        return key

    def add(side, device, cand, ref):
        return plan.compare(Comparison(key=f"{labels[cand]} vs {labels[ref]}", case=f"{case.name} [{labels[cand]} vs "
                                       f"{labels[ref]}]", dtype="float32", device=device, reference=ref,
                                       candidate=cand,
                                       tolerance=tolerances, tag=(side, device)))

    slots: List[object] = []  # an entry of `out` or a comparison to fill in, in matrix order
    for side in sides:
        seen = available.get(side, {})
        for device in devices:
            if device not in seen:
                reason = seen.get("__error__") or f"{side} sees no {device} device (it sees {sorted(seen)})"
                slots.append(MatrixEntry(side, device, _label(side, device, "float32"), None, "unavailable",
                                         reason=str(reason)))
                continue
            f32 = node(side, device, "float32")
            slots.append(add(side, device, f32, node(side, "cpu", "float64")))
            if device == "cpu":
                continue
            slots.append(add(side, device, f32, node(side, "cpu", "float32")))
            if side == pair.candidate and side != pair.reference and "cpu" in available.get(pair.reference, {}):
                slots.append(add(side, device, f32, node(pair.reference, "cpu", "float32")))
            if tf32:
                slots.append(add(side, device, node(side, device, "float32", True), f32))
    by_key = {o.comparison.key: o for o in engine.run(plan)}
    for slot in slots:
        if isinstance(slot, MatrixEntry):
            out.entries.append(slot)
            continue
        o = by_key[slot.key]
        side, device = slot.tag
        cand, ref = labels[slot.candidate], labels[slot.reference]
        if o.result is None or o.error:
            out.entries.append(MatrixEntry(side, device, cand, ref, "error", reason=o.error))
        else:
            out.entries.append(MatrixEntry(side, device, cand, ref, "compared", result=o.result))
    return out
