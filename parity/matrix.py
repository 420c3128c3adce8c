"""The device matrix: every stage of a case on each device, checked against CPU references.

For each backend (the reference and the port) and each requested device:

* ``<backend>/cpu/float32`` vs ``<backend>/cpu/float64`` (the backend's own float64 oracle),
  always run, so this code path is exercised on a CPU-only machine too;
* ``<backend>/<gpu>/float32`` vs ``<backend>/cpu/float64`` and vs ``<backend>/cpu/float32``;
* ``torch/<gpu>/float32`` vs ``tf/cpu/float32`` (the port on the GPU against the reference);
* with ``tf32=True``: ``<backend>/<gpu>/float32+tf32`` vs the same without TF32, which shows
  how much TF32 changes each stage.

A device a backend cannot see is an ``unavailable`` entry with the reason; it never fails the
matrix. Tolerances come from the table resolved for the candidate's device, so per-device
overrides (``[device_overrides.cuda.float32.<stage>]``, each with a reason) apply.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from . import cases as case_registry
from .adapters.base import BACKENDS, Job, JobResult, execute, get_adapter
from .compare import CaseResult, compare
from .tolerances import ToleranceTable, load_tolerances

log = logging.getLogger(__name__)


@dataclass
class MatrixEntry:
    """One comparison of the matrix, or one unavailable (backend, device)."""

    backend: str
    device: str
    candidate: str  # e.g. "torch/cuda/float32+tf32"
    reference: Optional[str]  # e.g. "torch/cpu/float64"
    status: str  # "compared" | "unavailable"
    reason: Optional[str] = None
    result: Optional[CaseResult] = None

    @property
    def verdict(self) -> str:
        return self.result.verdict if self.result is not None else "unavailable"

    def to_dict(self) -> dict:
        d = {"backend": self.backend, "device": self.device, "candidate": self.candidate,
             "reference": self.reference, "status": self.status, "reason": self.reason, "verdict": self.verdict}
        if self.result is not None:
            d["stages"] = [
                {"name": s.name, "verdict": s.verdict, "max_abs": s.max_abs, "rel_max": s.rel_max,
                 "max_rel": s.max_rel, "margin": s.margin, "ulp_max": (s.ulp or {}).get("max") if isinstance(s.ulp, dict) else None}
                for s in self.result.stages
            ]
        return d


@dataclass
class MatrixResult:
    case: str
    entries: List[MatrixEntry] = field(default_factory=list)
    devices: Dict[str, Dict[str, object]] = field(default_factory=dict)  # backend -> device -> name / reason

    @property
    def verdict(self) -> str:
        compared = [e for e in self.entries if e.status == "compared"]
        return "pass" if all(e.result for e in compared) else "fail"

    def __bool__(self) -> bool:
        return self.verdict == "pass"

    def to_dict(self) -> dict:
        return {"case": self.case, "verdict": self.verdict, "devices": self.devices,
                "entries": [e.to_dict() for e in self.entries]}


def _label(backend: str, device: str, dtype: str, tf32: bool = False) -> str:
    return f"{backend}/{device}/{dtype}" + ("+tf32" if tf32 else "")


def run_matrix(
    case: Union[str, case_registry.Case],
    devices: Sequence[str] = ("cpu", "cuda"),
    *,
    tolerances: Optional[Union[ToleranceTable, str, Path]] = None,
    tf32: bool = False,
    isolation: str = "workers",
    pool=None,
    available: Optional[Dict[str, Dict[str, str]]] = None,
) -> MatrixResult:
    """Run ``case`` over the device matrix (see the module docstring).

    ``available``: backend -> {device: name} as the adapters report it (probed when None).
    """
    if isinstance(case, str):
        case = case_registry.get_case(case)
    if not isinstance(tolerances, ToleranceTable):
        tolerances = load_tolerances(tolerances)
    if isolation == "workers" and pool is None:
        from .adapters.worker import WorkerPool

        with tempfile.TemporaryDirectory(prefix="parity-matrix-") as tmp, WorkerPool(Path(tmp)) as own:
            return run_matrix(case, devices, tolerances=tolerances, tf32=tf32, isolation=isolation, pool=own,
                              available=available)

    def run(job: Job) -> JobResult:
        return execute(job) if isolation == "inprocess" else pool.run(job)

    if available is None:
        available = {}
        for b in BACKENDS:
            try:
                available[b] = get_adapter(b).devices() if isolation == "inprocess" else _probe(pool, b)
            except Exception as exc:  # a backend that cannot be imported sees no device
                available[b] = {"__error__": f"{type(exc).__name__}: {exc}"}

    config, weights, inputs = case_registry.prepare(case)
    out = MatrixResult(case=case.name, devices={b: dict(v) for b, v in available.items()})
    captures: Dict[str, object] = {}

    def capture(backend, device, dtype, tf32_on=False):
        key = _label(backend, device, dtype, tf32_on)
        if key not in captures:
            job = Job(backend=backend, config=config, weights=weights, inputs=inputs, dtype=dtype, device=device,
                      case=case.name, allow_tf32=tf32_on)
            captures[key] = run(job).capture
        return captures[key]

    def add(backend, device, cand, ref, cand_cap, ref_cap):
        result = compare(ref_cap, cand_cap, tolerances, case=f"{case.name} [{cand} vs {ref}]", dtype="float32",
                         device=device)
        out.entries.append(MatrixEntry(backend, device, cand, ref, "compared", result=result))

    for backend in BACKENDS:
        seen = available.get(backend, {})
        for device in devices:
            cand = _label(backend, device, "float32")
            if device not in seen:
                reason = seen.get("__error__") or f"{backend} sees no {device} device (it sees {sorted(seen)})"
                out.entries.append(MatrixEntry(backend, device, cand, None, "unavailable", reason=str(reason)))
                continue
            cpu64 = capture(backend, "cpu", "float64")
            add(backend, device, cand, _label(backend, "cpu", "float64"), capture(backend, device, "float32"), cpu64)
            if device == "cpu":
                continue
            add(backend, device, cand, _label(backend, "cpu", "float32"), capture(backend, device, "float32"),
                capture(backend, "cpu", "float32"))
            if backend == "torch" and "cpu" in available.get("tf", {}):
                add(backend, device, cand, _label("tf", "cpu", "float32"), capture(backend, device, "float32"),
                    capture("tf", "cpu", "float32"))
            if tf32:
                add(backend, device, _label(backend, device, "float32", True), cand,
                    capture(backend, device, "float32", True), capture(backend, device, "float32"))
    return out


def _probe(pool, backend: str) -> Dict[str, str]:
    """Ask a worker process which devices a backend sees (keeps frameworks out of this process)."""
    import json
    import subprocess
    import sys

    code = ("import json,sys; from parity.adapters.base import get_adapter; "
            f"json.dump(get_adapter({backend!r}).devices(), sys.stdout)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"__error__": tail}
    return json.loads(proc.stdout)
