"""Jobs: one side, one batch of one case, one capture; :func:`execute` runs one.

A :class:`Job` is everything a side needs to run one batch: the side (registry name and import
target), the model config (plain dict), the neutral weight set, the canonical batch inputs,
dtype and device, and optionally a *teacher*: another run's canonical stages, from whose inputs
every stage is computed again (local error). The stage graph (stage -> the stages or batch
inputs it is computed from) comes from the pair, so teacher forcing works for any stage list.

:func:`execute` is the single place that runs a job: in this process, and in the worker
processes of :mod:`parity.pool` (``python -m parity.worker``), so every isolation mode runs
identical code. Built models are kept in a small cache keyed by side, config, weight-set
digest, dtype, device and faults, so a worker that runs the same model again (fault
self-test, false-alarm seeds) builds it once.
"""
from __future__ import annotations

import json
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from .capture import Capture
from .sides import ForwardError, SideUnavailable, load_side_class, side_target

StageGraph = Tuple[Tuple[str, Tuple[str, ...]], ...]
TASKS = ("forward", "backward", "train")


def builtin_graph() -> StageGraph:
    from .stages import STAGES

    return tuple((s.name, tuple(s.inputs)) for s in STAGES)


@dataclass
class Job:
    side: str  # registry name, e.g. "torch_impl"
    config: Dict[str, object]
    weights: Mapping[str, np.ndarray]
    inputs: Mapping[str, np.ndarray]  # canonical batch inputs
    dtype: str = "float32"
    device: str = "cpu"
    case: str = ""
    teacher: Optional[Mapping[str, np.ndarray]] = None  # canonical stages of another run
    repeats: int = 1  # forward passes to time (the first is the capture)
    faults: Tuple[str, ...] = ()  # parity.faults names injected while the job runs
    allow_tf32: bool = False  # TF32 matmuls/convolutions on a GPU (off unless asked for)
    target: str = ""  # "module:Class" of the side ("" -> looked up in the registry)
    graph: StageGraph = ()  # (stage, inputs) in pipeline order ("" -> the built-in stages)
    weights_id: str = ""  # digest of the weight set ("" -> computed when needed)
    inputs_id: str = ""  # digest of the batch inputs (the pool writes each batch once)
    label: str = ""  # how errors and logs name this job, e.g. "reference n64_g2 float64 cpu"
    task: str = "forward"  # what the worker computes: "forward" (stages), "backward" (+ gradients), "train"
    train: Dict[str, object] = field(default_factory=dict)  # task "train": steps, loss, optimizer settings
    losses: Tuple[str, ...] = ()  # backward: the loss stages differentiated (() -> parity.gradients.default_losses)
    teacher_gradients: Optional[Mapping[str, np.ndarray]] = None  # backward: the teacher run's gradients

    def __post_init__(self) -> None:
        self.target = self.target or side_target(self.side)
        self.graph = tuple(self.graph) or builtin_graph()
        self.faults = tuple(self.faults)
        self.label = self.label or f"{self.side} {self.case} {self.dtype} {self.device}".strip()
        if self.task not in TASKS:
            raise ValueError(f"job task {self.task!r}; expected one of {list(TASKS)}")
        self.losses = tuple(self.losses)


@dataclass
class JobResult:
    capture: Capture
    local: Optional[Dict[str, np.ndarray]] = None  # stage -> output fed with teacher inputs
    timings: Dict[str, float] = field(default_factory=dict)
    crash: Optional[str] = None  # "<stage>: <error>" when the forward failed part-way
    file: Optional[Path] = None  # where a worker wrote the capture (a later job's teacher reads it)
    exception: Optional[BaseException] = None  # in this process: what the forward raised (crash)
    gradients: Optional[Dict[str, np.ndarray]] = None  # backward: parity.gradients keys -> arrays


def weights_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """Digest of a weight set or batch (names, dtypes, shapes, bytes; parity.fixtures'
    content hash), the key under which the pool hands it over once."""
    from .fixtures import content_sha256

    return content_sha256(arrays)[:32]


_MODELS: "OrderedDict[tuple, Any]" = OrderedDict()
MODEL_CACHE_SIZE = 4


def clear_model_cache() -> None:
    _MODELS.clear()


def _build_faults(faults: Tuple[str, ...]) -> Tuple[str, ...]:
    """The faults that change a built model (parity.faults ``network``); the others patch what
    runs during the forward pass, so a model built without them serves them too."""
    if not faults:
        return ()
    from .faults import get_fault

    return tuple(f for f in faults if get_fault(f).network)


def _model(side, job: Job) -> Tuple[Any, bool]:
    key = (job.target, json.dumps(job.config, sort_keys=True, default=str), job.weights_id, job.dtype, job.device,
           _build_faults(job.faults))
    if job.weights_id and key in _MODELS:
        _MODELS.move_to_end(key)
        return _MODELS[key], True
    model = side.build(job.config, job.weights, job.dtype, job.device)
    if job.weights_id:
        _MODELS[key] = model
        while len(_MODELS) > MODEL_CACHE_SIZE:
            _MODELS.popitem(last=False)
    return model, False


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _plain(text: str) -> str:
    """A message without terminal colour codes (Keras puts them into its exceptions)."""
    return _ANSI.sub("", text)


