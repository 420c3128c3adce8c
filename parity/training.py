"""Training steps: K Adam steps from the same weights on both sides of a pair, compared.

:func:`train_case` runs K optimiser steps of the generator (Adam, one set of hyperparameters,
the same K batches) on the reference side and on the candidate side, starting from the case's
neutral weight set, and compares the loss of each step and the weights after each step
(:mod:`parity.training_compare`). A float32 case is gated by the noise floor: the reference
side also runs in float64 (the oracle), and the candidate's float32 error against it may be
at most k x the reference's own float32 error; a float64 case is judged against the reference
with fixed tolerances. See docs/training.md.

Batches: ``seeded:N`` (default ``seeded:20``) is N batches of the case's size: batch 1 is the
case's own, batch k the case's fixture generated again with the fixture's seed + k - 1 (same
probe, same config); ``split`` is the case's own batch split into batches of one sample. Asking
for more steps than there are batches is a :class:`TrainingError`.

Each run is a job with ``task="train"`` (parity.jobs): in this process or in the side's worker
of a :class:`parity.pool.WorkerPool`, like every other run; a worker hands the result back as a
capture (``train_loss`` and ``weight:<name>``, stacked over the steps). NumPy only.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .capture import Capture
from .tolerances import NOISE_FLOOR_K

LOSSES = ("loss_nll", "loss_mae")
DEFAULT_STEPS = 20
DEFAULT_BATCHES = "seeded:20"
LOSS_KEY = "train_loss"
WEIGHT_PREFIX = "weight:"


class TrainingError(ValueError):
    """Bad training input (steps, loss, batches, hyperparameters): one sentence."""


class TrainingUnavailable(RuntimeError):
    """A side of the pair cannot run training steps; the message says which and why."""


@dataclass(frozen=True)
class Adam:
    """Adam's hyperparameters, shared by both sides (Keras 3's defaults; no amsgrad, no weight
    decay, no clipping). Keras holds the learning rate in a float32 variable, so both sides use
    its float32 value (docs/training.md)."""

    learning_rate: float = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7

    def __post_init__(self) -> None:
        for name in ("learning_rate", "epsilon"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise TrainingError(f"Adam {name} must be a finite number > 0, got {v!r}")
        for name in ("beta_1", "beta_2"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v < 1):
                raise TrainingError(f"Adam {name} must be a number in [0, 1), got {v!r}")

    def to_dict(self) -> Dict[str, float]:
        return {k: float(v) for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class TrainSettings:
    """What both sides run: ``steps`` Adam steps minimising ``loss``."""

    steps: int = DEFAULT_STEPS
    loss: str = "loss_nll"
    adam: Adam = field(default_factory=Adam)

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, (int, np.integer)) or self.steps < 1:
            raise TrainingError(f"training steps must be a whole number >= 1, got {self.steps!r}")
        if self.loss not in LOSSES:
            raise TrainingError(f"unknown training loss {self.loss!r}; allowed are {', '.join(LOSSES)}")

    def to_dict(self) -> Dict[str, Any]:
        return {"steps": int(self.steps), "loss": self.loss, "adam": self.adam.to_dict(), "optimizer": "adam"}


# ------------------------------------------------------------------------------ batches
def parse_batches(spec: Union[str, int]) -> Tuple[str, Optional[int]]:
    """``"seeded:N"`` / an int N -> ("seeded", N); ``"split"`` -> ("split", None)."""
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        spec = f"seeded:{int(spec)}"
    text = str(spec)
    kind, _, arg = text.partition(":")
    if kind == "split" and not arg:
        return "split", None
    if kind == "seeded":
        try:
            n = int(arg)
        except ValueError:
            n = 0
        if n >= 1 and str(n) == arg:
            return "seeded", n
    raise TrainingError(f"training batches {text!r}: allowed are seeded:N (N >= 1 batches generated from the "
                        f"case's fixture seed) or split (the case's batch, one sample a batch)")


def _stack(batches: Sequence[Mapping[str, np.ndarray]], probe: np.ndarray) -> Dict[str, np.ndarray]:
    return {"diffraction": np.stack([b["diffraction"] for b in batches]),
            "offsets": np.stack([b["offsets"] for b in batches]), "probe_raw": probe}


def case_batches(pair, case, spec: Union[str, int] = DEFAULT_BATCHES, steps: Optional[int] = None
                 ) -> Tuple[Dict[str, object], Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """(config dict, neutral weights, stacked batches) of a case for ``spec``; every batch uses
    the case's probe. ``steps``: only the first ``steps`` batches, and a TrainingError when
    ``spec`` provides fewer."""
    kind, n = parse_batches(spec)
    where = f"case {case.name} with batches {spec}"
    if n is not None and steps is not None:
        check_steps(steps, {"diffraction": np.empty((n, 0))}, where)
        n = min(n, steps)
    config, weights, first = pair.prepare(case)
    if kind == "split":
        b = first["diffraction"].shape[0]
        if steps is not None:
            check_steps(steps, first, where)
            b = steps
        one = [{"diffraction": first["diffraction"][i:i + 1], "offsets": first["offsets"][i:i + 1]} for i in range(b)]
        return config, weights, _stack(one, first["probe_raw"])
    if not (dataclasses.is_dataclass(case) and hasattr(case, "input_seed") and hasattr(case, "fixture")):
        raise TrainingError(f"case {case.name}: seeded training batches need a case of the built-in pair "
                            f"(a fixture and an input seed); use split")
    from . import fixtures as fixture_store

    base = case.input_seed if case.input_seed is not None else fixture_store.get_spec(case.fixture).seed
    batches = [first] + [pair.prepare(dataclasses.replace(case, input_seed=base + k))[2] for k in range(1, n)]
    return config, weights, _stack(batches, first["probe_raw"])


def batch_count(batches: Mapping[str, np.ndarray]) -> int:
    return int(np.asarray(batches["diffraction"]).shape[0])


def check_steps(steps: int, batches: Mapping[str, np.ndarray], where: str) -> None:
    n = batch_count(batches)
    if steps > n:
        raise TrainingError(f"{steps} training steps asked for, but {where} provides {n} batch"
                            f"{'es' if n != 1 else ''}; allowed are 1..{n} steps (or provide more batches)")


# ------------------------------------------------------------------------------ the job
def training_capture(losses: np.ndarray, weights: Mapping[str, np.ndarray], meta: Dict[str, Any]) -> Capture:
    stages = {LOSS_KEY: np.asarray(losses, dtype=np.float64)}
    stages.update({WEIGHT_PREFIX + k: np.asarray(v) for k, v in weights.items()})
    return Capture(stages=stages, meta={**meta, "stage_names": list(stages), "task": "train"})


def unpack(capture: Capture) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """(loss per step, {weight name: (K, ...) weights after each step}) of a training capture."""
    s = capture.stages
    return np.asarray(s[LOSS_KEY]), {k[len(WEIGHT_PREFIX):]: np.asarray(v) for k, v in s.items()
                                     if k.startswith(WEIGHT_PREFIX)}


def execute_train(job):
    """Run a ``task="train"`` job (parity.jobs.execute hands it over): a fresh model (training
    changes its weights, so none is cached), K steps, the losses and weights as a capture."""
    from .jobs import JobResult
    from .sides import SideUnavailable, load_side_class

    timings: Dict[str, float] = {}
    t0 = time.perf_counter()
    cls = load_side_class(job.target)
    if not getattr(cls, "supports_training", False):
        raise TrainingUnavailable(f"side {job.side!r} cannot run training steps: {cls.training_unavailable}")
    side = cls()
    try:
        versions = side.versions()
    except ImportError as exc:
        raise SideUnavailable(f"side {job.side!r} is not installed: {exc}") from None
    timings["import_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = side.build(job.config, job.weights, job.dtype, job.device)
    side.set_tf32(job.allow_tf32)
    timings["build_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    losses, weights = side.train_steps(model, job.inputs, dict(job.train))
    timings["train_s"] = time.perf_counter() - t0
    meta = {"side": job.side, "framework": side.framework, "case": job.case, "dtype": job.dtype,
            "device": job.device, "versions": versions, "determinism": side.determinism_flags(),
            "timings": timings, "train": dict(job.train), "faults": list(job.faults)}
    return JobResult(capture=training_capture(losses, weights, meta), timings=timings)


def _jobs(pair, case, settings: TrainSettings, config, weights, batches, device: str, allow_tf32: bool):
    from .jobs import Job, weights_digest

    wid, iid = weights_digest(weights), weights_digest(batches)
    roles = [("reference", pair.reference, "float64" if case.dtype == "float32" else case.dtype)]
    if case.dtype == "float32":
        roles.append(("reference_float32", pair.reference, "float32"))
    roles.append(("candidate", pair.candidate, case.dtype))
    return {role: Job(side=side, config=config, weights=weights, inputs=batches, dtype=dtype, device=device,
                      case=case.name, task="train", train=settings.to_dict(), allow_tf32=allow_tf32,
                      weights_id=wid, inputs_id=iid, label=f"train {role} {case.name} {dtype} {device}")
            for role, side, dtype in roles}


def check_pair(pair) -> None:
    """Raise TrainingUnavailable naming the side (and its reason) that cannot train."""
    from .sides import load_side_class, side_target

    for side in dict.fromkeys((pair.reference, pair.candidate)):
        cls = load_side_class(side_target(side))
        if not getattr(cls, "supports_training", False):
            raise TrainingUnavailable(f"side {side!r} cannot run training steps: "
                                      f"{getattr(cls, 'training_unavailable', 'no train_steps method')}")


def run_jobs(jobs: Mapping[str, Any], pool=None) -> Dict[str, Any]:
    """role -> JobResult; in this process (``pool`` None) or in the pool's workers, the two
    sides at once. A job that fails raises (the pool's JobError names side, job and reason)."""
    from .jobs import execute
    from .pool import JobError

    if pool is None:
        return {role: execute(job) for role, job in jobs.items()}
    waiting, results, tickets, errors = dict(jobs), {}, {}, []
    while waiting or tickets:
        for role, job in list(waiting.items()):
            if not errors and not pool.busy(job):
                tickets[id(pool.submit(job, role))] = role
                del waiting[role]
        if not tickets:
            break
        for ticket, out in pool.wait():
            role = tickets.pop(id(ticket))
            if isinstance(out, JobError):
                errors.append(out)  # the other side's job in flight still ends before this raises
            else:
                results[role] = out
    if errors:
        raise errors[0]
    return results


@dataclass
class TrainingRun:
    """A decided training comparison and the runs it was decided from."""

    result: Any  # parity.training_compare.TrainingResult
    captures: Dict[str, Capture]  # role -> training capture
    initial: Dict[str, np.ndarray]
    batches: str = DEFAULT_BATCHES

    def __bool__(self) -> bool:
        return bool(self.result)


def train_case(case, *, steps: int = DEFAULT_STEPS, loss: str = "loss_nll", dtype: Optional[str] = None,
               batches: Union[str, int] = DEFAULT_BATCHES, adam: Optional[Adam] = None, pair=None,
               pool=None, device: str = "cpu", noise_floor_k: float = NOISE_FLOOR_K,
               allow_tf32: bool = False) -> TrainingRun:
    """K training steps of ``case`` on both sides of ``pair`` (default reference_tf:torch_impl),
    compared step by step. ``pool``: a WorkerPool to run the sides in (None: this process)."""
    from .pairs import resolve_pair
    from .training_compare import compare_training

    settings = TrainSettings(steps=steps, loss=loss, adam=adam or Adam())
    pair = resolve_pair(pair) if not hasattr(pair, "prepare") else pair
    if isinstance(case, str):
        case = pair.cases.get_case(case)
    if dtype is not None and dtype != case.dtype:
        case = dataclasses.replace(case, dtype=dtype)
    check_pair(pair)
    config, weights, stacked = case_batches(pair, case, batches, steps=settings.steps)
    outs = run_jobs(_jobs(pair, case, settings, config, weights, stacked, device, allow_tf32), pool)
    captures = {role: out.capture for role, out in outs.items()}
    result = compare_training(captures, weights, case=case.name, dtype=case.dtype, settings=settings,
                              k=noise_floor_k, batches=str(batches), loss_terms=int(stacked["diffraction"][0].size))
    result.timings = {f"{role}_train_s": out.timings.get("train_s", 0.0) for role, out in outs.items()}
    return TrainingRun(result=result, captures=captures, initial=dict(weights), batches=str(batches))
