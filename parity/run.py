"""Run a case through both backends and compare: captures -> CaseResult.

``run_case("n64_g2")`` runs the TensorFlow reference, then the PyTorch port with the
reference's stages as teacher (local error), and compares the two with the tolerance table.
``tolerance_mode="noise_floor"`` (default: the case's own mode) also runs the reference in float64 and gates the port's
float32 error against k x the reference's own float32 error (parity.tolerances).

Each backend runs in this process (``isolation="inprocess"``), in one long-lived worker
process per backend (``"workers"``: imports once, no thread-pool contention between the two
frameworks; what the report uses) or in a fresh process per job (``"subprocess"``).
Captures travel between processes as .npz; all three give identical numbers.
"""
from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

from . import cases as case_registry
from .adapters.base import Job, JobResult, execute
from .capture import Capture
from .compare import CaseResult, compare
from .tolerances import NOISE_FLOOR_K, ToleranceTable, load_tolerances, noise_floor_tolerances

log = logging.getLogger(__name__)

REFERENCE, PORT = "tf", "torch"
ISOLATIONS = ("inprocess", "workers", "subprocess")
TOLERANCE_MODES = ("table", "noise_floor")


@dataclass
class CaseRun:
    """Everything one case produced: the verdict and the captures it was decided from."""

    case: case_registry.Case
    result: CaseResult
    reference: Capture  # the capture the port was compared against
    port: Capture
    local: Optional[Dict[str, object]] = None
    extra: Dict[str, Capture] = field(default_factory=dict)  # e.g. the float32 reference in noise-floor mode
    timings: Dict[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.result)


def _execute(job: Job, isolation: str, workdir: Optional[Path], pool=None) -> JobResult:
    if isolation == "inprocess":
        return execute(job)
    if isolation == "workers":
        return pool.run(job)
    from .adapters.worker import run_in_subprocess

    if workdir is None:
        with tempfile.TemporaryDirectory(prefix=f"parity-{job.backend}-") as tmp:
            return run_in_subprocess(job, Path(tmp))
    return run_in_subprocess(job, workdir / f"{job.backend}-{job.dtype}-{job.device}")


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
    workdir: Optional[Path] = None,
    pool=None,
    faults: Sequence[str] = (),
) -> CaseRun:
    """Run one case on both backends and compare them stage by stage.

    ``pool``: a :class:`parity.adapters.worker.WorkerPool` for ``isolation="workers"`` (one
    is started and closed for this case when none is given). ``faults``: names from
    :mod:`parity.faults` injected into the port while it runs (self-tests, planted failures).
    """
    if isolation == "workers" and pool is None:
        from .adapters.worker import WorkerPool

        with tempfile.TemporaryDirectory(prefix="parity-workers-") as tmp, WorkerPool(Path(tmp)) as own:
            return run_case(case, dtype=dtype, device=device, tolerances=tolerances, tolerance_mode=tolerance_mode,
                            noise_floor_k=noise_floor_k, isolation=isolation, teacher_forcing=teacher_forcing,
                            workdir=workdir, pool=own, faults=faults)
    if isinstance(case, str):
        case = case_registry.get_case(case)
    if dtype is not None and dtype != case.dtype:
        case = case.with_(dtype=dtype)
    if isolation not in ISOLATIONS:
        raise ValueError(f"isolation={isolation!r}; expected one of {list(ISOLATIONS)}")
    tolerance_mode = tolerance_mode or case.tolerance_mode
    if tolerance_mode not in TOLERANCE_MODES:
        raise ValueError(f"tolerance_mode={tolerance_mode!r}; expected one of {list(TOLERANCE_MODES)}")
    if not isinstance(tolerances, ToleranceTable):
        tolerances = load_tolerances(tolerances)

    t0 = time.perf_counter()
    config, weights, inputs = case_registry.prepare(case)
    timings = {"prepare_s": time.perf_counter() - t0}

    def job(backend, dt, teacher=None):
        return Job(backend=backend, config=config, weights=weights, inputs=inputs, dtype=dt, device=device,
                   case=case.name, teacher=teacher, faults=tuple(faults) if backend == PORT else ())

    extra: Dict[str, Capture] = {}
    extra_timings: Dict[str, float] = {}
    noise_floor = tolerance_mode == "noise_floor" and case.dtype == "float32"
    if noise_floor:
        oracle = _execute(job(REFERENCE, "float64"), isolation, workdir, pool)
        ref32 = _execute(job(REFERENCE, "float32"), isolation, workdir, pool)
        extra["reference_float32"] = ref32.capture
        extra_timings = {f"reference_float32_{k}": v for k, v in ref32.timings.items()}
        reference = oracle
        tol = noise_floor_tolerances(oracle.capture, ref32.capture, k=noise_floor_k)
    else:
        reference = _execute(job(REFERENCE, case.dtype), isolation, workdir, pool)
        tol = tolerances
    port = _execute(job(PORT, case.dtype, reference.capture.stages if teacher_forcing else None), isolation, workdir, pool)

    t0 = time.perf_counter()
    result = compare(reference.capture, port.capture, tol, case=case.name, dtype=case.dtype, device=device,
                     local=port.local)
    timings["compare_s"] = time.perf_counter() - t0
    for side, jr in (("reference", reference), ("port", port)):
        for k, v in jr.timings.items():
            timings[f"{side}_{k}"] = v
    timings.update(extra_timings)
    result.meta["tolerance_mode"] = "noise_floor" if noise_floor else "table"
    result.meta["isolation"] = isolation
    result.meta["faults"] = list(faults)
    log.info("case %s: %s (first divergent stage %s)", case.name, result.verdict, result.first_divergent_stage)
    return CaseRun(case=case, result=result, reference=reference.capture, port=port.capture, local=port.local,
                   extra=extra, timings=timings)
