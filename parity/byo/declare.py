"""Declaring a pair: its stages and the two side classes, registered by name.

``stage(name, "B C N N", inputs=(...))`` is one entry of the pair's stage list (a
:class:`parity.stages.Stage`); :func:`declare_pair` registers both side classes (each under its
``name``, as the import target ``"module:Class"`` a worker process imports) and returns the
:class:`parity.pairs.Pair`. A pair factory (what the entry point group ``parity.pairs`` and
``--pair-from`` name) is a function that returns ``declare_pair(...)``.
"""
from __future__ import annotations

import importlib
from typing import Any, Optional, Sequence, Union

from ..pairs import Pair, check_pair
from ..sides import Side, register_side
from ..stages import Stage


def stage(name: str, shape: Union[str, Sequence[str]] = (), *, inputs: Sequence[str] = (), complex: bool = False,
          description: str = "") -> Stage:
    """A stage: ``shape`` is its canonical (channels-first) shape in symbols, e.g. ``"B C N N"``
    (``""`` for a scalar); ``inputs``: the earlier stages or batch inputs it is computed from."""
    dims = tuple(shape.split()) if isinstance(shape, str) else tuple(str(s) for s in shape)
    inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
    return Stage(name, dims, bool(complex), inputs, description)


def _target(cls: type) -> str:
    module, qual = cls.__module__, cls.__qualname__
    if module == "__main__" or "<locals>" in qual:
        raise ValueError(f"side class {qual} must be defined at the top level of an importable module (a worker "
                         f"process imports it as 'module:Class'), not in {module if module == '__main__' else qual}")
    found = importlib.import_module(module)
    for part in qual.split("."):
        found = getattr(found, part, None)
    if found is not cls:
        raise ValueError(f"side class {qual} is not importable as {module}:{qual}")
    return f"{module}:{qual}"


def _register(side: Union[str, type]) -> str:
    if isinstance(side, str):
        return side
    if not (isinstance(side, type) and issubclass(side, Side)) or not side.name:
        raise ValueError(f"a pair's side is a registered side name or a Side subclass with a name, got {side!r}")
    register_side(side.name, _target(side))
    return side.name


def declare_pair(name: str, reference: Union[str, type], candidate: Union[str, type], cases: Any, *,
                 stages: Optional[Sequence[Stage]] = None, description: str = "") -> Pair:
    """Register the two sides and return the pair (checked: both sides emit its stage list)."""
    if stages is None:
        stages = getattr(reference, "stage_list", None) or getattr(candidate, "stage_list", None)
        if not stages:
            raise ValueError(f"pair {name!r}: give stages=[...] (the sides do not declare a stage_list)")
    ref, cand = _register(reference), _register(candidate)
    return check_pair(Pair(name=name, reference=ref, candidate=cand, stages=tuple(stages), cases=cases,
                           description=description))


__all__ = ["declare_pair", "stage"]
