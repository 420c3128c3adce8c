"""The fault mechanism: the :class:`Fault` record, applicability predicates, and the context
managers that apply faults by monkeypatching ``torch_impl`` and undo them.

A fault's ``patches()`` returns ``(owner, attribute, new value)`` triples; :func:`inject` sets
them on entry and restores every one on exit, in reverse order, also when the block raises.
:func:`snapshot` records the identity of every attribute of the torch_impl modules and classes,
so tests can check that nothing was left patched. No framework is imported here.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Sequence, Tuple

from .. import fixtures as fixture_store
from ..stages import BY_NAME, STAGE_NAMES

#: Stages computed by the generator network; a fault with ``network=False`` leaves them alone.
NETWORK_STAGES = ("latent", "amp", "phase")
#: The side whose code the faults patch (a self-test of another pair runs its false-alarm check only).
PATCHED_SIDE = "torch_impl"

_MISSING = object()


class UnknownFault(KeyError):
    """An unknown fault name; ``str()`` is the one-line message (names every known fault)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


# ---------------------------------------------------------------------------------------------
# applicability predicates
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Applies:
    """A predicate over a case, with the text that says what it requires."""

    text: str
    test: Callable[[object], bool]

    def __call__(self, case) -> bool:
        return bool(self.test(case))

    def __and__(self, other: "Applies") -> "Applies":
        return Applies(f"{self.text} and {other.text}", lambda c: self(c) and other(c))

    def __or__(self, other: "Applies") -> "Applies":
        return Applies(f"({self.text} or {other.text})", lambda c: self(c) or other(c))


def config_is(text: str, fn: Callable[[object], bool]) -> Applies:
    """Predicate on the case's model config (reference_tf ModelConfig: same fields as the port's)."""
    return Applies(text, lambda case: fn(case.config))


#: Input variants (parity.cases.VARIANTS) that replace the fixture's offsets, and the kind they give.
_VARIANT_OFFSETS = {"half_pixel": "subpixel", "canvas_edge": "subpixel"}


def offsets_kind(case) -> str:
    """The kind of offsets a case feeds (its fixture's, unless an input variant replaces them)."""
    variant = getattr(case, "variant", None)
    if variant in _VARIANT_OFFSETS:
        return _VARIANT_OFFSETS[variant]
    return fixture_store.get_spec(case.fixture).offsets_kind


def offsets_are(*kinds: str) -> Applies:
    return Applies(f"offsets {'/'.join(kinds)}", lambda case: offsets_kind(case) in kinds)


ANY = Applies("every case", lambda case: True)
OBJECT_BIG = config_is("object_big", lambda c: c.object_big)
GRID = config_is("gridsize >= 2", lambda c: c.gridsize >= 2)
FLOAT64 = Applies("float64", lambda case: case.dtype == "float64")


# ---------------------------------------------------------------------------------------------
# the fault record and the context manager
# ---------------------------------------------------------------------------------------------
Patch = Tuple[object, str, object]  # (module or class, attribute name, new value)
#: "forward": the fault changes a forward stage; "backward": only gradients (see :mod:`.backward`).
FAULT_KINDS = ("forward", "backward")
#: The loss stages whose gradient a backward fault can be seen in.
LOSS_STAGES = ("loss_nll", "loss_mae")


