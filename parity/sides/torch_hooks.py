"""torch hooks for unmodified models: a submodule's output (forward hook) or input (forward
pre-hook), by dotted path, for the duration of one forward.

:class:`ModuleHooks` registers, for every module point of a :class:`Recorder`, one pre-hook and
one forward hook that hand the module's arguments and output to the point (which captures
stages and, for teacher forcing, returns replaced arguments or a replaced output); the hooks
are removed on leaving the context, also when the forward raised.

A captured tensor is held without a copy, with its version counter; a tensor that a later
in-place operation (``relu_``, ``x += ...``) wrote to is seen by :func:`changed`, and the side
runs that forward again with copies (so the common case pays no copy, and no capture is stale).
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Dict, List

from .tap_points import Point, TapError


def find_module(net: Any, path: str, stage: str) -> Any:
    """The submodule of ``net`` at dotted ``path`` ("" is ``net`` itself)."""
    if path == "":
        return net
    modules = dict(net.named_modules())
    if path not in modules:
        close = difflib.get_close_matches(path, [n for n in modules if n], n=5, cutoff=0.5)
        hint = f"; close names that exist: {', '.join(close)}" if close else \
            f"; its modules are: {', '.join(n for n in list(modules)[1:13] if n)}"
        raise TapError(f"stage {stage!r}: module {path!r} does not exist in {type(net).__name__}{hint}")
    return modules[path]


def snapshot(value: Any, clone: bool = False) -> Any:
    """A captured value: the tensor itself (detached) and its version, or with ``clone`` a
    copy; :func:`changed` tells whether an in-place operation later wrote to an uncopied one."""
    import torch

    if isinstance(value, torch.Tensor):
        t = value.detach()
        return t.clone() if clone else Held(t, t._version)
    if isinstance(value, (tuple, list)) and not hasattr(value, "_fields"):
        return type(value)(snapshot(v, clone) for v in value)
    return value


class Held:
    """A captured tensor, uncopied, with the version counter it had when captured."""

    __slots__ = ("tensor", "version")

    def __init__(self, tensor: Any, version: int):
        self.tensor, self.version = tensor, version


def changed(value: Any) -> bool:
    """True if a captured tensor was written in place after it was captured (its value is gone)."""
    if isinstance(value, Held):
        return value.tensor._version != value.version
    if isinstance(value, (tuple, list)):
        return any(changed(v) for v in value)
    return False


def unheld(value: Any) -> Any:
    if isinstance(value, Held):
        return value.tensor
    if isinstance(value, (tuple, list)) and not hasattr(value, "_fields"):
        return type(value)(unheld(v) for v in value)
    return value


class ModuleHooks:
    """Context manager: the module points of one forward hooked, then unhooked."""

    def __init__(self, net: Any, points: Dict[str, Point], stages: Dict[str, str]):
        self.net, self.points, self.stages = net, points, stages  # stages: path -> a stage that taps it
        self._handles: List[Any] = []

    def __enter__(self) -> "ModuleHooks":
        try:
            for path, point in self.points.items():
                mod = find_module(self.net, path, self.stages.get(path, "?"))
                try:
                    point.signature = inspect.signature(mod.forward)
                except (TypeError, ValueError):
                    point.signature = None
                self._handles.append(mod.register_forward_pre_hook(_pre(point), with_kwargs=True))
                self._handles.append(mod.register_forward_hook(_post(point)))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._remove()

    def _remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()


def _pre(point: Point):
    def hook(module, args, kwargs):
        return point.enter(args, kwargs)

    return hook


def _post(point: Point):
    def hook(module, args, output):
        return point.leave(output)

    return hook


__all__ = ["Held", "ModuleHooks", "changed", "find_module", "snapshot", "unheld"]
