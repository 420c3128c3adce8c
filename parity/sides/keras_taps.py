"""Keras taps for unmodified functional models: the outputs of named layers, read from one
sub-model ``keras.Model(model.inputs, [layer outputs] + model.outputs)`` built once per model
(the model's own outputs too, so a forward runs every layer).

Multi-output layers take an ``index`` (a tuple of indices for a (real, imag) pair). A layer
that the model calls more than once (a shared layer) needs ``call=N``: its N-th call in the
model's graph. Shapes are the runtime ones of the sub-model's outputs, never the declared ones.
"""
from __future__ import annotations

import difflib
from typing import Any, Dict, List, Tuple

from ..byo.taps import Tap
from .tap_points import TapError


def find_layer(model: Any, name: str, stage: str) -> Any:
    names = [layer.name for layer in model.layers]
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f"; close names that exist: {', '.join(close)}" if close else f"; its layers are: {', '.join(names[:12])}"
        raise TapError(f"stage {stage!r}: layer {name!r} does not exist in model {model.name!r}{hint}")
    return model.get_layer(name)


def _nodes(model: Any, layer: Any) -> List[Any]:
    """The calls of ``layer`` that belong to ``model``'s graph, in order."""
    nodes = list(getattr(layer, "_inbound_nodes", []))
    known = getattr(model, "_nodes", None)
    if known:
        mine = [n for i, n in enumerate(nodes) if f"{id(layer)}_ib-{i}" in known]
        nodes = mine or nodes
    return nodes


def _inputs_of(node: Any) -> str:
    parents = [p.operation.name for p in getattr(node, "parent_nodes", [])]
    return f"on the output of {', '.join(parents)}" if parents else "on the model's inputs"


def layer_output(model: Any, tap: Tap, stage: str) -> Any:
    """The symbolic output(s) of the tapped layer call."""
    layer = find_layer(model, tap.target, stage)
    nodes = _nodes(model, layer)
    if not nodes:
        raise TapError(f"stage {stage!r}: layer {tap.target!r} is never called in model {model.name!r}")
    if tap.call is None and len(nodes) > 1:
        calls = "; ".join(f"call {i + 1} {_inputs_of(n)}" for i, n in enumerate(nodes))
        raise TapError(f"stage {stage!r}: layer {tap.target!r} is called {len(nodes)} times in one forward ({calls}); "
                       f"declare call=N (1 = the first) to say which call is the stage")
    if tap.call is not None and tap.call > len(nodes):
        raise TapError(f"stage {stage!r}: the tap takes call {tap.call} of layer {tap.target!r}, which the model "
                       f"calls {len(nodes)} time(s)")
    node = nodes[(tap.call or 1) - 1]
    if tap.kind == "layer_input":
        inputs = list(node.input_tensors)
        if not tap.index < len(inputs):
            raise TapError(f"stage {stage!r}: layer {tap.target!r} takes {len(inputs)} input(s); the tap reads "
                           f"input {tap.index}")
        return inputs[tap.index]
    outputs = list(node.output_tensors)
    if tap.index is None:
        return outputs[0] if len(outputs) == 1 else tuple(outputs)
    idx = tap.index if isinstance(tap.index, tuple) else (tap.index,)
    bad = [i for i in idx if not isinstance(i, int) or not -len(outputs) <= i < len(outputs)]
    if bad:
        raise TapError(f"stage {stage!r}: layer {tap.target!r} has {len(outputs)} output(s); the tap takes index "
                       f"{tap.index!r}")
    picked = tuple(outputs[i] for i in idx)
    return picked if isinstance(tap.index, tuple) else picked[0]


def tap_model(model: Any, taps: Dict[str, Tap]) -> Tuple[Any, Dict[str, Any]]:
    """(sub-model, stage -> position(s) in its output list) over the layer taps and the model's
    outputs; (None, {}) without layer taps (the model itself is called)."""
    import keras

    tensors: List[Any] = []
    where: Dict[str, Any] = {}

    def slot(t: Any) -> int:
        for i, have in enumerate(tensors):
            if have is t:
                return i
        tensors.append(t)
        return len(tensors) - 1

    for stage, tap in taps.items():
        out = layer_output(model, tap, stage)
        where[stage] = tuple(slot(t) for t in out) if isinstance(out, tuple) else slot(out)
    if not tensors:
        return None, where
    for t in model.outputs:  # the whole model runs (function taps may be in layers after the tapped ones)
        slot(t)
    try:
        sub = keras.Model(model.inputs, tensors, name=f"{model.name}_taps")
    except ValueError as exc:  # e.g. a layer not computed from the model's inputs
        raise TapError(f"the tapped layers {sorted(t.target for t in taps.values())} cannot be read from the "
                       f"model's inputs: {exc}") from None
    return sub, where


def pick(outputs: List[Any], where: Dict[str, Any]) -> Dict[str, Any]:
    return {stage: (tuple(outputs[i] for i in pos) if isinstance(pos, tuple) else outputs[pos])
            for stage, pos in where.items()}


__all__ = ["find_layer", "layer_output", "pick", "tap_model"]
