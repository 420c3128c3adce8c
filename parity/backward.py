"""Backward parity: the gradients of two runs compared, per adjoint stage and per weight.

For each loss (``loss_nll``, ``loss_mae``) the gradient of the loss with respect to every stage
it depends on (the *adjoint stages* ``grad:S``, in reverse pipeline order: the loss first, then
``grad:pred_intensity``, ... ``grad:input_scaled``) and with respect to every neutral weight
is compared with :func:`parity.compare` itself: the same statistics, tolerances, messages and
NaN/Inf rules as forward stages, and the same labels. The *local* backward (the candidate's
vector-Jacobian products at the reference's forward values, fed the reference's output
cotangents; :func:`parity.gradients.compute`) labels an adjoint stage ``root_cause`` (the
candidate's backward of a stage reading S is wrong) or ``propagated`` (S's gradient is wrong only
because a gradient downstream of it is), exactly as teacher forcing does forward.

Tolerances: a tolerance table resolves ``grad:S`` and ``grad:weights`` through its
``[backward.<dtype>]`` layer (parity/tolerances.toml); under the noise floor they come from the
reference side's own float32 gradients against its float64 ones, as forward.
NumPy only.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import gradients as G
from .compare import compare
from .results import CaseResult
from .stages import Stage, StageList, stage_list as as_stage_list
from .tolerances import (NOISE_FLOOR_K, WEIGHT_GRADIENTS, Tolerance, ToleranceTable, load_tolerances,
                         noise_floor_tolerances)

SCHEMA = "parity.backward_result"
SCHEMA_VERSION = 1


def adjoint_stage_list(stages: StageList, loss: str) -> StageList:
    """The adjoint stages of ``loss`` (``grad:S``), in reverse pipeline order; each one's
    inputs are the adjoints of the stages that read S (what its local backward is fed)."""
    graph = tuple((s.name, tuple(s.inputs)) for s in stages)
    order = G.adjoint_order(graph, loss)
    users = G.consumers(graph, order)
    return StageList(Stage(G.adjoint_name(n), stages.get(n).shape, stages.get(n).complex,
                           tuple(G.adjoint_name(u) for u in users[n]), f"d{loss}/d{n}") for n in order)


def weight_stage_list(weights: Mapping[str, np.ndarray]) -> StageList:
    """One entry per neutral weight (real, never patch-shaped), in the weight set's order."""
    return StageList(Stage(n, tuple(f"d{i}" for i in range(np.ndim(w))), False, (), f"dL/d{n}")
                     for n, w in weights.items())


@dataclass
class LossBackward:
    """One loss: ``adjoint`` (CaseResult over the ``grad:S`` stages) and ``weights`` (CaseResult
    over the neutral weights); ``nonfinite``: role -> {name: NaN/Inf count}."""

    loss: str
    adjoint: CaseResult
    weights: CaseResult
    nonfinite: Dict[str, Dict[str, int]] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return "pass" if self.adjoint.passed and self.weights.passed else "fail"

    def layer_errors(self) -> Dict[str, Dict[str, Any]]:
        """weight -> rel_l2, max_abs, margin, verdict (per-layer relative error)."""
        return {s.name: {"rel_l2": s.rel_l2, "max_abs": s.max_abs, "margin": s.margin, "verdict": s.verdict}
                for s in self.weights.stages}

    def to_dict(self) -> Dict[str, Any]:
        first_nf = {role: next(iter(c), None) for role, c in self.nonfinite.items()}
        return {"loss": self.loss, "verdict": self.verdict,
                "first_divergent_stage": self.adjoint.first_divergent_stage,
                "root_cause_stage": self.adjoint.root_cause_stage,
                "first_divergent_weight": self.weights.first_divergent_stage,
                "nonfinite": self.nonfinite, "first_nonfinite_stage": first_nf,
                "adjoint": self.adjoint.to_dict(), "weights": self.weights.to_dict(),
                "layer_errors": self.layer_errors()}


