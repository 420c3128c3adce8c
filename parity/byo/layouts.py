"""Stage layouts of a declared side: how a tapped (native) value becomes the canonical array.

A layout is declared with each tap (:mod:`parity.byo.taps`) as a sequence of steps, applied in
order to the value the tap captured; :func:`to_canonical` is the one place that applies them,
and :func:`to_native` the one place that undoes them (teacher forcing feeds the reference's
canonical values back into the model in its own layout). NumPy only.

Steps (``B`` batch, ``C`` channels, ``H``/``W`` image axes):

* ``NHWC``: (B, H, W, C) -> (B, C, H, W); ``transpose(*perm)`` any axis order;
* ``unflatten(C)``: the flat (B*C, H, W, 1) stack, b-major (row ``b * C + c``) -> (B, C, H, W);
  ``C`` is a number or the name of a config field;
* ``drop(axis)``: remove an axis of size 1; ``select(axis, i)``: keep index ``i`` of an axis
  (cannot be undone: a stage selected so cannot be teacher-forced from);
* ``COMPLEX``: a (real, imag) pair of captured tensors, or ``complex_from(axis)``: an axis of
  size 2, -> one complex array;
* ``scale(k)``: multiply by ``k`` (a number or a config field).

A tap that captured several tensors (an ``index`` tuple) gives a tuple; every step but the
complex ones applies to each tensor of the tuple. A layout that does not fit the runtime shape
raises :class:`LayoutError` naming the stage, the declared layout and the shape; arrays are
never reshaped to make them fit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import numpy as np


class LayoutError(ValueError):
    """A declared layout that does not fit a runtime shape (or cannot be undone)."""


def _shape(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(str(tuple(np.shape(v))) for v in value) + ")"
    return str(tuple(np.shape(value)))


def _resolve(amount: Union[int, float, str], config: Optional[Mapping[str, Any]], what: str) -> Any:
    if isinstance(amount, str):
        if not config or amount not in config:
            known = ", ".join(sorted(config or {})) or "none"
            raise LayoutError(f"{what} names config field {amount!r}, which this case's config does not have "
                              f"(fields: {known})")
        return config[amount]
    return amount


@dataclass(frozen=True)
class Step:
    """One layout step; subclasses implement :meth:`forward` and :meth:`backward` on one array."""

    @property
    def label(self) -> str:
        return type(self).__name__.lower()

    def forward(self, a: np.ndarray, config) -> np.ndarray:
        raise NotImplementedError

    def backward(self, a: np.ndarray, config) -> np.ndarray:
        raise LayoutError(f"{self.label} cannot be undone")


@dataclass(frozen=True)
class Transpose(Step):
    perm: Tuple[int, ...]
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or f"transpose{self.perm}"

    def forward(self, a, config):
        if a.ndim != len(self.perm):
            raise LayoutError(f"{self.label} needs rank {len(self.perm)}")
        return np.transpose(a, self.perm)

    def backward(self, a, config):
        if a.ndim != len(self.perm):
            raise LayoutError(f"{self.label} needs rank {len(self.perm)}")
        return np.transpose(a, np.argsort(self.perm))


@dataclass(frozen=True)
class Unflatten(Step):
    channels: Union[int, str]

    @property
    def label(self) -> str:
        return f"unflatten({self.channels!r})"

    def _c(self, config) -> int:
        c = _resolve(self.channels, config, self.label)
        if not isinstance(c, (int, np.integer)) or c < 1:
            raise LayoutError(f"{self.label}: the channel count must be a positive integer, got {c!r}")
        return int(c)

    def forward(self, a, config):
        c = self._c(config)
        if a.ndim != 4 or a.shape[-1] != 1 or a.shape[0] % c:
            raise LayoutError(f"{self.label} needs (B*{c}, H, W, 1)")
        return a[..., 0].reshape(a.shape[0] // c, c, *a.shape[1:3])

    def backward(self, a, config):
        c = self._c(config)
        if a.ndim != 4 or a.shape[1] != c:
            raise LayoutError(f"{self.label} undone needs (B, {c}, H, W)")
        return a.reshape(a.shape[0] * c, *a.shape[2:], 1)


@dataclass(frozen=True)
class Drop(Step):
    axis: int

    @property
    def label(self) -> str:
        return f"drop({self.axis})"

    def forward(self, a, config):
        if not -a.ndim <= self.axis < a.ndim or a.shape[self.axis] != 1:
            raise LayoutError(f"{self.label} needs an axis {self.axis} of size 1")
        return np.squeeze(a, axis=self.axis)

    def backward(self, a, config):
        axis = self.axis if self.axis >= 0 else a.ndim + 1 + self.axis
        return np.expand_dims(a, axis)


@dataclass(frozen=True)
class Select(Step):
    axis: int
    index: int

    @property
    def label(self) -> str:
        return f"select({self.axis}, {self.index})"

    def forward(self, a, config):
        if not -a.ndim <= self.axis < a.ndim or not -a.shape[self.axis] <= self.index < a.shape[self.axis]:
            raise LayoutError(f"{self.label} needs an axis {self.axis} holding index {self.index}")
        return np.take(a, self.index, axis=self.axis)

    def backward(self, a, config):
        raise LayoutError(f"{self.label} keeps one index of an axis and cannot be undone")


@dataclass(frozen=True)
class Scale(Step):
    factor: Union[float, str]

    @property
    def label(self) -> str:
        return f"scale({self.factor!r})"

    def forward(self, a, config):
        return a * np.asarray(_resolve(self.factor, config, self.label), dtype=a.dtype)

    def backward(self, a, config):
        return a / np.asarray(_resolve(self.factor, config, self.label), dtype=a.dtype)


@dataclass(frozen=True)
class Complex(Step):
    """(real, imag) -> complex: from a captured pair (``axis`` None) or an axis of size 2."""

    axis: Optional[int] = None

    @property
    def label(self) -> str:
        return "complex" if self.axis is None else f"complex_from({self.axis})"


def _combine(step: Complex, value: Any) -> np.ndarray:
    if step.axis is None:
        if not (isinstance(value, tuple) and len(value) == 2):
            raise LayoutError("complex needs a (real, imag) pair: declare the tap with index=(i_real, i_imag)")
        re, im = (np.asarray(v) for v in value)
        if re.shape != im.shape:
            raise LayoutError("complex needs real and imaginary parts of one shape")
        return re + 1j * im
    a = np.asarray(value)
    if isinstance(value, tuple) or not -a.ndim <= step.axis < a.ndim or a.shape[step.axis] != 2:
        raise LayoutError(f"{step.label} needs one array with an axis {step.axis} of size 2")
    re, im = np.moveaxis(a, step.axis, 0)
    return re + 1j * im


def _split(step: Complex, a: np.ndarray) -> Any:
    if not np.iscomplexobj(a):
        raise LayoutError(f"{step.label} undone needs a complex array")
    if step.axis is None:
        return (np.ascontiguousarray(a.real), np.ascontiguousarray(a.imag))
    return np.stack([a.real, a.imag], axis=step.axis)


NHWC = Transpose((0, 3, 1, 2), "NHWC->NCHW")
COMPLEX = Complex()
_NAMED = {"nhwc": NHWC, "complex": COMPLEX}

Layout = Tuple[Step, ...]


def transpose(*perm: int) -> Transpose:
    return Transpose(tuple(int(p) for p in perm))


def unflatten(channels: Union[int, str]) -> Unflatten:
    return Unflatten(channels)


def drop(axis: int) -> Drop:
    return Drop(int(axis))


def select(axis: int, index: int) -> Select:
    return Select(int(axis), int(index))


def scale(factor: Union[float, str]) -> Scale:
    return Scale(factor)


def complex_from(axis: int) -> Complex:
    return Complex(int(axis))


def layout(spec: Any = None) -> Layout:
    """Normalise a declared layout: None (as captured), a step, a name ("nhwc", "complex") or a
    sequence of those."""
    if spec is None:
        return ()
    if isinstance(spec, Step):
        return (spec,)
    if isinstance(spec, str):
        try:
            return (_NAMED[spec.lower()],)
        except KeyError:
            raise ValueError(f"unknown layout {spec!r}; named layouts are {sorted(_NAMED)}, or give steps "
                             f"(parity.byo.layouts: NHWC, unflatten, drop, select, scale, COMPLEX, ...)") from None
    if isinstance(spec, Sequence):
        return tuple(step for part in spec for step in layout(part))
    raise ValueError(f"a layout is a step, a name or a sequence of them, got {spec!r}")


def describe(steps: Layout) -> str:
    return " then ".join(s.label for s in steps) if steps else "as captured"


def _fail(stage: str, steps: Layout, value: Any, why: str) -> LayoutError:
    return LayoutError(f"stage {stage!r}: layout {describe(steps)} does not fit the runtime shape "
                       f"{_shape(value)}: {why}")


def to_canonical(stage: str, steps: Layout, value: Any, config: Optional[Mapping[str, Any]] = None) -> np.ndarray:
    """Apply ``steps`` to a captured value (an array or a tuple of arrays); one array back."""
    v = tuple(np.asarray(x) for x in value) if isinstance(value, (tuple, list)) else np.asarray(value)
    for step in steps:
        try:
            if isinstance(step, Complex):
                v = _combine(step, v)
            elif isinstance(v, tuple):
                v = tuple(step.forward(x, config) for x in v)
            else:
                v = step.forward(v, config)
        except LayoutError as exc:
            raise _fail(stage, steps, value, str(exc)) from None
    if isinstance(v, tuple):
        raise _fail(stage, steps, value, f"the tap captured {len(v)} tensors; combine them (COMPLEX) or "
                                         f"choose one with index=")
    return np.ascontiguousarray(v)


def to_native(stage: str, steps: Layout, array: Any, config: Optional[Mapping[str, Any]] = None) -> Any:
    """Undo ``steps`` on a canonical array: the value as the model holds it (a tuple for a pair)."""
    v: Any = np.asarray(array)
    for step in reversed(steps):
        try:
            if isinstance(step, Complex):
                v = _split(step, v)
            elif isinstance(v, tuple):
                v = tuple(step.backward(x, config) for x in v)
            else:
                v = step.backward(v, config)
        except LayoutError as exc:
            raise LayoutError(f"stage {stage!r}: layout {describe(steps)} cannot be undone for the canonical "
                              f"shape {_shape(array)}: {exc}") from None
    return tuple(np.ascontiguousarray(x) for x in v) if isinstance(v, tuple) else np.ascontiguousarray(v)


__all__ = ["COMPLEX", "Layout", "LayoutError", "NHWC", "Step", "complex_from", "describe", "drop", "layout",
           "scale", "select", "to_canonical", "to_native", "transpose", "unflatten"]
