"""Pairs: a reference side and a candidate side plus what they share.

What the two sides of a pair share: the stage list (names, canonical shapes, the inputs each
stage is computed from), the cases and suites, and the input preparation (a case -> config
dict, neutral weights, canonical batch inputs). Which side plays which role is the pair's
choice: any registered side may be the reference or the candidate, and one side may play
both (a side against itself must agree with itself exactly on a CPU).

``resolve_pair(None)`` is the default pair ``reference_tf:torch_impl``; ``resolve_pair("A:B")``
is side A as the reference and side B as the candidate over the stages and cases of the pair
the sides belong to (the registered pair that names both, else one of them; else the built-in
pair).

Pairs are registered by :func:`register_pair`, found through the entry point group
``parity.pairs`` of any installed distribution (each entry point names a Pair, or a factory
returning one; loaded only when a pair is looked up that is not registered yet), or loaded
from ``"module:object"`` by :func:`load_pair_from` (``--pair-from``).
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from . import sides as side_registry
from .stages import Stage, StageList

DEFAULT_PAIR = "reference_tf:torch_impl"
ENTRY_POINT_GROUP = "parity.pairs"
log = logging.getLogger(__name__)


class PairError(ValueError):
    """A pair that cannot be formed (unknown side, disagreeing stage lists); one line."""


@dataclass(frozen=True)
class Pair:
    """``reference`` and ``candidate`` are side names; ``stages`` the shared stage list;
    ``cases``: an object with ``get_case(name)``, ``suite(name)``, ``SUITES``, ``CASES`` and
    ``prepare(case) -> (config dict, weights, inputs)`` (the built-in pair: :mod:`parity.cases`)."""

    name: str
    reference: str
    candidate: str
    stages: Tuple[Stage, ...]
    cases: Any = field(compare=False, repr=False)
    description: str = ""
    origin: str = field(default="", compare=False)  # "module:object" it was loaded from (--pair-from)

    @property
    def stage_names(self) -> Tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    @property
    def stage_list(self) -> StageList:
        return StageList(self.stages)

    @property
    def graph(self) -> Tuple[Tuple[str, Tuple[str, ...]], ...]:
        """(stage, inputs) in pipeline order: what teacher forcing iterates over."""
        return tuple((s.name, tuple(s.inputs)) for s in self.stages)

    @property
    def spec(self) -> str:
        return f"{self.reference}:{self.candidate}"

    def side(self, role: str) -> str:
        if role not in ("reference", "candidate"):
            raise ValueError(f"role {role!r}; expected 'reference' or 'candidate'")
        return self.reference if role == "reference" else self.candidate

    def prepare(self, case):
        return self.cases.prepare(case)

    def to_dict(self) -> Dict[str, Any]:
        out = {"name": self.name, "reference": self.reference, "candidate": self.candidate,
               "stages": list(self.stage_names), "description": self.description}
        if self.origin:
            out["origin"] = self.origin
        return out

    def refusals(self, cases) -> Dict[str, Dict[str, str]]:
        """case name -> {side: reason} for the cases a side cannot express (Side.refuses)."""
        out: Dict[str, Dict[str, str]] = {}
        classes = {side: side_registry.side_class(side) for side in dict.fromkeys((self.reference, self.candidate))}
        config_of = getattr(self.cases, "config_of", None)
        for case in cases:
            config = dict(config_of(case) if config_of is not None else self.prepare(case)[0])
            for side, cls in classes.items():
                reason = cls.refuses(config, case.dtype)
                if reason:
                    out.setdefault(case.name, {})[side] = str(reason)
        return out

    def with_sides(self, reference: str, candidate: str) -> "Pair":
        return check_pair(replace(self, name=f"{reference}:{candidate}", reference=reference, candidate=candidate))


def _stage_list_of(side: str, pair_stages: Tuple[str, ...]) -> Tuple[str, ...]:
    declared = side_registry.side_class(side).stages
    return pair_stages if declared is None else tuple(declared)


def check_pair(pair: Pair) -> Pair:
    """Raise PairError unless both sides exist and emit exactly the pair's stage list."""
    names = pair.stage_names
    lists = {}
    for side in (pair.reference, pair.candidate):
        try:
            lists[side] = _stage_list_of(side, names)
        except side_registry.UnknownSide as exc:
            raise PairError(str(exc)) from None
    ref, cand = lists[pair.reference], lists[pair.candidate]
    if ref != cand:
        only_ref = [s for s in ref if s not in cand]
        only_cand = [s for s in cand if s not in ref]
        detail = []
        if only_ref:
            detail.append(f"only {pair.reference} has {only_ref}")
        if only_cand:
            detail.append(f"only {pair.candidate} has {only_cand}")
        if not detail:
            detail.append("the same stages in another order")
        raise PairError(f"sides {pair.reference} and {pair.candidate} disagree on the stage list: "
                        f"{'; '.join(detail)}")
    if ref != names:
        missing = [s for s in names if s not in ref]
        extra = [s for s in ref if s not in names]
        raise PairError(f"sides {pair.reference} and {pair.candidate} emit {list(ref)}, not the pair's stage list "
                        f"(missing {missing}, extra {extra})")
    return pair


