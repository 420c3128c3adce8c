"""Tap points: what happens at one tapped target (a torch module, a function) during one forward.

A :class:`Point` is told, before a forward, which stages to capture at its target (an output
or an input, at a given call or at every call) and which values to put in (teacher forcing:
an argument or the output replaced by the reference's value). The framework glue calls
:meth:`Point.enter` with the target's arguments and :meth:`Point.leave` with its output (a
torch hook, a function wrapper); both return the replaced arguments / output, or None when
nothing changes. A :class:`Recorder` holds the points of one forward and, after it, hands
over one value per stage or raises :class:`TapError`: the target never ran (nothing is
captured, so no stale value either), or it ran more than once and the tap did not say which
call it means (each call named with the line of user code that made it).

Framework-free: values are whatever the target receives and returns; ``snapshot`` turns a
captured value into what is kept (torch: the detached tensor and its version counter).
"""
from __future__ import annotations

import inspect
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import parity

_PARITY_DIR = os.path.dirname(os.path.abspath(parity.__file__))


class TapError(RuntimeError):
    """A declared tap that cannot be carried out (missing target, never ran, ran twice)."""


def caller(skip_dirs: Tuple[str, ...]) -> str:
    """``file:line`` of the innermost frame outside the harness and the frameworks."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if not name.startswith(skip_dirs) and not name.startswith("<"):
            if name.startswith(os.getcwd() + os.sep):
                name = os.path.relpath(name)
            return f"{name}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


def framework_dirs(*modules: Any) -> Tuple[str, ...]:
    dirs = [_PARITY_DIR + os.sep]
    for m in modules:
        path = getattr(m, "__file__", None)
        if path:
            dirs.append(os.path.dirname(os.path.abspath(path)) + os.sep)
    return tuple(dirs)


@dataclass
class _Capture:
    stage: str
    index: Any
    call: Optional[int]


@dataclass
class _Put:
    index: Any
    call: Optional[int]
    value: Any


def _position(index: Any, signature: Optional[inspect.Signature]) -> Optional[int]:
    if isinstance(index, int):
        return index
    if signature is None:
        return None
    names = [p.name for p in signature.parameters.values()
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return names.index(index) if index in names else None


@dataclass
class Point:
    """One tapped target. ``label`` names it in messages ("module 'body'")."""

    label: str
    skip_dirs: Tuple[str, ...] = ()
    snapshot: Callable[[Any], Any] = lambda v: v
    signature: Optional[inspect.Signature] = None
    calls: int = 0
    where: List[str] = field(default_factory=list)
    cap_in: List[_Capture] = field(default_factory=list)
    cap_out: List[_Capture] = field(default_factory=list)
    put_in: List[_Put] = field(default_factory=list)
    put_out: List[_Put] = field(default_factory=list)
    values: Dict[str, List[Tuple[int, Any]]] = field(default_factory=dict)
    _stack: List[int] = field(default_factory=list)

    # ------------------------------------------------------------ arguments and outputs
    def _get_in(self, args: tuple, kwargs: dict, index: Any, stage: str) -> Any:
        if isinstance(index, str) and index in kwargs:
            return kwargs[index]
        pos = _position(index, self.signature)
        if pos is None or not 0 <= pos < len(args):
            raise TapError(f"stage {stage!r}: {self.label} was called with {len(args)} positional argument(s) and "
                           f"keyword(s) {sorted(kwargs)}; the tap reads argument {index!r}")
        return args[pos]

    def _put_arg(self, args: tuple, kwargs: dict, index: Any, value: Any) -> Tuple[tuple, dict]:
        if isinstance(index, str) and (index in kwargs or _position(index, self.signature) is None):
            return args, {**kwargs, index: value}
        pos = _position(index, self.signature)
        if pos is None or not 0 <= pos < len(args):
            raise TapError(f"{self.label} was called with {len(args)} positional argument(s); teacher forcing "
                           f"feeds argument {index!r} (declare feed=(...): the argument each stage input goes to)")
        return args[:pos] + (value,) + args[pos + 1:], kwargs

    @staticmethod
    def _get_out(output: Any, index: Any, label: str, stage: str) -> Any:
        if index is None:
            return output
        try:
            if isinstance(index, tuple):
                return tuple(output[i] for i in index)
            return output[index]
        except (IndexError, KeyError, TypeError):
            kind = type(output).__name__
            size = f" of {len(output)}" if hasattr(output, "__len__") else ""
            raise TapError(f"stage {stage!r}: {label} returned a {kind}{size}; the tap takes index {index!r}") from None

    @staticmethod
    def _put_output(output: Any, index: Any, value: Any) -> Any:
        if index is None:
            return value
        if isinstance(index, tuple):
            for i, v in zip(index, value):
                output = Point._put_output(output, i, v)
            return output
        if isinstance(output, dict):
            return {**output, index: value}
        items = list(output)
        items[index] = value
        if hasattr(output, "_fields"):  # a named tuple
            return type(output)(*items)
        return tuple(items) if isinstance(output, tuple) else items

    # ------------------------------------------------------------ the target runs
    def enter(self, args: tuple, kwargs: dict) -> Optional[Tuple[tuple, dict]]:
        self.calls += 1
        n = self.calls
        self._stack.append(n)
        self.where.append(caller(self.skip_dirs))
        changed = False
        for p in self.put_in:
            if p.call is None or p.call == n:
                args, kwargs = self._put_arg(tuple(args), dict(kwargs), p.index, p.value)
                changed = True
        for c in self.cap_in:
            if c.call is None or c.call == n:
                value = self._get_in(tuple(args), kwargs, c.index, c.stage)
                self.values.setdefault(c.stage, []).append((n, self.snapshot(value)))
        return (tuple(args), dict(kwargs)) if changed else None

    def leave(self, output: Any) -> Any:
        n = self._stack.pop() if self._stack else self.calls
        changed = False
        for p in self.put_out:
            if p.call is None or p.call == n:
                output = self._put_output(output, p.index, p.value)
                changed = True
        for c in self.cap_out:
            if c.call is None or c.call == n:
                value = self._get_out(output, c.index, self.label, c.stage)
                self.values.setdefault(c.stage, []).append((n, self.snapshot(value)))
        return output if changed else None

    def abort(self) -> None:
        if self._stack:
            self._stack.pop()

    # ------------------------------------------------------------ after the forward
    def value(self, stage: str, call: Optional[int], hint: str = "") -> Any:
        got = self.values.get(stage, [])
        if self.calls == 0:
            raise TapError(f"stage {stage!r}: {self.label} was never called during the forward, so nothing was "
                           f"captured{hint}")
        if call is not None:
            if not got:
                raise TapError(f"stage {stage!r}: the tap takes call {call} of {self.label}, which ran "
                               f"{self.calls} time(s) in this forward ({self._calls()})")
            return got[0][1]
        if len(got) > 1:
            raise TapError(f"stage {stage!r}: {self.label} ran {self.calls} times in one forward "
                           f"({self._calls()}); declare call=N (1 = the first) to say which call is the stage")
        return got[0][1]

    def _calls(self) -> str:
        return ", ".join(f"call {i + 1} at {w}" for i, w in enumerate(self.where))


class Recorder:
    """The points of one forward, keyed by (kind, target)."""

    def __init__(self, skip_dirs: Tuple[str, ...] = (), snapshot: Callable[[Any], Any] = lambda v: v):
        self.skip_dirs, self.snapshot = skip_dirs, snapshot
        self.points: Dict[Tuple[str, str], Point] = {}
        self.wanted: Dict[str, Tuple[Tuple[str, str], Optional[int]]] = {}

    def point(self, group: str, target: str, label: str) -> Point:
        key = (group, target)
        if key not in self.points:
            self.points[key] = Point(label, self.skip_dirs, self.snapshot)
        return self.points[key]

    def capture(self, group: str, target: str, label: str, stage: str, *, reads_input: bool, index: Any,
                call: Optional[int]) -> None:
        p = self.point(group, target, label)
        (p.cap_in if reads_input else p.cap_out).append(_Capture(stage, index, call))
        self.wanted[stage] = ((group, target), call)

    def put(self, group: str, target: str, label: str, *, into_input: bool, index: Any, call: Optional[int],
            value: Any) -> None:
        p = self.point(group, target, label)
        (p.put_in if into_input else p.put_out).append(_Put(index, call, value))

    def reset(self) -> None:
        """Forget what one forward recorded (the captures and replacements stay declared)."""
        for p in self.points.values():
            p.calls, p.where, p.values, p._stack = 0, [], {}, []

    def group(self, name: str) -> Dict[str, Point]:
        return {target: p for (g, target), p in self.points.items() if g == name}

    def collect(self, stages: Iterable[str], hints: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
        out = {}
        for stage in stages:
            key, call = self.wanted[stage]
            out[stage] = self.points[key].value(stage, call, (hints or {}).get(stage, ""))
        return out

    def partial(self) -> Dict[str, Any]:
        """Whatever was captured once (for a forward that raised part-way)."""
        out = {}
        for stage, (key, _) in self.wanted.items():
            got = self.points[key].values.get(stage, [])
            if len(got) == 1:
                out[stage] = got[0][1]
        return out


__all__ = ["Point", "Recorder", "TapError", "caller", "framework_dirs"]
