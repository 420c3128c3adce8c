"""A small gradient probe of the ``torch_impl`` port: the gradient of one loss with respect to
every stage tensor and every weight, for the backward-only faults (:mod:`.backward`).

The port's own :meth:`~torch_impl.ForwardModel.forward` runs without autograd, so the probe
runs the same stage loop (``ForwardModel._compute``, the code the faults patch) with autograd
on and the generator's parameters made trainable for the call only; ``torch.autograd.grad``
then gives ``dL/d(stage)`` for every stage tensor and ``dL/dW`` for every parameter, and
nothing is left in any ``.grad``. Weight gradients come back as the neutral weight set
(:func:`torch_impl.weights.from_torch_state`: neutral names, ``(kh, kw, in, out)`` kernels).

Conventions: a stage the loss does not depend on (``trimmed_object``; the other loss) has a
zero gradient. A complex stage's gradient is PyTorch's ``dL/dRe + i dL/dIm`` (the conjugate
Wirtinger derivative times 2); both runs this probe compares are PyTorch's, so no conversion
is needed here. The batch inputs ``diffraction`` and ``probe_raw`` are made leaves that
require gradients, so ``input_scaled`` and ``probe`` are in the graph like every other stage.

:func:`adjoint_order` is the reverse pipeline order over stages and weights: each stage's
gradient, then the gradients of the weights that compute that stage (last layer first), so
``first_difference`` names the first place where a backward pass goes wrong.

PyTorch is imported lazily; importing this module needs NumPy only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from ..stages import STAGE_NAMES

LOSSES = ("loss_nll", "loss_mae")
#: The network stage each weight-name prefix computes.
WEIGHT_STAGES = {"encoder": "latent", "decoder_amp": "amp", "decoder_phase": "phase"}

Entry = Tuple[str, str]  # ("stage", stage name) or ("weight", neutral weight name)


@dataclass(frozen=True)
class Gradients:
    """One probe run: the forward stages, ``dL/d(stage)`` per stage and ``dL/dW`` per neutral
    weight (NumPy, the model's dtype), for ``loss``."""

    loss: str
    stages: Dict[str, np.ndarray]
    adjoints: Dict[str, np.ndarray]
    weights: Dict[str, np.ndarray]

    def get(self, entry: Entry) -> np.ndarray:
        kind, name = entry
        return self.adjoints[name] if kind == "stage" else self.weights[name]


def gradients(model, inputs: Mapping[str, object], loss: str = "loss_nll") -> Gradients:
    """Run ``model`` (a :class:`torch_impl.ForwardModel`) on ``inputs`` (canonical arrays or
    tensors: diffraction, offsets, probe_raw) with autograd and differentiate ``loss``."""
    return gradients_of(model, inputs, (loss,))[loss]


def gradients_of(model, inputs: Mapping[str, object], losses=LOSSES) -> Dict[str, Gradients]:
    """:func:`gradients` of several losses from one forward pass (one backward pass each)."""
    import torch
    from torch_impl.model import STAGE_NAMES as PORT_STAGES
    from torch_impl.weights import from_torch_state

    bad = [loss for loss in losses if loss not in LOSSES]
    if bad or not losses:
        raise ValueError(f"losses must be a non-empty subset of {list(LOSSES)}, got {list(losses)}")
    params = dict(model.generator.named_parameters())
    per_loss = {}
    with torch.enable_grad():
        model.generator.requires_grad_(True)
        try:
            env = model._check_batch(inputs["diffraction"], inputs["offsets"], inputs["probe_raw"])
            env["diffraction"].requires_grad_(True)
            env["probe_raw"].requires_grad_(True)
            for name in PORT_STAGES:
                out = model._compute(name, env)
                if not out.requires_grad:  # cut from the graph: its own gradient is still defined
                    out = out.detach().requires_grad_(True)
                env[name] = out
            wrt = [env[s] for s in PORT_STAGES] + list(params.values())
            for i, loss in enumerate(losses):
                per_loss[loss] = torch.autograd.grad(env[loss], wrt, allow_unused=True,
                                                     retain_graph=i < len(losses) - 1)
        finally:
            model.generator.requires_grad_(False)
    n = len(PORT_STAGES)

    def numpy(g, like):
        return (torch.zeros_like(like) if g is None else g).detach().cpu().numpy()

    stages = {s: env[s].detach().cpu().numpy() for s in PORT_STAGES}
    out = {}
    for loss, grads in per_loss.items():
        adjoints = {s: numpy(g, env[s]) for s, g in zip(PORT_STAGES, grads[:n])}
        state = {k: torch.as_tensor(numpy(g, p)) for (k, p), g in zip(params.items(), grads[n:])}
        out[loss] = Gradients(loss, stages, adjoints, from_torch_state(model.config, state))
    return out


def adjoint_order(weight_names) -> List[Entry]:
    """Stages in reverse pipeline order, each followed by the weights that compute it (in
    reverse order of ``weight_names``, the neutral spec order, keeping each layer's kernel
    before its bias)."""
    layers: Dict[str, List[str]] = {}
    for name in weight_names:
        layer = name.rsplit(".", 1)[0]
        layers.setdefault(layer, []).append(name)
    out: List[Entry] = []
    for stage in reversed(STAGE_NAMES):
        out.append(("stage", stage))
        mine = [layer for layer in layers if WEIGHT_STAGES.get(layer.split(".")[0]) == stage]
        for layer in reversed(mine):
            out.extend(("weight", w) for w in sorted(layers[layer], key=lambda w: not w.endswith(".kernel")))
    return out


def _as128(x) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(np.complex128 if np.iscomplexobj(x) else np.float64)


def relative_errors(value: np.ndarray, reference: np.ndarray) -> Tuple[float, float]:
    """(max |value - reference| / max |reference|, ||value - reference|| / ||reference||), in
    float64 (complex as complex); ``inf`` where either holds NaN or Inf, or where the reference
    is all zero and the value is not; 0 for equal values."""
    a, b = _as128(value), _as128(reference)
    if a.shape != b.shape:
        raise ValueError(f"relative_errors: shapes differ, {a.shape} vs {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("inf"), float("inf")
    if a.size == 0 or np.array_equal(a, b):
        return 0.0, 0.0
    d, r = np.abs(a - b), np.abs(b)
    out = []
    for diff, scale in ((float(d.max()), float(r.max())), (float(np.linalg.norm(d)), float(np.linalg.norm(r)))):
        out.append(float("inf") if scale == 0.0 else diff / scale)
    return out[0], out[1]


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise-equal values (same shape; NaN equal to NaN, as for an identical computation)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def first_difference(clean: Gradients, other: Gradients, order: Optional[List[Entry]] = None) -> Optional[Entry]:
    """The first entry of :func:`adjoint_order` whose gradient is not bitwise the clean one's."""
    order = adjoint_order(clean.weights) if order is None else order
    for entry in order:
        if not same(clean.get(entry), other.get(entry)):
            return entry
    return None


# ---------------------------------------------------------------------------------------------
# a backward-only fault against the clean port, on one case
# ---------------------------------------------------------------------------------------------
#: How many times the clean port's own round-off a fault's gradient error must exceed.
MARGIN = 10.0
#: Unit round-off per dtype: a float64 case's floor is its float32-vs-float64 difference scaled
#: by 2**-29 (round-off grows with the unit round-off; a float64 run has nothing finer to be
#: measured against).
UNIT_ROUNDOFF = {"float32": 2.0 ** -24, "float64": 2.0 ** -53}


def _label(entry: Optional[Entry]) -> Optional[str]:
    return None if entry is None else entry[1]


class CleanCase:
    """The clean port on one case (:mod:`parity.cases`): model, forward stages and gradients
    (built once, cached per loss and dtype)."""

    def __init__(self, case):
        from ..cases import prepare
        from ..sides import get_side
        from .core import PATCHED_SIDE

        self.case = case
        self.adapter = get_side(PATCHED_SIDE)
        self.config, self.weights, self.inputs = prepare(case)
        self.model = self.adapter.build(self.config, self.weights, case.dtype, "cpu")
        self.forward = self.adapter.forward(self.model, self.inputs)
        self._models = {case.dtype: self.model}
        self._grads: Dict[Tuple[str, str], Gradients] = {}

    def gradients(self, loss: str, dtype: Optional[str] = None) -> Gradients:
        dtype = dtype or self.case.dtype
        if (loss, dtype) not in self._grads:
            if dtype not in self._models:
                self._models[dtype] = self.adapter.build(self.config, self.weights, dtype, "cpu")
            for name, g in gradients_of(self._models[dtype], self.inputs, LOSSES).items():
                self._grads[(name, dtype)] = g
        return self._grads[(loss, dtype)]

    def floor(self, loss: str, entry: Entry) -> Tuple[float, float]:
        """The clean port's float32-vs-float64 gradient difference at ``entry`` (max and L2
        relative), scaled to the case's unit round-off."""
        errs = relative_errors(self.gradients(loss, "float32").get(entry), self.gradients(loss, "float64").get(entry))
        scale = UNIT_ROUNDOFF[self.case.dtype] / UNIT_ROUNDOFF["float32"]
        return errs[0] * scale, errs[1] * scale


@dataclass(frozen=True)
class Finding:
    """One backward-only fault on one case and loss, against the clean port.

    ``forward_exact``: every forward stage (the port's forward and the probe's) is bit for bit
    the clean one's; ``forward_max_diff`` the largest absolute difference over them.
    ``first`` / ``first_stage``: the first weight-or-stage / stage (reverse pipeline order)
    whose gradient is not bit for bit the clean one's. ``error`` / ``floor``: (max, L2) relative
    gradient error at ``expected`` and the clean float32-vs-float64 floor there.
    """

    fault: str
    case: str
    dtype: str
    loss: str
    expected: str
    expected_stage: str
    forward_exact: bool
    forward_max_diff: float
    first: Optional[str]
    first_stage: Optional[str]
    error: Tuple[float, float]
    floor: Tuple[float, float]
    margin: float = MARGIN

    @property
    def ratio(self) -> float:
        """The larger of error / floor over the two statistics (inf over a zero floor)."""
        return max((e / f if f > 0 else (float("inf") if e > 0 else 0.0)) for e, f in zip(self.error, self.floor))

    @property
    def caught(self) -> bool:
        """Forward exact, gradient first wrong where expected, by more than ``margin`` x floor."""
        return (self.forward_exact and self.first == self.expected and self.first_stage == self.expected_stage
                and self.ratio > self.margin)

    def to_dict(self) -> Dict[str, object]:
        return {"fault": self.fault, "case": self.case, "dtype": self.dtype, "loss": self.loss,
                "expected": self.expected, "expected_stage": self.expected_stage,
                "forward_exact": self.forward_exact, "forward_max_diff": self.forward_max_diff,
                "first": self.first, "first_stage": self.first_stage, "error_max": self.error[0],
                "error_l2": self.error[1], "floor_max": self.floor[0], "floor_l2": self.floor[1],
                "ratio": self.ratio, "margin": self.margin, "caught": self.caught}


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    if np.shape(a) != np.shape(b):
        return float("inf")
    if same(a, b):
        return 0.0
    d = np.abs(_as128(a) - _as128(b))
    return float(d.max()) if np.isfinite(d).all() else float("inf")


def check_fault(fault, clean: CleanCase, margin: float = MARGIN) -> List[Finding]:
    """Run ``fault`` (a backward :class:`~parity.faults.Fault`) on ``clean``'s case: the port's
    forward and the probe under the fault, one :class:`Finding` per loss of ``fault.losses``."""
    from .core import inject

    with inject(fault):
        model = clean.adapter.build(clean.config, clean.weights, clean.case.dtype, "cpu") if fault.network \
            else clean.model
        forward = clean.adapter.forward(model, clean.inputs)
        faulty = gradients_of(model, clean.inputs, fault.losses)
    expected: Entry = ("weight", fault.expected_weight) if fault.expected_weight else ("stage", fault.expected_stage)
    out = []
    for loss in fault.losses:
        ref = clean.gradients(loss)
        pairs = [(clean.forward[s], forward[s]) for s in clean.forward]
        pairs += [(ref.stages[s], faulty[loss].stages[s]) for s in ref.stages]
        diffs = [_max_diff(a, b) for a, b in pairs]
        order = adjoint_order(ref.weights)
        first = first_difference(ref, faulty[loss], order)
        first_stage = first_difference(ref, faulty[loss], [e for e in order if e[0] == "stage"])
        out.append(Finding(fault.name, clean.case.name, clean.case.dtype, loss, expected[1], fault.expected_stage,
                           all(same(a, b) for a, b in pairs) and set(forward) == set(clean.forward), max(diffs),
                           _label(first), _label(first_stage), relative_errors(faulty[loss].get(expected),
                                                                               ref.get(expected)),
                           clean.floor(loss, expected), margin))
    return out
