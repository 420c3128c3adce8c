"""The adapter contract: one backend, one job, one capture.

A :class:`Job` is everything a backend needs to run one batch of one case: the model
config (plain dict of forward-model.md §1 fields), the neutral weight set, the canonical
batch inputs, dtype and device, and optionally a *teacher*: the other backend's canonical
stages, used to compute every stage again from the teacher's inputs (local error).

:func:`execute` is the single entry point, used in-process and by the subprocess worker
(``python -m parity.adapters.worker``), so both modes run identical code.
"""
from __future__ import annotations

import abc
import importlib
import time
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from .. import stages
from ..capture import Capture


class BackendUnavailable(RuntimeError):
    """The backend's framework cannot be imported (or the device is absent)."""


@dataclass
class Job:
    backend: str
    config: Dict[str, object]
    weights: Mapping[str, np.ndarray]
    inputs: Mapping[str, np.ndarray]  # diffraction (B,C,N,N), offsets (B,C,2), probe_raw (N,N)
    dtype: str = "float32"
    device: str = "cpu"
    case: str = ""
    teacher: Optional[Mapping[str, np.ndarray]] = None  # canonical stages of the other backend
    repeats: int = 1  # forward passes to time (the first is the capture)
    faults: Tuple[str, ...] = ()  # parity.faults names injected into the port while the job runs
    allow_tf32: bool = False  # TF32 matmuls/convolutions on a GPU (off unless a case asks for it)


@dataclass
class JobResult:
    capture: Capture
    local: Optional[Dict[str, np.ndarray]] = None  # stage -> output fed with teacher inputs
    timings: Dict[str, float] = field(default_factory=dict)


class Adapter(abc.ABC):
    """One backend. Framework imports happen inside the methods, never at module import."""

    name: str = ""

    @abc.abstractmethod
    def versions(self) -> Dict[str, str]:
        """Framework versions (imports the framework)."""

    @abc.abstractmethod
    def devices(self) -> Dict[str, str]:
        """Device name -> description, for the devices this backend can see."""

    @abc.abstractmethod
    def determinism_flags(self) -> Dict[str, object]:
        ...

    @abc.abstractmethod
    def set_tf32(self, enabled: bool) -> None:
        """Allow (or forbid) TF32 math on GPUs, process-wide; recorded by determinism_flags."""

    @abc.abstractmethod
    def build(self, config: Dict[str, object], weights: Mapping[str, np.ndarray], dtype: str, device: str):
        """Return a model object of the backend with the weights loaded."""

    @abc.abstractmethod
    def forward(self, model, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run one batch; return every stage as canonical NumPy arrays, in stage order."""

    @abc.abstractmethod
    def run_stage(self, model, name: str, env: Mapping[str, np.ndarray]) -> np.ndarray:
        """Compute one stage from canonical inputs (teacher forcing); canonical output."""


_ADAPTERS = {"tf": ("parity.adapters.tf", "TFAdapter"), "torch": ("parity.adapters.pyt", "TorchAdapter")}
BACKENDS: Tuple[str, ...] = tuple(_ADAPTERS)


def get_adapter(backend: str) -> Adapter:
    if backend not in _ADAPTERS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {list(BACKENDS)}")
    module, cls = _ADAPTERS[backend]
    try:
        return getattr(importlib.import_module(module), cls)()
    except ImportError as exc:  # pragma: no cover - exercised when a framework is missing
        raise BackendUnavailable(f"backend {backend!r} is not installed: {exc}") from None


def execute(job: Job) -> JobResult:
    """Build, load, run (and teacher-force) one job; the same code in-process and in a worker."""
    if job.faults:
        from ..faults import inject_all

        with inject_all(job.faults):
            return _execute(job)
    return _execute(job)


def _execute(job: Job) -> JobResult:
    timings: Dict[str, float] = {}
    t0 = time.perf_counter()
    adapter = get_adapter(job.backend)
    try:
        versions = adapter.versions()  # the first framework import
    except ImportError as exc:
        raise BackendUnavailable(f"backend {job.backend!r} is not installed: {exc}") from None
    timings["import_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = adapter.build(job.config, job.weights, job.dtype, job.device)
    adapter.set_tf32(job.allow_tf32)  # after build: building resets the flags to deterministic defaults
    timings["build_s"] = time.perf_counter() - t0

    forward_times = []
    captured = None
    for _ in range(max(1, job.repeats)):
        t0 = time.perf_counter()
        out = adapter.forward(model, job.inputs)
        forward_times.append(time.perf_counter() - t0)
        captured = captured if captured is not None else out
    timings["forward_s"] = forward_times[0]
    if len(forward_times) > 1:
        timings["forward_warm_median_s"] = float(np.median(forward_times[1:]))

    local = None
    local_errors: Dict[str, str] = {}
    if job.teacher is not None:
        t0 = time.perf_counter()
        env_all = {**job.inputs, **job.teacher}
        local = {}
        for st in stages.STAGES:
            if all(k in env_all for k in st.inputs):
                try:
                    local[st.name] = adapter.run_stage(model, st.name, {k: env_all[k] for k in st.inputs})
                except Exception as exc:  # e.g. the teacher's canvas does not fit the port's shape
                    local_errors[st.name] = f"{type(exc).__name__}: {exc}"
        timings["local_s"] = time.perf_counter() - t0

    meta = {
        "backend": job.backend,
        "case": job.case,
        "dtype": job.dtype,
        "device": job.device,
        "config": dict(job.config),
        "versions": versions,
        "determinism": adapter.determinism_flags(),
        "timings": timings,
        "wall_time_s": timings["forward_s"],
        "faults": list(job.faults),
        "allow_tf32": job.allow_tf32,
        "local_errors": local_errors,
    }
    return JobResult(capture=Capture(stages=captured, meta=meta), local=local, timings=timings)