@dataclass
class BackwardResult:
    """Backward parity of one case. ``available`` False: ``reason`` says why (a side without
    gradients); such a result neither passes nor fails (verdict ``"not_available"``)."""

    case: str
    dtype: str
    device: str
    available: bool = True
    reason: str = ""
    losses: Dict[str, LossBackward] = field(default_factory=dict)
    tolerance_mode: str = "table"

    @property
    def verdict(self) -> str:
        if not self.available:
            return "not_available"
        return "pass" if all(lb.verdict == "pass" for lb in self.losses.values()) else "fail"

    def __bool__(self) -> bool:
        return self.verdict == "pass"

    def summary(self) -> str:
        if not self.available:
            return f"{self.case}: backward not available: {self.reason}"
        parts = []
        for loss, lb in self.losses.items():
            if lb.verdict == "pass":
                parts.append(f"{loss} pass")
                continue
            where = lb.adjoint.first_divergent_stage or lb.weights.first_divergent_stage
            root = lb.adjoint.root_cause_stage
            nf = {r: c for r, c in lb.nonfinite.items() if c}
            extra = "".join(f"; NaN/Inf in the {r}'s gradients: {sum(c.values())} elements, first at "
                            f"{G.adjoint_name(next(iter(c)))}" for r, c in nf.items())
            parts.append(f"{loss} FAIL at {where}" + (f" (root cause {root})" if root and root != where else "") + extra)
        return f"{self.case}: backward " + ", ".join(parts)

    def to_dict(self) -> Dict[str, Any]:
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "case": self.case, "dtype": self.dtype,
                "device": self.device, "verdict": self.verdict, "available": self.available, "reason": self.reason,
                "tolerance_mode": self.tolerance_mode,
                "losses": {k: v.to_dict() for k, v in self.losses.items()}}


def layer_of(weight: str) -> str:
    """A weight's layer: its neutral name up to the last dot (``encoder.block0.conv1.kernel`` ->
    ``encoder.block0.conv1``, whose kernel and bias it owns)."""
    return weight.rsplit(".", 1)[0]


