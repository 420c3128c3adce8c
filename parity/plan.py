"""Plans: the runs a comparison needs and the comparisons between their captures.

A :class:`Plan` holds *nodes* and *comparisons*. A node is a :class:`Run` (one side, one case,
dtype, device, faults, and optionally a teacher: the node whose stages it is teacher-forced
with) or a :class:`Stored` capture file (a recheck runs no model). A :class:`Comparison` names
the reference node, the candidate node, where the local (teacher-forced) stages come from and
the tolerances: a tolerance table, or a :class:`NoiseFloor` (the reference side's own float32
error against its float64 run, times k). Node keys are built from their content, so two
comparisons that need the same run share one node. :meth:`Plan.add_case` is the one place that
decides the noise floor (:func:`uses_noise_floor`) and wires teacher forcing. An
:class:`Outcome` is a decided comparison (parity.engine executes plans).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .jobs import JobResult
from .pairs import Pair
from .results import CaseResult
from .tolerances import NOISE_FLOOR_K

TOLERANCE_MODES = ("table", "noise_floor")


def uses_noise_floor(mode: Optional[str], dtype: str) -> bool:
    """The one noise-floor decision: noise_floor mode applies to float32 cases only (a float64
    case is its own oracle and is judged by the table)."""
    if mode is not None and mode not in TOLERANCE_MODES:
        raise ValueError(f"tolerance_mode={mode!r}; expected one of {list(TOLERANCE_MODES)}")
    return mode == "noise_floor" and dtype == "float32"



# ------------------------------------------------------------------------------------ plan
@dataclass(frozen=True)
class Run:
    """One job of a plan: ``side`` runs ``case`` (a case object of the pair) in ``dtype`` on
    ``device`` with ``faults``; ``teacher``: key of the node whose stages teach this run."""

    role: str
    side: str
    case: Any
    dtype: str
    device: str = "cpu"
    faults: Tuple[str, ...] = ()
    teacher: Optional[str] = None
    allow_tf32: bool = False
    repeats: int = 1
    task: str = "forward"  # parity.jobs.Job.task
    losses: Tuple[str, ...] = ()  # backward: the losses differentiated (() -> all)

    @property
    def key(self) -> str:
        k = f"{self.role}:{self.side}/{self.case.name}/{self.dtype}/{self.device}"
        if self.allow_tf32:
            k += "+tf32"
        if self.task != "forward":
            k += f"+{self.task}" + "".join(f"+{x}" for x in self.losses)
        if self.faults:
            k += "+" + "+".join(self.faults)
        if self.teacher:
            k += f"<{self.teacher}>"
        return k

    @property
    def label(self) -> str:
        extra = f" faults {','.join(self.faults)}" if self.faults else ""
        return f"{self.role} {self.case.name} {self.dtype} {self.device}{' tf32' if self.allow_tf32 else ''}{extra}"

    @property
    def deps(self) -> Tuple[str, ...]:
        return (self.teacher,) if self.teacher else ()


@dataclass(frozen=True)
class Stored:
    """A capture read from a file (a recheck): ``role`` names it in the outcome."""

    role: str
    path: Path

    @property
    def key(self) -> str:
        return f"stored:{self.role}:{self.path}"

    @property
    def label(self) -> str:
        return f"stored {self.role} capture {self.path}"

    deps: Tuple[str, ...] = ()


Node = Union[Run, Stored]


@dataclass(frozen=True)
class NoiseFloor:
    """Tolerances from the reference side's own float32 error against its float64 run."""

    oracle: str  # node key of the float64 run
    float32: str  # node key of the float32 run
    k: float = NOISE_FLOOR_K


@dataclass
class Comparison:
    """Compare node ``candidate`` against node ``reference``; ``local``: the node whose local
    (teacher-forced) stages label root causes (the candidate run: its ``local``; a stored node:
    its stages); ``tolerance``: a ToleranceTable, ``{stage: Tolerance}`` or a NoiseFloor."""

    key: str
    case: str
    dtype: str
    device: str
    reference: str
    candidate: str
    tolerance: Any
    local: Optional[str] = None
    extra: Tuple[str, ...] = ()  # further nodes the outcome carries (e.g. the float32 reference)
    meta: Dict[str, Any] = field(default_factory=dict)  # copied into result.meta
    tag: Any = None  # the caller's
    task: str = "forward"  # "backward": the outcome also compares the gradients (outcome.backward)

    @property
    def nodes(self) -> Tuple[str, ...]:
        keys = [self.reference, self.candidate, *self.extra]
        if isinstance(self.tolerance, NoiseFloor):
            keys += [self.tolerance.oracle, self.tolerance.float32]
        if self.local:
            keys.append(self.local)
        return tuple(dict.fromkeys(keys))


