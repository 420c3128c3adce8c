"""Sides: the only part of ``parity`` that imports TensorFlow, PyTorch or a user's models.

A side is named in the registry (``reference_tf``, ``torch_impl``) and found by an import
target ``"module:Class"``; a worker process imports the target itself, so a side defined in a
user's package (or in a test module) runs in a worker exactly like a built-in one.
"""
from __future__ import annotations

import importlib
import re
from typing import Dict, Tuple, Type

from .base import ForwardError, Side, SideUnavailable

#: Built-in sides: name -> import target.
BUILTIN_SIDES: Dict[str, str] = {
    "reference_tf": "parity.sides.reference_tf:ReferenceTF",
    "torch_impl": "parity.sides.torch_impl:TorchImpl",
}
#: Upstream PtychoPINN's two models, run from the user's checkout (--upstream PATH or
#: PARITY_PTYCHOPINN; see parity.upstream).
UPSTREAM_SIDES: Dict[str, str] = {
    "ptycho": "parity.upstream.ptycho_tf:Ptycho",
    "ptycho_torch": "parity.upstream.ptycho_torch:PtychoTorch",
}
_REGISTRY: Dict[str, str] = {**BUILTIN_SIDES, **UPSTREAM_SIDES}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


class UnknownSide(ValueError):
    """A side name that is not registered; the message lists the known sides."""


def register_side(name: str, target: str) -> None:
    """Register side ``name`` as the import target ``"module:Class"`` (replacing an earlier one)."""
    if not _NAME.match(name or ""):
        raise ValueError(f"side name {name!r} must start with a letter or _ and hold only letters, digits, _ . -")
    if ":" not in target:
        raise ValueError(f"side {name!r}: target {target!r} must be 'module:Class'")
    _REGISTRY[name] = target


def unregister_side(name: str) -> None:
    if name in BUILTIN_SIDES or name in UPSTREAM_SIDES:
        raise ValueError(f"side {name!r} is built in and cannot be removed")
    _REGISTRY.pop(name, None)


def side_names() -> Tuple[str, ...]:
    return tuple(_REGISTRY)


def side_target(name: str) -> str:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownSide(f"unknown side {name!r}; known sides are: {', '.join(_REGISTRY)}") from None


def load_side_class(target: str) -> Type[Side]:
    """Import ``"module:Class"`` and return the class (no framework is imported by this)."""
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise SideUnavailable(f"side target {target!r} cannot be imported: {type(exc).__name__}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Side)):
        raise ValueError(f"side target {target!r} is not a parity.sides.Side subclass")
    return cls


def side_class(name: str) -> Type[Side]:
    return load_side_class(side_target(name))


def get_side(name: str) -> Side:
    """An instance of the registered side ``name``."""
    return side_class(name)()


__all__ = ["BUILTIN_SIDES", "UPSTREAM_SIDES", "ForwardError", "Side", "SideUnavailable", "UnknownSide", "get_side",
           "load_side_class", "register_side", "side_class", "side_names", "side_target", "unregister_side"]
