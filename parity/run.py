"""Run one case through a pair and compare: captures -> CaseResult.

``run_case("n64_g2")`` runs the pair's reference side, then its candidate side teacher-forced
with the reference's stages (local error), and compares the two with the tolerance table.
``tolerance_mode="noise_floor"`` (default: the case's own mode) runs the reference side in
float64 and float32 and gates the candidate's float32 error at k x the reference's own.
The plan is one :meth:`parity.engine.Plan.add_case`; :class:`parity.engine.Engine` executes
it in this process (``isolation="inprocess"``), in one long-lived worker per side
(``"workers"``) or in a fresh process per job (``"subprocess"``): identical numbers.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

from . import cases as case_registry
from .capture import Capture
from .results import CaseResult
from .engine import ISOLATIONS, TOLERANCE_MODES, Engine, Outcome
from .pairs import Pair, resolve_pair
from .pool import DEFAULT_JOB_TIMEOUT
from .tolerances import NOISE_FLOOR_K, ToleranceTable, load_tolerances

log = logging.getLogger(__name__)

__all__ = ["CaseRun", "ISOLATIONS", "TOLERANCE_MODES", "case_run", "run_case"]


@dataclass
class CaseRun:
    """Everything one case produced: the verdict and the captures it was decided from."""

    case: case_registry.Case
    result: CaseResult
    reference: Capture  # the capture the candidate was compared against
    candidate: Capture
    local: Optional[Dict[str, object]] = None
    extra: Dict[str, Capture] = field(default_factory=dict)  # e.g. the float32 reference in noise-floor mode
    timings: Dict[str, float] = field(default_factory=dict)
    backward: Optional[object] = None  # task="backward": the parity.backward.BackwardResult
    gradients: Dict[str, Dict[str, object]] = field(default_factory=dict)  # task="backward": role -> gradients

    @property
    def port(self) -> Capture:  # the built-in pair's name for the candidate
        return self.candidate

    def __bool__(self) -> bool:
        return bool(self.result)


def case_run(case, outcome: Outcome) -> CaseRun:
    """A CaseRun from a decided comparison; raises the failure of a node that did not run."""
    if outcome.result is None:
        exc = outcome.exception
        if exc is not None and not isinstance(exc, Exception):
            raise exc
        raise exc if exc is not None else RuntimeError(outcome.error)
    if outcome.error is not None:  # a crash part-way through a forward pass
        raise outcome.exception if isinstance(outcome.exception, Exception) else RuntimeError(outcome.error)
    out = outcome.outputs
    timings = {"prepare_s": outcome.timings.get("prepare_s", 0.0), "compare_s": outcome.timings.get("compare_s", 0.0)}
    for role, jr in out.items():
        for k, v in jr.timings.items():
            timings[f"{role}_{k}"] = v
    extra = {role: jr.capture for role, jr in out.items() if role not in ("reference", "candidate")}
    return CaseRun(case=case, result=outcome.result, reference=out["reference"].capture,
                   candidate=out["candidate"].capture, local=outcome.local, extra=extra, timings=timings,
                   backward=outcome.backward,
                   gradients={role: jr.gradients for role, jr in out.items() if jr.gradients is not None})


def run_case(
    case: Union[str, case_registry.Case],
    *,
    dtype: Optional[str] = None,
    device: str = "cpu",
    tolerances: Optional[Union[ToleranceTable, str, Path]] = None,
    tolerance_mode: Optional[str] = None,
    noise_floor_k: float = NOISE_FLOOR_K,
    isolation: str = "inprocess",
    teacher_forcing: bool = True,
    pool=None,
    engine: Optional[Engine] = None,
    pair: Union[None, str, Pair] = None,
    faults: Sequence[str] = (),
    job_timeout: Optional[float] = DEFAULT_JOB_TIMEOUT,
    task: str = "forward",
) -> CaseRun:
    """Run one case on both sides of ``pair`` (default ``reference_tf:torch_impl``) and compare
    them stage by stage.

    ``engine``: an :class:`parity.engine.Engine` to run on (its pair and isolation win); else
    one is made for this case (``pool``: a :class:`parity.pool.WorkerPool` it uses). ``faults``:
    names from :mod:`parity.faults` injected into the candidate while it runs. ``task="backward"``:
    every run also computes the gradients of both losses, and ``run.backward`` holds their
    comparison (:mod:`parity.backward`; docs/backward.md).
    """
    pair = engine.pair if engine is not None else resolve_pair(pair)
    if isinstance(case, str):
        case = pair.cases.get_case(case)
    if dtype is not None and dtype != case.dtype:
        case = case.with_(dtype=dtype)
    if isolation not in ISOLATIONS:
        raise ValueError(f"isolation={isolation!r}; expected one of {list(ISOLATIONS)}")
    if tolerance_mode is not None and tolerance_mode not in TOLERANCE_MODES:
        raise ValueError(f"tolerance_mode={tolerance_mode!r}; expected one of {list(TOLERANCE_MODES)}")
    if not isinstance(tolerances, ToleranceTable):
        tolerances = load_tolerances(tolerances)
    own = engine is None
    if own:
        engine = Engine(pair, isolation=isolation, pool=pool, job_timeout=job_timeout)
    try:
        plan = engine.plan()
        plan.add_case(case, device=device, tolerances=tolerances, tolerance_mode=tolerance_mode,
                      noise_floor_k=noise_floor_k, teacher_forcing=teacher_forcing, faults=faults,
                      meta={"isolation": engine.isolation}, task=task)
        (outcome,) = engine.run(plan)
    finally:
        if own:
            engine.close()
    run = case_run(case, outcome)
    log.info("case %s: %s (first divergent stage %s)", case.name, run.result.verdict,
             run.result.first_divergent_stage)
    return run