def _by_layer(arrays: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    out: Dict[str, List[np.ndarray]] = {}
    for n, a in arrays.items():
        out.setdefault(layer_of(n), []).append(np.ravel(np.asarray(a, dtype=np.float64)))
    return {k: np.concatenate(v) for k, v in out.items()}


def weight_tolerances(table: ToleranceTable, ref: Mapping[str, np.ndarray], dtype: str, device: str,
                      loss: Optional[str] = None) -> Dict[str, Tolerance]:
    """``grad:weights`` for every weight, its scaled term taken at the scale of the weight's whole
    layer (kernel and bias): a bias gradient is a sum over every output pixel and may cancel to
    far below its layer's gradients, where its own scale would judge rounding as error."""
    t = table.for_stage(WEIGHT_GRADIENTS, dtype, device, loss=loss)
    scale = {k: float(np.abs(v).max()) if v.size else 0.0 for k, v in _by_layer(ref).items()}
    return {n: replace(t, atol=t.atol + t.atol_scaled * scale[layer_of(n)], atol_scaled=0.0,
                       source=f"{t.source} (atol_scaled x max|layer {layer_of(n)}|)") for n in ref}


#: The smallest noise-floor atol of a weight gradient, in float32 round-offs of its layer's scale:
#: a weight gradient is a sum over every output pixel of a batch (B * N * N = 16k-65k terms here),
#: whose float32 rounding grows like sqrt(terms) round-offs; 256 = sqrt(65536). The stages' 4
#: (parity.tolerances.NOISE_FLOOR_ULPS) would judge two equally good summation orders: measured,
#: the clean port's bias gradients reach 7x the reference's own float32 error (2e-5 of the layer
#: scale, n64_g1 decoder_phase.last.conv1.bias) where the reference's order happens to be good.
WEIGHT_NOISE_FLOOR_ULPS = 256.0


def weight_noise_floor(oracle: Mapping[str, np.ndarray], ref32: Mapping[str, np.ndarray], k: float
                       ) -> Dict[str, Tolerance]:
    """The noise floor of each weight gradient, per layer (the reference's own float32 error over
    the layer's kernel and bias against its float64 run, times k; at least
    :data:`WEIGHT_NOISE_FLOOR_ULPS` round-offs of the layer's scale)."""
    o, r = _by_layer(oracle), _by_layer({n: ref32[n] for n in oracle})
    per_layer = noise_floor_tolerances(o, r, k=k, stages=list(o), floor_ulps=WEIGHT_NOISE_FLOOR_ULPS)
    return {n: replace(per_layer[layer_of(n)], source=f"noise_floor.layer {layer_of(n)}") for n in oracle}


def _tolerances_for(table: ToleranceTable, names: Sequence[str], dtype: str, device: str, loss: str):
    return {n: table.for_stage(n, dtype, device, loss=loss) for n in names}


def compare_backward(reference: Any, candidate: Any, tolerances: Optional[ToleranceTable] = None, *, case: str = "",
                     dtype: str = "float32", device: str = "cpu", stage_list: Any = None, local: bool = True,
                     noise_floor: Optional[Tuple[Any, Any, float]] = None,
                     losses: Optional[Sequence[str]] = None) -> BackwardResult:
    """Compare the gradients of two backward runs (``parity.jobs.JobResult``: ``gradients`` and
    ``capture``). ``tolerances``: a ToleranceTable (default: the built-in table); or
    ``noise_floor=(oracle64, reference32, k)``: backward runs of the reference side in float64 and
    float32, whose gradient error times k is the tolerance. ``local``: label root causes from
    the candidate's local backward. A side that computed no gradients gives a result that is not
    available, with its reason."""
    sl = as_stage_list(stage_list)
    res = BackwardResult(case=case, dtype=dtype, device=device,
                         tolerance_mode="noise_floor" if noise_floor is not None else "table")
    runs = {"reference": reference, "candidate": candidate}
    if noise_floor is not None:
        runs.update(oracle=noise_floor[0], reference_float32=noise_floor[1])
    for role, run in runs.items():
        if getattr(run, "gradients", None) is None:
            meta = run.capture.meta.get("gradients", {}) if getattr(run, "capture", None) is not None else {}
            side = run.capture.meta.get("side", "?") if getattr(run, "capture", None) is not None else "?"
            res.available = False
            res.reason = f"side {side} ({role}): {meta.get('unavailable') or 'no gradients were computed'}"
            return res
    table = tolerances if tolerances is not None else load_tolerances()
    table = table.for_stages(sl.names)
    ref, cand = G.split(reference.gradients), G.split(candidate.gradients)
    for loss in (losses or [l for l in ref if l in cand]):
        asl = adjoint_stage_list(sl, loss)
        r, c = ref[loss], cand[loss]
        weights = {n: r["weight"][n] for n in r.get("weight", {})}
        wsl = weight_stage_list(weights)
        adj = {G.adjoint_name(n): v for n, v in r.get("stage", {}).items()}
        cadj = {G.adjoint_name(n): v for n, v in c.get("stage", {}).items()}
        loc = {G.adjoint_name(n): v for n, v in c.get("local", {}).items()} if local else None
        wloc = dict(c.get("local_weight", {})) if local else None
        if noise_floor is not None:
            o, f = G.split(noise_floor[0].gradients)[loss], G.split(noise_floor[1].gradients)[loss]
            k = noise_floor[2] if len(noise_floor) > 2 else NOISE_FLOOR_K
            oa = {G.adjoint_name(n): v for n, v in o["stage"].items()}
            fa = {G.adjoint_name(n): v for n, v in f["stage"].items()}
            atol = noise_floor_tolerances(oa, fa, k=k, stages=asl.names)
            wtol = weight_noise_floor(o["weight"], f["weight"], k)
            adj, weights = oa, dict(o["weight"])
        else:
            atol = _tolerances_for(table, asl.names, dtype, device, loss)
            wtol = weight_tolerances(table, weights, dtype, device, loss)
        meta = {"loss": loss}
        a_res = compare(adj, cadj, atol, case=case, dtype=dtype, device=device, local=loc, stage_list=asl)
        w_res = compare(weights, dict(c.get("weight", {})), wtol, case=case, dtype=dtype, device=device,
                        local=wloc, stage_list=wsl)
        a_res.meta.update(meta)
        w_res.meta.update(meta)
        nonfinite = {"reference": G.nonfinite_counts(r.get("stage", {}), G.adjoint_order(sl_graph(sl), loss)),
                     "candidate": G.nonfinite_counts(c.get("stage", {}), G.adjoint_order(sl_graph(sl), loss))}
        res.losses[loss] = LossBackward(loss, a_res, w_res, nonfinite)
    return res


def sl_graph(sl: StageList):
    return tuple((s.name, tuple(s.inputs)) for s in sl)


def layer_matrix(results: Sequence[BackwardResult], loss: str, field_name: str = "rel_l2"
                 ) -> Tuple[List[str], List[str], np.ndarray]:
    """(layers, cases, values[layer, case]) of one per-weight statistic over cases (NaN where a
    case lacks the weight or the statistic): the heat map's data."""
    cases = [r.case for r in results if r.available and loss in r.losses]
    layers: List[str] = []
    for r in results:
        if r.available and loss in r.losses:
            layers += [s.name for s in r.losses[loss].weights.stages if s.name not in layers]
    m = np.full((len(layers), len(cases)), np.nan)
    j = 0
    for r in results:
        if not (r.available and loss in r.losses):
            continue
        for s in r.losses[loss].weights.stages:
            v = getattr(s, field_name)
            m[layers.index(s.name), j] = np.nan if v is None else float(v)
        j += 1
    return layers, cases, m
