"""Comparing two training runs: the loss curve and the weights after every step.

Per step k (1..K) and weight array (layer) l of the neutral set:

* ``loss_rel_diff[k] = |loss_cand[k] - loss_ref[k]| / |loss_ref[k]|``;
* ``rel_update[k, l] = ||W_cand[k, l] - W_ref[k, l]|| / ||W_ref[k, l] - W_0[l]||``: the
  candidate's weight error as a fraction of how far training moved the reference's weights
  (what gates; the norm leaves out the layer's largest 1 in :data:`OUTLIER_EVERY` element
  errors), with ``rel_update_all`` (every element), ``rel_l2`` (the error over
  ``||W_ref[k, l]||``) and ``max_abs``.

Tolerances. A float32 case is judged by the noise floor: the reference is the reference side's
float64 run (the oracle), and the reference side's own float32 run against it sets the floor
of each step and layer, its running maximum over the steps so far (errors grow as training
goes on); the candidate passes where its error is at most ``k x floor``. As for forward stages,
the smallest float32 allowance is :data:`FLOOR_ULPS` round-offs at the scale of the weights
(``FLOOR_ULPS * eps32 * ||W_ref[k, l]||``), so a step on which the reference's float32 run
happens to be exact does not demand bit-identity. The loss of a step is one number, a float32
mean of n terms (n = B*C*N*N), whose own error against float64 is one sample of that rounding:
its smallest allowance is ``FLOOR_ULPS * eps32 * sqrt(n)`` (the random-walk size of the
rounding of a sum of n terms). A float64 case is
judged against the reference with the fixed :data:`FLOAT64_TOLERANCES` (measured,
docs/training.md). A NaN or Inf in a loss or a weight fails the comparison, with counts and the
first step where it appears. NumPy only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from .jsonable import encode_float, to_json
from .tolerances import NOISE_FLOOR_K

#: float64 runs: the largest loss-curve relative difference and weight error (fraction of the
#: update) that pass. Measured on five default cases (clean port, K=20, docs/training.md): loss
#: <= 2.6e-13, weights <= 4.1e-11 of the update; the margin leaves room for other BLAS/FFT builds
#: and longer runs (the error grows about 10x over 20 steps).
FLOAT64_TOLERANCES = {"loss": 1e-10, "update": 1e-8}
#: The smallest noise-floor tolerance, in float32 round-offs of the loss and of the weights.
FLOOR_ULPS = 4.0
EPS32 = float(np.finfo(np.float32).eps)
#: The weight error of a layer leaves out its largest 1 in OUTLIER_EVERY element errors (none
#: for layers of fewer elements): Adam's first steps are sign steps, and an element whose gradient
#: is a near-cancelling sum takes the opposite full step in a float32 run of either framework
#: now and then (docs/training.md: measured in both). rel_update_all keeps every element.
OUTLIER_EVERY = 10_000


def _nonfinite(losses: np.ndarray, weights: Mapping[str, np.ndarray]) -> Dict[str, Any]:
    """Counts of NaN/Inf and the first step (1-based) where one appears, and where."""
    bad_loss = ~np.isfinite(losses)
    first, where = (int(np.argmax(bad_loss)) + 1, "loss") if bad_loss.any() else (None, None)
    n_weights = 0
    for name, w in weights.items():
        per_step = (~np.isfinite(w)).reshape(w.shape[0], -1).sum(axis=1)
        n_weights += int(per_step.sum())
        if per_step.any():
            k = int(np.argmax(per_step > 0)) + 1
            if first is None or k < first:
                first, where = k, name
    return {"losses": int(bad_loss.sum()), "weights": n_weights, "first_step": first, "first_at": where}


def errors(ref: Mapping[str, np.ndarray], cand: Mapping[str, np.ndarray], initial: Mapping[str, np.ndarray]
           ) -> Dict[str, Dict[str, np.ndarray]]:
    """layer -> {"rel_update" (without the layer's largest 1 in OUTLIER_EVERY element errors),
    "rel_update_all" (with every element), "rel_l2", "max_abs", and the norms "l2" of the error
    (as rel_update), "moved" of the reference's displacement from the initial weights, "size" of
    its weights}: per step; "left_out": how many element errors rel_update leaves out."""
    out: Dict[str, Dict[str, np.ndarray]] = {}
    for name, r in ref.items():
        r64, c64 = np.asarray(r, np.float64), np.asarray(cand[name], np.float64)
        w0 = np.asarray(initial[name], np.float64)
        k = r64.shape[0]
        diff = (c64 - r64).reshape(k, -1)
        full = np.linalg.norm(diff, axis=1)
        trim = diff.shape[1] // OUTLIER_EVERY
        if trim:  # the error without the layer's `trim` largest element errors
            sq = np.sort(np.square(diff), axis=1)
            num = np.sqrt(np.maximum(sq[:, :-trim].sum(axis=1), 0.0))
        else:
            num = full
        moved = np.linalg.norm((r64 - w0).reshape(k, -1), axis=1)
        size = np.linalg.norm(r64.reshape(k, -1), axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_update = np.where(num == 0, 0.0, num / moved)
            rel_update_all = np.where(full == 0, 0.0, full / moved)
            rel_l2 = np.where(num == 0, 0.0, num / size)
        out[name] = {"rel_update": rel_update, "rel_update_all": rel_update_all, "rel_l2": rel_l2,
                     "max_abs": np.abs(diff).max(axis=1), "l2": num, "moved": moved, "size": size, "left_out": trim}
    return out


def _loss_rel(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(cand == ref, 0.0, np.abs(cand - ref) / np.abs(ref))


@dataclass
class TrainingResult:
    case: str
    dtype: str
    settings: Dict[str, Any]
    batches: str
    tolerance_mode: str  # "noise_floor" (float32) or "table" (float64)
    k: Optional[float]
    losses: Dict[str, np.ndarray]  # role -> loss per step
    loss_rel_diff: np.ndarray
    loss_tolerance: np.ndarray
    layers: Dict[str, Dict[str, np.ndarray]]  # layer -> rel_update, rel_l2, max_abs, tolerance (per step)
    floor: Dict[str, Any] = field(default_factory=dict)  # the reference's own float32 errors (noise floor)
    nonfinite: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # role -> counts
    problems: List[str] = field(default_factory=list)
    first_divergent_step: Optional[int] = None
    first_divergent_at: Optional[str] = None  # "loss" or a layer
    timings: Dict[str, float] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return int(self.loss_rel_diff.shape[0])

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "fail"

    def __bool__(self) -> bool:
        return self.passed

    def margins(self) -> Dict[str, np.ndarray]:
        """"loss" and each layer -> error / tolerance per step (< 1 passes)."""
        def ratio(err, allowed):
            with np.errstate(divide="ignore", invalid="ignore"):
                m = np.where(err == 0, 0.0, err / allowed)
            return np.where(np.isnan(m), np.inf, m)

        out = {"loss": ratio(self.loss_rel_diff, self.loss_tolerance)}
        for name, e in self.layers.items():
            out[name] = ratio(e["l2"], e["allowed"])
        return out

    def per_step(self) -> List[Dict[str, Any]]:
        """Per step: the worst layer (by margin), its errors and tolerance, the loss difference."""
        margins = self.margins()
        rows = []
        for k in range(self.steps):
            layer = max(self.layers, key=lambda n: margins[n][k])
            e = self.layers[layer]
            rows.append({"step": k + 1, "loss_rel_diff": float(self.loss_rel_diff[k]),
                         "loss_tolerance": float(self.loss_tolerance[k]), "worst_layer": layer,
                         "rel_update": float(e["rel_update"][k]), "rel_l2": float(e["rel_l2"][k]),
                         "max_abs": float(e["max_abs"][k]), "tolerance": float(e["tolerance"][k]),
                         "margin": float(max(margins[layer][k], margins["loss"][k]))})
        return rows

    def summary(self) -> str:
        rows = self.per_step()
        worst = max(r["margin"] for r in rows)
        text = (f"training {self.case} {self.dtype} {self.settings['loss']} K={self.steps}: {self.verdict.upper()}; "
                f"loss curves' largest relative difference {float(self.loss_rel_diff.max()):.3g}; worst weight "
                f"error (of the update) step 1 {rows[0]['rel_update']:.3g} ({rows[0]['worst_layer']}), step "
                f"{self.steps} {rows[-1]['rel_update']:.3g} ({rows[-1]['worst_layer']}); worst margin {worst:.3g}")
        if self.problems:
            text += "; " + "; ".join(self.problems)
        return text

    def to_dict(self) -> Dict[str, Any]:
        layers = {n: {**{k: [encode_float(float(x)) for x in e[k]]
                         for k in ("rel_update", "rel_update_all", "rel_l2", "max_abs", "tolerance")},
                      "left_out": int(e["left_out"])} for n, e in self.layers.items()}
        rows = self.per_step()
        return to_json({
            "case": self.case, "dtype": self.dtype, "verdict": self.verdict, "steps": self.steps,
            "loss": self.settings["loss"], "settings": self.settings, "batches": self.batches,
            "tolerance_mode": self.tolerance_mode, "noise_floor_k": self.k,
            "first_divergent_step": self.first_divergent_step, "first_divergent_at": self.first_divergent_at,
            "problems": list(self.problems), "nonfinite": self.nonfinite,
            "losses": {r: [float(x) for x in v] for r, v in self.losses.items()},
            "loss_rel_diff": [float(x) for x in self.loss_rel_diff],
            "loss_tolerance": [float(x) for x in self.loss_tolerance],
            "max_loss_rel_diff": float(self.loss_rel_diff.max()),
            "worst_margin": max(r["margin"] for r in rows), "per_step": rows, "layers": layers,
            "floor": self.floor, "timings": dict(self.timings)})


def _running_max(x: np.ndarray) -> np.ndarray:
    return np.maximum.accumulate(np.where(np.isfinite(x), x, np.inf))


def compare_training(captures: Mapping[str, Any], initial: Mapping[str, np.ndarray], *, case: str, dtype: str,
                     settings, k: float = NOISE_FLOOR_K, batches: str = "", loss_terms: int = 1) -> TrainingResult:
    """Compare the ``candidate`` training capture against the ``reference`` one (for a float32
    case: the float64 oracle, with ``reference_float32`` setting the noise floor).
    ``loss_terms``: how many elements the loss averages (its float32 round-off allowance)."""
    from .training import unpack

    runs = {role: unpack(c) for role, c in captures.items()}
    (ref_loss, ref_w), (cand_loss, cand_w) = runs["reference"], runs["candidate"]
    missing = sorted(set(ref_w) ^ set(cand_w))
    if missing:
        raise ValueError(f"training runs of case {case} hold different weights: {missing}")
    noise = "reference_float32" in runs
    settings_d = settings.to_dict() if hasattr(settings, "to_dict") else dict(settings)
    layers = errors(ref_w, cand_w, initial)
    loss_rel = _loss_rel(ref_loss, cand_loss)
    floor: Dict[str, Any] = {}
    if noise:
        f_loss, f_w = runs["reference_float32"]
        own = errors(ref_w, f_w, initial)
        loss_floor = _running_max(_loss_rel(ref_loss, f_loss))
        loss_tol = np.maximum(k * loss_floor, FLOOR_ULPS * EPS32 * np.sqrt(max(1, int(loss_terms))))
        for name, e in layers.items():
            e["allowed"] = np.maximum(k * _running_max(own[name]["rel_update"]) * e["moved"],
                                      FLOOR_ULPS * EPS32 * e["size"])
        floor = {"loss_rel_diff": [encode_float(float(x)) for x in _loss_rel(ref_loss, f_loss)],
                 "worst_rel_update": [encode_float(float(max(own[n]["rel_update"][i] for n in own)))
                                      for i in range(len(ref_loss))]}
    else:
        loss_tol = np.full(loss_rel.shape, FLOAT64_TOLERANCES["loss"])
        for e in layers.values():
            e["allowed"] = FLOAT64_TOLERANCES["update"] * e["moved"]
    for e in layers.values():  # the allowance in the units of rel_update (inf: the reference did not move)
        with np.errstate(divide="ignore", invalid="ignore"):
            e["tolerance"] = np.where(e["allowed"] == 0, 0.0, e["allowed"] / e["moved"])
    res = TrainingResult(case=case, dtype=dtype, settings=settings_d, batches=batches,
                         tolerance_mode="noise_floor" if noise else "table", k=k if noise else None,
                         losses={role: r[0] for role, r in runs.items()}, loss_rel_diff=loss_rel,
                         loss_tolerance=loss_tol, layers=layers, floor=floor)
    _judge(res, runs, captures)
    return res


def _judge(res: TrainingResult, runs, captures) -> None:
    first: Optional[int] = None
    for role, (losses, weights) in runs.items():
        nf = _nonfinite(losses, weights)
        res.nonfinite[role] = nf
        if nf["losses"] or nf["weights"]:
            side = (captures[role].meta or {}).get("side", role)
            res.problems.append(f"{role} ({side}): {nf['losses']} non-finite loss(es) and {nf['weights']} non-finite "
                                f"weight value(s); first at step {nf['first_step']} ({nf['first_at']})")
            if first is None or nf["first_step"] < first:
                first, res.first_divergent_at = nf["first_step"], nf["first_at"]
    margins = res.margins()
    failing = {name: np.flatnonzero(~(m <= 1.0)) for name, m in margins.items()}
    failing = {n: idx for n, idx in failing.items() if idx.size}
    if failing:
        step = min(int(idx[0]) for idx in failing.values()) + 1
        at = max((n for n, idx in failing.items() if idx[0] + 1 == step), key=lambda n: margins[n][step - 1])
        if first is None or step < first:
            first, res.first_divergent_at = step, at
        what = "the loss" if at == "loss" else f"layer {at}"
        err = res.loss_rel_diff[step - 1] if at == "loss" else res.layers[at]["rel_update"][step - 1]
        tol = res.loss_tolerance[step - 1] if at == "loss" else res.layers[at]["tolerance"][step - 1]
        res.problems.append(f"training diverges at step {step} of {res.steps}: {what} differs by {err:.3g} "
                            f"({'relative' if at == 'loss' else 'of the update'}), tolerance {tol:.3g} "
                            f"({res.tolerance_mode}); {sum(idx.size for idx in failing.values())} (step, layer|loss) "
                            f"entries fail")
    res.first_divergent_step = first