@dataclass(frozen=True)
class Fault:
    """One named, documented, reversible bug of the port.

    ``patches()`` returns the ``(owner, attribute, new value)`` triples to apply; it is called
    on entry to :func:`inject`, so a patch may wrap whatever the attribute holds then.
    ``must_show``: case names where the fault must be caught (checked when those cases run).

    ``kind``: ``"forward"`` (a forward stage goes wrong first: ``expected_stage``) or
    ``"backward"`` (the forward is bit for bit the clean port's; ``expected_stage`` is the
    adjoint stage whose gradient goes wrong first in reverse pipeline order, ``expected_weight``
    the neutral weight whose gradient goes wrong before any stage's, if one does, and
    ``losses`` the losses whose gradient shows it; see :mod:`.backward`).
    """

    name: str
    description: str
    expected_stage: str
    patches: Callable[[], List[Patch]]
    applies: Applies = ANY
    network: bool = True
    upstream: str = ""
    must_show: Tuple[str, ...] = ()
    notes: str = ""
    kind: str = "forward"
    expected_weight: str = ""
    losses: Tuple[str, ...] = ("loss_nll", "loss_mae")

    def __post_init__(self) -> None:
        if self.expected_stage not in BY_NAME:
            raise ValueError(f"fault {self.name}: unknown expected stage {self.expected_stage!r}; "
                             f"known stages are {list(STAGE_NAMES)}")
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault {self.name}: kind must be one of {list(FAULT_KINDS)}, got {self.kind!r}")
        if self.kind == "forward" and self.expected_weight:
            raise ValueError(f"fault {self.name}: expected_weight is for backward faults only")
        bad = [loss for loss in self.losses if loss not in LOSS_STAGES]
        if bad or not self.losses:
            raise ValueError(f"fault {self.name}: losses must be a non-empty subset of {list(LOSS_STAGES)}, "
                             f"got {list(self.losses)}")

    @property
    def backward_only(self) -> bool:
        """True for a fault whose forward is exactly the clean port's (only gradients differ)."""
        return self.kind == "backward"

    def applicable(self, case) -> bool:
        return self.applies(case)

    def to_dict(self) -> Dict[str, object]:
        return {"name": self.name, "description": self.description, "expected_stage": self.expected_stage,
                "applies_to": self.applies.text, "network": self.network, "upstream": self.upstream,
                "must_show": list(self.must_show), "notes": self.notes, "kind": self.kind,
                "expected_weight": self.expected_weight, "losses": list(self.losses)}


def stored(owner, attr: str):
    """The attribute as stored on ``owner`` itself (raw function/property for a class)."""
    return vars(owner).get(attr, _MISSING)


def _resolve(fault) -> "Fault":
    """A Fault, or the catalogue's fault of that name (UnknownFault when there is none)."""
    if isinstance(fault, str):
        from .catalogue import get_fault  # the catalogue is built from this module

        return get_fault(fault)
    return fault


@contextlib.contextmanager
def inject(fault) -> Iterator["Fault"]:
    """Apply a fault (a :class:`Fault` or its name) for the duration of the ``with`` block.

    Every patched attribute is restored on exit, in reverse order, also when the block raises
    (and when applying a later patch of the same fault fails half way).
    """
    fault = _resolve(fault)
    saved: List[Tuple[object, str, object]] = []
    try:
        for owner, attr, new in fault.patches():
            old = stored(owner, attr)
            if old is _MISSING:
                raise AttributeError(f"fault {fault.name}: {getattr(owner, '__name__', owner)!s} has no attribute "
                                     f"{attr!r} to patch")
            saved.append((owner, attr, old))
            setattr(owner, attr, new)
        yield fault
    finally:
        for owner, attr, old in reversed(saved):
            setattr(owner, attr, old)


@contextlib.contextmanager
def inject_all(names: Sequence) -> Iterator[List["Fault"]]:
    """Apply several faults (names or :class:`Fault`) at once; every name is checked before any
    patch is applied, and all are undone on exit (in reverse order)."""
    resolved = [_resolve(f) for f in names]
    with contextlib.ExitStack() as stack:
        for fault in resolved:
            stack.enter_context(inject(fault))
        yield resolved


def snapshot() -> Dict[Tuple[str, str], object]:
    """Identity of every attribute of the torch_impl modules and of their classes' namespaces.

    Two snapshots are equal (``a[k] is b[k]`` for every key) when nothing was left patched.
    """
    import importlib

    out: Dict[Tuple[str, str], object] = {}
    for modname in ("torch_impl.physics", "torch_impl.network", "torch_impl.model", "torch_impl.weights",
                    "torch_impl.config", "torch_impl"):
        mod = importlib.import_module(modname)
        for attr, value in list(vars(mod).items()):
            out[(modname, attr)] = value
            if isinstance(value, type) and value.__module__.startswith("torch_impl"):
                for cattr, cvalue in list(vars(value).items()):
                    out[(f"{value.__module__}.{value.__qualname__}", cattr)] = cvalue
    return out
