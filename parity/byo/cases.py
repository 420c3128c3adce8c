"""Cases of a declared pair: small batches generated from a seed, no fixture files.

:class:`SeededCases` is the ``cases`` object a :class:`parity.pairs.Pair` needs (``get_case``,
``suite``, ``SUITES``, ``CASES``, ``prepare``) for a pair whose inputs and weights come from
two NumPy functions of the user's::

    inputs(config, seed, batch) -> {batch input name: canonical array}
    weights(config, seed)       -> {neutral weight name: array}

Inputs are handed to both sides in float64 / complex128 (each side casts them to its run
precision), exactly as the built-in pair's. NumPy only.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Mapping, Tuple

import numpy as np

SUITES = ("default", "nightly")


class Config(dict):
    """A case's model config: a plain dict that also answers ``to_dict()``."""

    def to_dict(self) -> Dict[str, Any]:
        return dict(self)


@dataclass(frozen=True)
class SeededCase:
    """One case: ``model`` (the config: keyword arguments of the user's model builders, as
    sorted pairs), ``seed`` (inputs and weights), ``batch``, ``dtype``; ``suites``: default
    cases are in every suite, others in ``nightly`` only."""

    name: str
    model: Tuple[Tuple[str, Any], ...] = ()
    seed: int = 0
    batch: int = 2
    dtype: str = "float32"
    suites: Tuple[str, ...] = ("default",)
    covers: str = ""
    tolerance_mode: str = "table"

    # what the report's provenance reads from a case
    fixture: str = ""  # none: the inputs are generated from the seed

    @property
    def input_seed(self) -> int:
        return self.seed

    @property
    def weights(self) -> str:
        return f"seed:{self.seed}"

    @property
    def config(self) -> Config:
        return Config(self.model)

    def with_(self, **changes) -> "SeededCase":
        """A variant, renamed to say so; ``input_seed`` (what the self-test's false-alarm check
        varies) sets the seed, which here draws the weights as well as the inputs."""
        if "input_seed" in changes:
            changes["seed"] = changes.pop("input_seed")
        suffix = "".join(f"@{k}={v}" for k, v in changes.items() if k not in ("name", "suites"))
        changes.setdefault("name", self.name + suffix)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "config": dict(self.model), "seed": self.seed, "batch": self.batch,
                "dtype": self.dtype, "suites": list(self.suites), "covers": self.covers,
                "tolerance_mode": self.tolerance_mode}


def case(name: str, *, seed: int = 0, batch: int = 2, dtype: str = "float32", suites: Iterable[str] = ("default",),
         covers: str = "", tolerance_mode: str = "table", **config: Any) -> SeededCase:
    """A seeded case; keyword arguments beyond these are the model config."""
    if dtype not in ("float32", "float64"):
        raise ValueError(f"case {name!r}: dtype {dtype!r}; expected float32 or float64")
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"case {name!r}: batch must be a positive integer, got {batch!r}")
    bad = [s for s in suites if s not in SUITES]
    if bad:
        raise ValueError(f"case {name!r}: unknown suite(s) {bad}; allowed are {list(SUITES)}")
    return SeededCase(name, tuple(sorted(config.items())), int(seed), batch, dtype, tuple(suites), covers,
                      tolerance_mode)


def _wide(a: Any) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind == "c":
        return a.astype(np.complex128)
    if a.dtype.kind in "fiub":
        return a.astype(np.float64)
    raise ValueError(f"an input must be numeric, got dtype {a.dtype}")


class SeededCases:
    """The cases of one declared pair (``Pair.cases``)."""

    SUITES = SUITES

    def __init__(self, cases: Iterable[SeededCase], *, inputs: Callable[..., Mapping[str, Any]],
                 weights: Callable[..., Mapping[str, Any]]):
        self._cases = tuple(cases)
        if not self._cases:
            raise ValueError("a pair needs at least one case")
        names = [c.name for c in self._cases]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"case name(s) {twice} given more than once")
        self.CASES: Dict[str, SeededCase] = {c.name: c for c in self._cases}
        self._inputs, self._weights = inputs, weights

    def get_case(self, name: str) -> SeededCase:
        try:
            return self.CASES[name]
        except KeyError:
            raise KeyError(f"unknown case {name!r}; known cases are {sorted(self.CASES)}") from None

    def suite(self, name: str) -> Tuple[SeededCase, ...]:
        if name not in SUITES:
            raise ValueError(f"unknown suite {name!r}; expected one of {list(SUITES)}")
        return tuple(c for c in self._cases if name == "nightly" or name in c.suites)

    def prepare(self, case: SeededCase) -> Tuple[Dict[str, Any], Dict[str, np.ndarray], Dict[str, np.ndarray]]:
        """(config dict, neutral weights, canonical float64 inputs) of a case."""
        config = dict(case.model)
        inputs = {k: _wide(v) for k, v in self._inputs(dict(config), case.seed, case.batch).items()}
        weights = {k: np.asarray(v) for k, v in self._weights(dict(config), case.seed).items()}
        return config, weights, inputs


__all__ = ["Config", "SUITES", "SeededCase", "SeededCases", "case"]
