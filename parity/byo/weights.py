"""Weight maps: how one neutral weight set (name -> NumPy array) becomes a side's parameters.

A :class:`WeightMap` names, for each parameter of a side's model (its *target*: a torch
``state_dict`` name such as ``encoder.0.weight``, a Keras variable path such as
``stem_conv/kernel``), the neutral weight it takes and the transform on the way
(:func:`hwio_to_oihw`, :func:`io_to_oi`, :func:`transposed`, or any NumPy function).
``WeightMap.by_name()`` takes every parameter from the neutral weight of the same name, as
is (a Keras reference whose weights *are* the neutral set). :func:`conv2d_weights` maps Keras
``Conv2D`` layers, in the order they were created, onto torch ``Conv2d`` modules by path.

:meth:`WeightMap.transfer` checks the whole transfer before anything is set: every parameter
must be set or declared ``not_transferred``, and every neutral weight used or declared
``unused``; otherwise one :class:`WeightMapError` lists the parameters that would keep their
random initial values (and the other problems: unknown names, with the close names that do
exist, and shapes that do not fit). NumPy only.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

Transform = Callable[[np.ndarray], np.ndarray]


class WeightMapError(ValueError):
    """A transfer that would leave parameters unset, or that names what does not exist."""


def identity(a: np.ndarray) -> np.ndarray:
    return a


def hwio_to_oihw(a: np.ndarray) -> np.ndarray:
    """Keras Conv2D kernel (kh, kw, in, out) -> torch Conv2d weight (out, in, kh, kw)."""
    if np.ndim(a) != 4:
        raise ValueError(f"hwio_to_oihw needs a rank-4 kernel, got shape {np.shape(a)}")
    return np.transpose(a, (3, 2, 0, 1))


def io_to_oi(a: np.ndarray) -> np.ndarray:
    """Keras Dense kernel (in, out) -> torch Linear weight (out, in)."""
    if np.ndim(a) != 2:
        raise ValueError(f"io_to_oi needs a rank-2 kernel, got shape {np.shape(a)}")
    return np.transpose(a)


def transposed(*perm: int) -> Transform:
    """A transform that transposes axes by ``perm``."""

    def transform(a: np.ndarray) -> np.ndarray:
        return np.transpose(a, perm)

    transform.__name__ = f"transposed{tuple(perm)}"
    return transform


@dataclass(frozen=True)
class Entry:
    target: str
    source: str
    transform: Transform = identity
    optional: bool = False  # skipped when neither the target nor the source exists (a conv without bias)


def _close(name: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.5)
    return f" (close names: {', '.join(close)})" if close else ""


def _listing(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


class WeightMap:
    """``entries``: target -> neutral name, or target -> (neutral name, transform).
    ``not_transferred``: parameters deliberately left as the model built them; ``unused``:
    neutral weights this side does not take."""

    def __init__(self, entries: Optional[Mapping[str, Union[str, Tuple[str, Transform]]]] = None, *,
                 not_transferred: Sequence[str] = (), unused: Sequence[str] = (), same_names: bool = False,
                 _entries: Sequence[Entry] = ()):
        out: List[Entry] = list(_entries)
        for target, spec in (entries or {}).items():
            source, transform = (spec, identity) if isinstance(spec, str) else tuple(spec)
            if not callable(transform):
                raise ValueError(f"weight map entry {target!r}: the transform {transform!r} is not callable")
            out.append(Entry(target, source, transform))
        seen = [e.target for e in out]
        twice = sorted({t for t in seen if seen.count(t) > 1})
        if twice:
            raise ValueError(f"weight map sets parameter(s) {twice} more than once")
        self.entries: Tuple[Entry, ...] = tuple(out)
        self.not_transferred = tuple(not_transferred)
        self.unused = tuple(unused)
        self.same_names = bool(same_names)

    @classmethod
    def by_name(cls, **kw) -> "WeightMap":
        """Every parameter takes the neutral weight of its own name, as is."""
        return cls(same_names=True, **kw)

    def __add__(self, other: "WeightMap") -> "WeightMap":
        return WeightMap(_entries=self.entries + other.entries,
                         not_transferred=self.not_transferred + other.not_transferred,
                         unused=self.unused + other.unused, same_names=self.same_names or other.same_names)

    def transfer(self, neutral: Mapping[str, np.ndarray], targets: Mapping[str, Tuple[int, ...]], *, side: str,
                 required: Optional[Iterable[str]] = None) -> Dict[str, np.ndarray]:
        """target -> array for every parameter set; raises WeightMapError listing every problem.

        ``targets``: the model's settable tensors and their shapes; ``required``: those that
        must be set (default: all of them)."""
        required = list(targets if required is None else required)
        problems: List[str] = []
        out: Dict[str, np.ndarray] = {}
        used, tried = set(), set()
        for e in self.entries:
            if e.optional and e.target not in targets and e.source not in neutral:
                continue
            tried.add(e.target)
            if e.target not in targets:
                problems.append(f"the map sets {e.target!r}, which side {side}'s model does not have"
                                f"{_close(e.target, targets)}")
                continue
            if e.source not in neutral:
                problems.append(f"parameter {e.target!r} takes neutral weight {e.source!r}, which the weight set "
                                f"does not hold{_close(e.source, neutral)}")
                continue
            value = _apply(e, neutral[e.source], targets[e.target], problems)
            used.add(e.source)
            if value is not None:
                out[e.target] = value
        if self.same_names:
            for target, shape in targets.items():
                if target not in out and target in neutral and target not in self.not_transferred:
                    value = _apply(Entry(target, target), neutral[target], shape, problems)
                    used.add(target)
                    if value is not None:
                        out[target] = value
        unknown_skip = [t for t in self.not_transferred if t not in targets]
        if unknown_skip:
            problems.append(f"not_transferred names {unknown_skip}, which side {side}'s model does not have"
                            f"{_close(unknown_skip[0], targets)}")
        left = [t for t in required if t not in out and t not in tried and t not in self.not_transferred]
        if left:
            problems.insert(0, f"{len(left)} parameter(s) of side {side} would keep their random initial values: "
                               f"{_listing(left)}; map them (weights=...) or declare them not_transferred=(...)")
        spare = [n for n in neutral if n not in used and n not in self.unused]
        if spare:
            problems.append(f"neutral weight(s) used by no parameter of side {side}: {_listing(spare)}; map them "
                            f"or declare them unused=(...)")
        if problems:
            raise WeightMapError("; ".join(problems))
        return out


def _apply(e: Entry, value: np.ndarray, shape: Tuple[int, ...], problems: List[str]) -> Optional[np.ndarray]:
    try:
        out = np.asarray(e.transform(np.asarray(value)))
    except Exception as exc:  # noqa: BLE001 - reported with the entry
        problems.append(f"parameter {e.target!r}: {getattr(e.transform, '__name__', 'transform')} of {e.source!r} "
                        f"{np.shape(value)} failed: {exc}")
        return None
    if tuple(out.shape) != tuple(shape):
        how = "" if e.transform is identity else f", {tuple(out.shape)} after {e.transform.__name__}"
        problems.append(f"parameter {e.target!r} is {tuple(shape)} but neutral weight {e.source!r} is "
                        f"{tuple(np.shape(value))}{how}")
        return None
    return np.ascontiguousarray(out)


def conv2d_weights(keras_layers: Sequence[str], torch_modules: Sequence[str], *, kernel: str = "kernel",
                   bias: str = "bias") -> WeightMap:
    """Keras Conv2D layers (by name, in creation order) onto torch Conv2d modules (by path), one
    to one: ``<module>.weight`` <- ``<layer>/kernel`` (HWIO -> OIHW), ``<module>.bias`` <-
    ``<layer>/bias`` (where both have a bias)."""
    keras_layers, torch_modules = list(keras_layers), list(torch_modules)
    if len(keras_layers) != len(torch_modules):
        raise ValueError(f"conv2d_weights: {len(keras_layers)} Keras layers {keras_layers} but {len(torch_modules)} "
                         f"torch modules {torch_modules}; they are paired one to one, in order")
    entries = []
    for k, t in zip(keras_layers, torch_modules):
        prefix = f"{t}." if t else ""
        entries.append(Entry(f"{prefix}weight", f"{k}/{kernel}", hwio_to_oihw))
        entries.append(Entry(f"{prefix}bias", f"{k}/{bias}", identity, optional=True))
    return WeightMap(_entries=entries)


__all__ = ["Entry", "WeightMap", "WeightMapError", "conv2d_weights", "hwio_to_oihw", "identity", "io_to_oi",
           "transposed"]