def builtin_pair() -> Pair:
    from . import cases
    from .stages import STAGES

    return Pair(name="builtin", reference="reference_tf", candidate="torch_impl", stages=STAGES, cases=cases,
                description="our TensorFlow reference (reference_tf) and its PyTorch port (torch_impl)")


_PAIRS: Dict[str, Callable[[], Pair]] = {"builtin": builtin_pair}


def register_pair(name: str, factory: Callable[[], Pair]) -> None:
    """Register a pair under ``name`` (a factory, so nothing is built until it is used)."""
    _PAIRS[name] = factory


def pair_names() -> Tuple[str, ...]:
    _load_entry_points()
    return tuple(_PAIRS)


_ENTRY_POINTS = {"loaded": False}


def _load_entry_points() -> None:
    """Register the pairs of the ``parity.pairs`` entry points (once; registered names win)."""
    if _ENTRY_POINTS["loaded"]:
        return
    _ENTRY_POINTS["loaded"] = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _PAIRS.setdefault(ep.name, _entry_point_factory(ep))


def _entry_point_factory(ep) -> Callable[[], Pair]:
    def factory() -> Pair:
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - whatever the user's module raised, in one line
            raise PairError(f"pair {ep.name!r} (entry point {ep.value!r} in group {ENTRY_POINT_GROUP}) cannot be "
                            f"loaded: {type(exc).__name__}: {exc}") from None
        return _as_pair(obj, f"entry point {ep.name} = {ep.value!r}")

    return factory


def _as_pair(obj: Any, where: str) -> Pair:
    try:
        pair = obj if isinstance(obj, Pair) or not callable(obj) else obj()
    except PairError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise PairError(f"{where}: the pair factory raised {type(exc).__name__}: {exc}") from None
    if not isinstance(pair, Pair):
        raise PairError(f"{where} gave a {type(pair).__name__}, not a parity.pairs.Pair")
    return pair


def load_pair_from(target: str) -> Pair:
    """Import ``"module:object"`` (a Pair, or a factory returning one), register the pair under
    its name and return it; PairError (one line, with the import error) otherwise."""
    module, _, attr = (target or "").partition(":")
    if not module or not attr:
        raise PairError(f"{target!r} must be module:object (a Pair, or a function returning one)")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # noqa: BLE001 - ImportError, SyntaxError, a declaration error, ...
        raise PairError(f"{target!r} cannot be imported: {type(exc).__name__}: {exc}") from None
    pair = replace(_as_pair(obj, target), origin=target)
    register_pair(pair.name, lambda: pair)
    return check_pair(pair)


def _registered(*, entry_points: bool) -> Iterator[Pair]:
    """The registered pairs other than the built-in one (a factory that fails is skipped)."""
    if entry_points:
        _load_entry_points()
    for name, factory in list(_PAIRS.items()):
        if name == "builtin":
            continue
        try:
            yield factory()
        except Exception as exc:  # noqa: BLE001 - a broken pair must not hide the others
            log.debug("pair %s skipped: %s", name, exc)


def _home_pair(*sides: str) -> Pair:
    """The registered pair whose stages and cases two sides share: the built-in pair when it
    names every side given, else the first pair that names both, then the first that names
    one of them (the entry points are looked at when no registered pair does); the built-in
    pair when none does."""
    builtin = builtin_pair()
    wanted = set(sides)
    if wanted <= {builtin.reference, builtin.candidate}:
        return builtin
    for entry_points in (False, True):
        found = list(_registered(entry_points=entry_points))
        for test in (wanted.issubset, wanted.intersection):
            for pair in found:
                if test({pair.reference, pair.candidate}):
                    return pair
    return builtin


def resolve_pair(spec: Optional[str] = None) -> Pair:
    """``None`` -> the default pair; ``"REFERENCE:CANDIDATE"`` -> the pair those sides belong to,
    with those sides; ``"NAME"`` -> a registered pair (or one of the ``parity.pairs`` entry
    points). PairError (one line) otherwise."""
    if isinstance(spec, Pair):
        return check_pair(spec)
    spec = (spec or DEFAULT_PAIR).strip()
    if ":" in spec:
        ref, _, cand = spec.partition(":")
        if not ref or not cand or ":" in cand:
            raise PairError(f"--pair {spec!r} must be REFERENCE:CANDIDATE (two side names) or a pair name; "
                            f"sides: {', '.join(side_registry.side_names())}; pairs: {', '.join(_PAIRS)}")
        return _home_pair(ref, cand).with_sides(ref, cand)
    if spec not in _PAIRS:
        _load_entry_points()
    if spec not in _PAIRS:
        raise PairError(f"unknown pair {spec!r}; known pairs are: {', '.join(_PAIRS)} (or REFERENCE:CANDIDATE "
                        f"with sides {', '.join(side_registry.side_names())})")
    return check_pair(_as_pair(_PAIRS[spec], f"pair {spec!r}"))
