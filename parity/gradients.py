"""Gradients in one convention, and the adjoint graph of a pair's stages. NumPy only.

**The complex convention.** The harness holds the gradient of a real loss L with respect to a
complex tensor z = x + iy as

    g = dL/dx + i dL/dy            (= 2 dL/dz*, the steepest-ascent direction)

and a cotangent fed into a vector-Jacobian product of a complex output in the same form. A
side says which form its framework returns (:attr:`parity.sides.Side.complex_gradient`):
``"dx+idy"`` (TensorFlow's ``GradientTape.gradient`` and ``torch.autograd``, measured: see
docs/backward.md) or ``"dx-idy"`` (the conjugate form).
:func:`to_canonical` / :func:`from_canonical` are the one place that converts; real arrays
pass unchanged.

**The adjoint graph.** The gradient of a loss with respect to stage S sums the contributions
of every stage that reads S (its consumers). For a loss, the adjoint stages are the stages the
loss depends on, in reverse pipeline order (the loss first); ``grad:S`` names the adjoint of S.

**Keys.** A backward job hands its gradients back as one flat ``{key: array}`` (one ``.npz``):
``<loss>/stage/<stage>``, ``<loss>/weight/<neutral weight name>``, ``<loss>/value/<stage>`` (the
stage values the gradients were taken at: a framework's differentiated pass may round
differently from its forward pass, e.g. TensorFlow eager vs ``tf.function``) and, teacher-forced
with the reference's values and output cotangents, ``<loss>/local/<stage>`` and
``<loss>/local_weight/<name>``.
"""
from __future__ import annotations

from typing import Dict, Iterable, Mapping, Sequence, Tuple

import numpy as np

CONVENTIONS = ("dx+idy", "dx-idy")
CANONICAL = "dx+idy"
LOSSES = ("loss_nll", "loss_mae")
KINDS = ("stage", "weight", "value", "local", "local_weight")
PREFIX = "grad:"

Graph = Sequence[Tuple[str, Sequence[str]]]


def check_convention(convention: str, who: str = "side") -> str:
    if convention not in CONVENTIONS:
        raise ValueError(f"{who}: complex gradient convention {convention!r}; expected one of {list(CONVENTIONS)}")
    return convention


def to_canonical(array, convention: str):
    """A gradient in ``convention`` -> the harness's (``dx+idy``); real arrays unchanged."""
    a = np.asarray(array)
    if check_convention(convention) == CANONICAL or a.dtype.kind != "c":
        return a
    return np.conj(a)


def from_canonical(array, convention: str):
    """A cotangent in the harness's convention -> ``convention`` (the conversion is its own inverse)."""
    return to_canonical(array, convention)


def adjoint_name(stage: str) -> str:
    return PREFIX + stage


def primal_name(name: str) -> str:
    return name[len(PREFIX):] if name.startswith(PREFIX) else name


def ancestors(graph: Graph, target: str) -> Tuple[str, ...]:
    """The stages ``target`` depends on (itself included), in pipeline order."""
    inputs = {name: tuple(ins) for name, ins in graph}
    if target not in inputs:
        raise ValueError(f"unknown loss stage {target!r}; stages are {[n for n, _ in graph]}")
    need = {target}
    for name, _ in reversed(list(graph)):
        if name in need:
            need.update(i for i in inputs[name] if i in inputs)
    return tuple(name for name, _ in graph if name in need)


def adjoint_order(graph: Graph, loss: str) -> Tuple[str, ...]:
    """The stages whose gradient the loss has, in reverse pipeline order (the loss first)."""
    return tuple(reversed(ancestors(graph, loss)))


def default_losses(graph: Graph) -> Tuple[str, ...]:
    """The loss stages a backward job differentiates when none are named: the built-in losses the
    graph has; else its stages named ``loss*``; else its last stage."""
    names = [n for n, _ in graph]
    return (tuple(n for n in LOSSES if n in names) or tuple(n for n in names if n.startswith("loss"))
            or tuple(names[-1:]))


def consumers(graph: Graph, stages: Iterable[str]) -> Dict[str, Tuple[str, ...]]:
    """stage -> the stages (among ``stages``) that read it."""
    keep = set(stages)
    out: Dict[str, list] = {s: [] for s in keep}
    for name, ins in graph:
        if name in keep:
            for i in ins:
                if i in out:
                    out[i].append(name)
    return {k: tuple(v) for k, v in out.items()}