def execute(job: Job) -> JobResult:
    """Build (or reuse), run and teacher-force one job; the same code in every isolation mode."""
    if job.task == "train":
        from .training import execute_train

        if job.faults:
            from .faults import inject_all

            with inject_all(job.faults):
                return execute_train(job)
        return execute_train(job)
    if job.faults:
        from .faults import inject_all

        with inject_all(job.faults):
            return _execute(job)
    return _execute(job)


def _execute(job: Job) -> JobResult:
    timings: Dict[str, float] = {}
    t0 = time.perf_counter()
    side = load_side_class(job.target)()
    try:
        versions = side.versions()  # the first framework import
    except ImportError as exc:
        raise SideUnavailable(f"side {job.side!r} is not installed: {exc}") from None
    timings["import_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model, cached = _model(side, job)
    side.set_tf32(job.allow_tf32)  # after build: building resets the flags to deterministic defaults
    timings["build_s"] = time.perf_counter() - t0

    forward_times = []
    captured = None
    crash = None
    raised = None
    for _ in range(max(1, job.repeats)):
        t0 = time.perf_counter()
        try:
            out = side.forward(model, job.inputs)
        except ForwardError as exc:
            forward_times.append(time.perf_counter() - t0)
            failed = next((name for name, _ in job.graph if name not in exc.stages), "forward")
            captured, crash = exc.stages, f"{failed}: {_plain(str(exc))}"
            raised = exc.__cause__ or exc
            break
        forward_times.append(time.perf_counter() - t0)
        captured = captured if captured is not None else out
    timings["forward_s"] = forward_times[0]
    if len(forward_times) > 1:
        timings["forward_warm_median_s"] = float(np.median(forward_times[1:]))

    local = None
    local_errors: Dict[str, str] = {}
    if job.teacher is not None and side.supports_teacher:
        t0 = time.perf_counter()
        env_all = {**job.inputs, **job.teacher}
        local = {}
        own = captured or {}
        for name, inputs in job.graph:
            if all(k in env_all for k in inputs):
                misfit = [f"{k} is {tuple(np.shape(env_all[k]))} in the reference but {tuple(np.shape(own[k]))} here"
                          for k in inputs if k in own and np.shape(env_all[k]) != np.shape(own[k])]
                if misfit:  # e.g. canvases of different sizes: this side's stage cannot take the reference's
                    local_errors[name] = "ShapeMismatch: " + "; ".join(misfit)
                    continue
                try:
                    local[name] = side.run_stage(model, name, {k: env_all[k] for k in inputs})
                except Exception as exc:  # e.g. the teacher's canvas does not fit this side's shape
                    local_errors[name] = f"{type(exc).__name__}: {exc}"
        timings["local_s"] = time.perf_counter() - t0

    gradients, grad_info = None, None
    if job.task == "backward" and crash is None:
        gradients, grad_info = _backward(side, model, job, captured, timings)

    meta = {
        "side": job.side,
        "framework": side.framework,
        "case": job.case,
        "dtype": job.dtype,
        "device": job.device,
        "config": dict(job.config),
        "versions": versions,
        "determinism": side.determinism_flags(),
        "timings": timings,
        "wall_time_s": timings["forward_s"],
        "faults": list(job.faults),
        "allow_tf32": job.allow_tf32,
        "local_errors": local_errors,
        "model_cached": cached,
        "stage_names": [name for name, _ in job.graph],
    }
    if captured is not None and crash is None:
        try:
            own = side.own_losses(model, job.inputs, captured)
        except Exception as exc:  # noqa: BLE001 - the side's own loss code failed: recorded, not fatal
            own = {"error": {"value": None, "computed_by": f"{type(exc).__name__}: {exc}"}}
        for entry in own.values():
            stage = entry.get("canonical")
            if stage in captured and entry.get("value") is not None:
                entry["canonical_value"] = float(np.asarray(captured[stage]))
        if own:
            meta["own_losses"] = own
    given = side.given(dict(job.config), job.dtype)
    if given is not None:
        meta["given"] = given
    meta.update({k: v for k, v in side.capture_meta().items() if k not in meta})
    if crash is not None:
        meta["crash"] = crash
    if grad_info is not None:
        meta["gradients"] = grad_info
    return JobResult(capture=Capture(stages=captured, meta=meta), local=local, timings=timings, crash=crash,
                     exception=raised, gradients=gradients)


def _backward(side, model, job: Job, stages, timings) -> Tuple[Optional[Dict[str, np.ndarray]], Dict[str, object]]:
    """The gradients of a backward job and what the capture's meta says of them (None and the
    reason when the side computes none)."""
    from . import gradients as grads

    losses = job.losses or grads.default_losses(job.graph)
    info: Dict[str, object] = {"losses": list(losses), "convention": grads.CANONICAL}
    if not side.supports_gradients:
        info["unavailable"] = side.gradients_unavailable or "the side does not compute gradients"
        return None, info
    t0 = time.perf_counter()
    out, errors = grads.compute(side, model, inputs=job.inputs, stages=stages, graph=job.graph,
                                losses=losses, weights=job.weights, dtype=job.dtype,
                                teacher_gradients=job.teacher_gradients)
    timings["backward_s"] = time.perf_counter() - t0
    info["local_errors"] = errors
    return out, info
