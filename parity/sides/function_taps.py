"""Function taps: a module-level function wrapped for the duration of one forward.

``pkg.helpers.merge`` is replaced, on the module that defines it and on every module declared
in the tap's ``also`` (where it was imported by name: ``from pkg.helpers import merge``), by a
wrapper that hands its arguments and return value to the tap's :class:`Point`; on leaving the
context every attribute is put back, also when the forward raised, so nothing stays patched
after the forward returns. Any framework: the wrapper only passes values through.
"""
from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import sys
from types import ModuleType
from typing import Any, Dict, List, Sequence, Tuple

from .tap_points import Point, TapError


def _close(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, [n for n in names if not n.startswith("__")], n=5, cutoff=0.5)
    return f"; close names that exist: {', '.join(close)}" if close else ""


def _import(module: str, stage: str, path: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        parent, _, leaf = module.rpartition(".")
        hint = ""
        if parent:
            try:
                import pkgutil

                pkg = importlib.import_module(parent)
                subs = [m.name for m in pkgutil.iter_modules(getattr(pkg, "__path__", []))]
                hint = _close(leaf, subs + dir(pkg))
            except ImportError:
                pass
        raise TapError(f"stage {stage!r}: function {path}: module {module} cannot be imported "
                       f"({type(exc).__name__}: {exc}){hint}") from None


def resolve(path: str, stage: str) -> Tuple[ModuleType, str, Any]:
    """(defining module, attribute, function) of a dotted path ``pkg.mod.func``."""
    module, _, attr = path.rpartition(".")
    mod = _import(module, stage, path)
    if not hasattr(mod, attr):
        raise TapError(f"stage {stage!r}: function {path} does not exist: module {module} has no {attr!r}"
                       f"{_close(attr, dir(mod))}")
    fn = getattr(mod, attr)
    if not callable(fn):
        raise TapError(f"stage {stage!r}: {path} is a {type(fn).__name__}, not a function")
    return mod, attr, fn


def _also(spec: str, attr: str, fn: Any, stage: str, path: str) -> Tuple[ModuleType, str]:
    module, _, alias = spec.partition(":")
    alias = alias or attr
    mod = _import(module, stage, path)
    held = getattr(mod, alias, None)
    if held is None:
        raise TapError(f"stage {stage!r}: function {path}: also={spec!r}, but module {module} has no {alias!r}"
                       f"{_close(alias, dir(mod))}")
    if held is not fn and getattr(held, "__wrapped__", None) is not fn:
        raise TapError(f"stage {stage!r}: function {path}: also={spec!r}, but {module}.{alias} is not that function "
                       f"(it is {held!r})")
    return mod, alias


def import_hint(path: str, declared: Sequence[str]) -> str:
    """Where else the function is held by name (a tap that never fired may be patching the
    wrong module); '' when nowhere."""
    module, _, attr = path.rpartition(".")
    fn = getattr(sys.modules.get(module), attr, None)
    if fn is None:
        return ""
    skip = {module, *(d.partition(":")[0] for d in declared)}
    found = []
    for name, mod in list(sys.modules.items()):
        if name in skip or mod is None:
            continue
        try:
            names = [k for k, v in vars(mod).items() if v is fn]
        except TypeError:
            continue
        found += [f"{name}:{k}" if k != attr else name for k in names]
    if not found:
        return ""
    return (f"; the function is also imported by name into {', '.join(sorted(found)[:3])}, which calls it "
            f"without the wrapper: declare also=({', '.join(repr(f) for f in sorted(found)[:3])},)")


class FunctionPatches:
    """Context manager: every function point of one forward wrapped, then restored."""

    def __init__(self, points: Dict[str, Point], also: Dict[str, Tuple[str, ...]], stages: Dict[str, str]):
        self.points, self.also, self.stages = points, also, stages  # stages: path -> a stage that taps it
        self._undo: List[Tuple[ModuleType, str, Any]] = []

    def __enter__(self) -> "FunctionPatches":
        try:
            for path, point in self.points.items():
                stage = self.stages.get(path, "?")
                mod, attr, fn = resolve(path, stage)
                places = [(mod, attr)] + [_also(s, attr, fn, stage, path) for s in self.also.get(path, ())]
                try:
                    point.signature = inspect.signature(fn)
                except (TypeError, ValueError):
                    point.signature = None
                wrapper = _wrap(fn, point)
                for m, a in places:
                    self._undo.append((m, a, getattr(m, a)))
                    setattr(m, a, wrapper)
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        while self._undo:
            m, a, original = self._undo.pop()
            setattr(m, a, original)


def _wrap(fn: Any, point: Point) -> Any:
    @functools.wraps(fn)
    def tapped(*args, **kwargs):
        changed = point.enter(args, kwargs)
        if changed is not None:
            args, kwargs = changed
        try:
            out = fn(*args, **kwargs)
        except BaseException:
            point.abort()
            raise
        replaced = point.leave(out)
        return out if replaced is None else replaced

    return tapped


__all__ = ["FunctionPatches", "import_hint", "resolve"]