def key(loss: str, kind: str, name: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"gradient kind {kind!r}; expected one of {list(KINDS)}")
    return f"{loss}/{kind}/{name}"


def split(flat: Mapping[str, np.ndarray]) -> Dict[str, Dict[str, Dict[str, np.ndarray]]]:
    """``{"loss/kind/name": array}`` -> ``{loss: {kind: {name: array}}}``."""
    out: Dict[str, Dict[str, Dict[str, np.ndarray]]] = {}
    for k, v in flat.items():
        loss, kind, name = k.split("/", 2)
        out.setdefault(loss, {}).setdefault(kind, {})[name] = v
    return out


def nonfinite_counts(arrays: Mapping[str, np.ndarray], order: Sequence[str]) -> Dict[str, int]:
    """name -> count of NaN/Inf elements, for the names in ``order`` that hold any."""
    out = {}
    for name in order:
        if name in arrays:
            n = int(np.size(arrays[name]) - np.count_nonzero(np.isfinite(arrays[name])))
            if n:
                out[name] = n
    return out


# ------------------------------------------------------------------------------------ in a job
def _zeros_like_stage(stages: Mapping[str, np.ndarray], name: str):
    ref = np.asarray(stages[name])
    return np.zeros(ref.shape, dtype=ref.dtype)


def compute(side, model, *, inputs: Mapping[str, np.ndarray], stages: Mapping[str, np.ndarray], graph: Graph,
            losses: Sequence[str], weights: Mapping[str, np.ndarray], dtype: str = "float32",
            teacher_gradients: Mapping[str, np.ndarray] = None):
    """Every gradient a backward job hands back, as ``({key: array}, {where: error})``.

    For each loss: dL/dstage for every stage the loss depends on (a stage the side's framework
    did not reach counts as zero, shaped as its forward value), dL/dW for every neutral weight
    (zero when not reached), all in the harness's convention, and the stage values they were
    taken at. With the teacher's gradients (``teacher_gradients``, which hold its values), also
    the local backward: for each stage T, this side's VJP of T alone at the teacher's inputs of
    T with the teacher's dL/dT as cotangent, summed per input stage over its consumers (and per
    weight): this side's dL/dS when everything downstream of S is the reference's."""
    conv = check_convention(getattr(side, "complex_gradient", CANONICAL), f"side {getattr(side, 'name', '?')}")
    out: Dict[str, np.ndarray] = {}
    errors: Dict[str, str] = {}
    taught = teacher_gradients is not None
    ref_grads = split(teacher_gradients) if taught else {}
    inputs_of = {name: tuple(ins) for name, ins in graph}
    for loss in losses:
        order = adjoint_order(graph, loss)
        sg, wg, values = side.gradients(model, inputs, loss)
        for name in order:
            if name in values:
                out[key(loss, "value", name)] = np.asarray(values[name])
            g = sg.get(name)
            out[key(loss, "stage", name)] = (to_canonical(g, conv) if g is not None
                                             else _zeros_like_stage(stages, name))
        for name, w in weights.items():
            g = wg.get(name)
            out[key(loss, "weight", name)] = np.asarray(g) if g is not None else np.zeros(np.shape(w), dtype)
        if not taught or loss not in ref_grads:
            continue
        ref_stage, ref_values = ref_grads[loss].get("stage", {}), ref_grads[loss].get("value", {})
        env_all = {**inputs, **ref_values}
        local = {s: _zeros_like_stage(ref_stage, s) for s in order[1:] if s in ref_stage}
        local_w = {n: np.zeros(np.shape(w), dtype) for n, w in weights.items()}
        for t in order:
            if t not in ref_stage or not all(k in env_all for k in inputs_of[t]):
                continue
            try:
                ins, ws = side.stage_vjp(model, t, {k: env_all[k] for k in inputs_of[t]},
                                         from_canonical(ref_stage[t], conv))
            except Exception as exc:  # e.g. the teacher's value does not fit this side's shape
                errors[f"{loss}/{t}"] = f"{type(exc).__name__}: {exc}"
                continue
            for k, g in ins.items():
                if k in local:
                    local[k] = local[k] + to_canonical(g, conv)
            for k, g in ws.items():
                if k in local_w:
                    local_w[k] = local_w[k] + np.asarray(g)
        out.update({key(loss, "local", s): v for s, v in local.items()})
        out.update({key(loss, "local_weight", n): v for n, v in local_w.items()})
    return out, errors