@dataclass
class Plan:
    pair: Pair
    nodes: "OrderedDict[str, Node]" = field(default_factory=OrderedDict)
    comparisons: List[Comparison] = field(default_factory=list)

    def add(self, node: Node) -> str:
        self.nodes.setdefault(node.key, node)
        return node.key

    def compare(self, comparison: Comparison) -> Comparison:
        missing = [k for k in comparison.nodes if k not in self.nodes]
        if missing:
            raise ValueError(f"comparison {comparison.key}: unknown node(s) {missing}")
        self.comparisons.append(comparison)
        return comparison

    def add_case(self, case, *, device: str = "cpu", tolerances: Any, tolerance_mode: Optional[str] = None,
                 noise_floor_k: float = NOISE_FLOOR_K, teacher_forcing: bool = True, faults: Sequence[str] = (),
                 reference_faults: Sequence[str] = (), key: Optional[str] = None, tag: Any = None,
                 meta: Optional[Dict[str, Any]] = None, task: str = "forward",
                 losses: Sequence[str] = ()) -> Comparison:
        """The comparison of one case: the reference side's run (or, under the noise floor, its
        float64 and float32 runs) and the candidate side's run, teacher-forced with the
        reference it is compared against. ``task="backward"``: every run also computes the
        gradients of ``losses`` (default all), and the candidate its local backward."""
        mode = tolerance_mode or getattr(case, "tolerance_mode", "table")
        noise = uses_noise_floor(mode, case.dtype)
        ref_side, cand_side = self.pair.reference, self.pair.candidate
        rf = tuple(reference_faults)
        bw = {} if task == "forward" else {"task": task, "losses": tuple(losses)}
        if noise:
            oracle = self.add(Run("reference", ref_side, case, "float64", "cpu" if device == "cpu" else device, rf, **bw))
            ref32 = self.add(Run("reference_float32", ref_side, case, "float32", device, rf, **bw))
            reference, tol, extra = oracle, NoiseFloor(oracle, ref32, noise_floor_k), (ref32,)
        else:
            reference = self.add(Run("reference", ref_side, case, case.dtype, device, rf, **bw))
            tol, extra = tolerances, ()
        candidate = self.add(Run("candidate", cand_side, case, case.dtype, device, tuple(faults),
                                 reference if teacher_forcing else None, **bw))
        info = {"tolerance_mode": "noise_floor" if noise else "table", "faults": list(faults),
                "pair": self.pair.spec, **(meta or {})}
        return self.compare(Comparison(key=key or case.name, case=case.name, dtype=case.dtype, device=device,
                                       reference=reference, candidate=candidate, tolerance=tol,
                                       local=candidate if teacher_forcing else None, extra=extra, meta=info,
                                       tag=tag, task=task))


@dataclass
class Outcome:
    """A decided comparison: ``result`` (None when a node failed: then ``error`` says which
    side, job and why, and ``exception`` is the original), and the nodes' outputs by role."""

    comparison: Comparison
    result: Optional[CaseResult]
    outputs: Dict[str, JobResult]  # role -> output ("reference", "candidate", "reference_float32", ...)
    error: Optional[str] = None
    exception: Optional[BaseException] = None
    errors: List[Dict[str, Any]] = field(default_factory=list)  # JobError.to_dict() of each failed node
    timings: Dict[str, float] = field(default_factory=dict)
    nodes: Dict[str, JobResult] = field(default_factory=dict)  # node key -> output (for Engine.run(reuse=))
    backward: Any = None  # a backward comparison: its parity.backward.BackwardResult

    @property
    def local(self) -> Optional[Dict[str, Any]]:
        c = self.comparison
        if c.local is None:
            return None
        out = self.outputs.get(role_of(c.local))
        if out is None:
            return None
        return out.local if c.local == c.candidate else out.capture.stages

    def __bool__(self) -> bool:
        return self.result is not None and bool(self.result)


def role_of(key: str) -> str:
    """The role a node key names (``reference:...``, ``stored:candidate:...``)."""
    return key.split(":", 2)[1] if key.startswith("stored:") else key.split(":", 1)[0]
