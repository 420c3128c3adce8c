"""Fault self-test of the harness: does the comparison catch and localise known port bugs?

``python -m parity.selftest [--hub DIR] [--fault NAME ...] [--case NAME ...]
[--false-alarm-seeds N] [--only-false-alarm] [--force] [--reference process|inprocess] [--list]``

1. For every case (default: the default suite) the TensorFlow reference runs once; its capture
   is reused for every fault (patching ``torch_impl`` does not change the reference). The
   clean port runs once per case and must pass (baseline). The reference runs in one
   long-lived child process by default (``--reference process``): TensorFlow's and PyTorch's
   thread pools compete when both run in one process, which slows the port's forward by
   large factors on small machines (see parity/adapters/worker.py); ``--reference inprocess``
   runs it here. The port (the thing under test) always runs in this process.
2. Every fault of :mod:`parity.faults` runs on the cases where it can show (its ``applies``
   predicate): the port runs under the fault, teacher-forced with the cached reference stages,
   and :func:`parity.compare.compare` judges it with the default tolerance table. A fault is
   *detected* when at least one case fails; it is *localised* when the first divergent stage
   of every catching case is the fault's expected stage. Faults that cannot change the network
   stages (``fault.network`` False) reuse the clean port's model and network stages.
3. False alarms: the clean port across ``--false-alarm-seeds`` input seeds per case
   (``Case.with_(input_seed=...)`` regenerates the fixture) must pass every stage (end to end
   and teacher-forced); the models are built once per case and reused across seeds, and the
   reference of the next seed is computed while the port runs the current one. The worst
   margin is reported per case and overall.

Cases whose ``tolerance_mode`` is ``noise_floor`` (float32) are judged as run_case judges them:
against the reference's float64 run, with tolerances from its own float32 error.

Writes ``selftest.json`` into the hub (default a new ``reports/selftest-<UTC stamp>/``): the
``faults`` list (one dict per fault: the table's columns, the verdict and reason, and the
per-case ``runs``), ``summary`` (the same rows reduced to the table's columns, for a report
section), ``false_alarm``, the clean baseline per case (``clean``), timings and ``verdict``.
The hub may hold other files (e.g. a report); only ``selftest.json`` is written, and a hub
that already holds one is refused unless ``--force``.

Exit codes: 0 every fault detected and localised, the clean port passing everywhere, no
false alarm; 1 otherwise; 2 usage errors (unknown fault or case, refused hub, a backend that
cannot be imported, a reference that fails), each with a one-line message on stderr.
With ``--case`` but no ``--fault``, faults that no selected case can show are skipped; a
fault named with ``--fault`` that no selected case can show fails (it was not verified).

JSON: non-finite floats are written as the strings "inf" / "nan" (as in CaseResult.to_dict).
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import cases as case_registry
from . import faults as fault_catalogue
from .atomic import write_bytes_atomic
from .capture import Capture
from .compare import CaseResult, compare
from .stages import STAGES
from .stats import to_json
from .tolerances import ToleranceTable, load_tolerances, noise_floor_tolerances

SCHEMA = "parity.selftest"
SCHEMA_VERSION = 1
SELFTEST_JSON = "selftest.json"
DEFAULT_SEEDS = 20
REPORTS_DIR = Path("reports")  # under the current folder, like the report's default hub
REFERENCE, PORT = "tf", "torch"

Progress = Callable[[str], None]


class UsageError(ValueError):
    """Bad command-line input; the message is one line (exit code 2)."""


# ---------------------------------------------------------------------------------------------
# the reference: in this process, or in one long-lived child process
# ---------------------------------------------------------------------------------------------
class ReferenceFailure(RuntimeError):
    """The reference backend failed; ``kind`` is "import" when its framework cannot be imported."""

    def __init__(self, message: str, kind: str = "run"):
        super().__init__(message)
        self.kind = kind


def _error_kind(exc: BaseException) -> str:
    from .adapters.base import BackendUnavailable

    return "import" if isinstance(exc, (ImportError, BackendUnavailable)) else "run"


class InProcessReference:
    """The TensorFlow reference through its adapter, in this process."""

    def __init__(self) -> None:
        from .adapters.base import get_adapter

        self._adapter = get_adapter(REFERENCE)
        self._models: Dict[Any, Any] = {}
        self._pending: List[Any] = []

    def versions(self) -> Dict[str, str]:
        try:
            return self._adapter.versions()
        except Exception as exc:  # noqa: BLE001
            raise ReferenceFailure(f"{type(exc).__name__}: {exc}", _error_kind(exc)) from None

    def build(self, key, config, weights, dtype: str) -> None:
        self._models[key] = self._adapter.build(config, weights, dtype, "cpu")

    def forward(self, key, inputs) -> Dict[str, Any]:
        return self._adapter.forward(self._models[key], inputs)

    def submit(self, keys, inputs) -> None:
        self._pending.append([self.forward(key, inputs) for key in keys])

    def receive(self) -> List[Dict[str, Any]]:
        return self._pending.pop(0)

    def drop(self, key) -> None:
        self._models.pop(key, None)

    def close(self) -> None:
        self._models.clear()


def _reference_server(conn) -> None:  # pragma: no cover - runs in the child process
    """Child process loop: build/forward/drop requests on a pipe, one answer per request."""
    from .adapters.base import get_adapter

    adapter, models = None, {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        op = msg[0]
        try:
            if op == "close":
                conn.send(("ok", None))
                return
            if adapter is None:
                adapter = get_adapter(REFERENCE)
            if op == "versions":
                out = adapter.versions()
            elif op == "build":
                models[msg[1]] = adapter.build(msg[2], msg[3], msg[4], "cpu")
                out = None
            elif op == "forward":
                out = [adapter.forward(models[key], msg[2]) for key in msg[1]]
            elif op == "drop":
                models.pop(msg[1], None)
                out = None
            else:
                raise ValueError(f"unknown request {op!r}")
            conn.send(("ok", out))
        except Exception as exc:  # noqa: BLE001 - one line back to the parent
            conn.send(("error", _error_kind(exc), f"{type(exc).__name__}: {exc}"))


class ReferenceProcess:
    """The TensorFlow reference in one long-lived child process (multiprocessing, spawn).

    Requests and answers go through a pipe, one request at a time: :meth:`submit` sends a
    forward request (one input batch through one or more models) and returns at once,
    :meth:`receive` collects its answer. At most one request is in flight, so neither side
    can block sending while the other is blocked sending too.
    """

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_reference_server, args=(child,), name="parity-selftest-reference",
                                 daemon=True)
        self._proc.start()
        child.close()
        self._in_flight = 0

    def _recv(self):
        try:
            answer = self._conn.recv()
        except (EOFError, OSError):
            self._proc.join(timeout=5)
            raise ReferenceFailure(f"the reference process died (exit code {self._proc.exitcode})") from None
        if answer[0] == "error":
            raise ReferenceFailure(answer[2], answer[1])
        return answer[1]

    def _call(self, *msg):
        if self._in_flight:
            raise RuntimeError("receive() the submitted forwards before another request")
        self._conn.send(msg)
        return self._recv()

    def versions(self) -> Dict[str, str]:
        return self._call("versions")

    def build(self, key, config, weights, dtype: str) -> None:
        self._call("build", key, dict(config), dict(weights), dtype)

    def forward(self, key, inputs) -> Dict[str, Any]:
        return self._call("forward", [key], dict(inputs))[0]

    def submit(self, keys, inputs) -> None:
        if self._in_flight:
            raise RuntimeError("receive() the submitted forward before submitting another")
        self._conn.send(("forward", list(keys), dict(inputs)))
        self._in_flight = 1

    def receive(self) -> List[Dict[str, Any]]:
        self._in_flight = 0
        return self._recv()

    def drop(self, key) -> None:
        self._call("drop", key)

    def close(self) -> None:
        if self._proc.is_alive():
            try:
                while self._in_flight:
                    self.receive()
                self._conn.send(("close",))
                self._conn.recv()
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(timeout=5)
        self._conn.close()


REFERENCE_MODES = {"process": ReferenceProcess, "inprocess": InProcessReference}


# ---------------------------------------------------------------------------------------------
# per-case context: reference capture, tolerances, clean port, built models
# ---------------------------------------------------------------------------------------------
@dataclass
class CaseContext:
    case: case_registry.Case
    config: Dict[str, Any]
    weights: Mapping[str, Any]
    inputs: Mapping[str, Any]
    reference: Capture
    tol: Any  # ToleranceTable, or {stage: Tolerance} in noise-floor mode
    noise_floor: bool = False
    port_model: Any = None
    clean_stages: Dict[str, Any] = field(default_factory=dict)
    clean_local: Dict[str, Any] = field(default_factory=dict)
    clean_result: Optional[CaseResult] = None
    timings: Dict[str, float] = field(default_factory=dict)


def _torch_adapter():
    from .adapters.base import get_adapter

    return get_adapter(PORT)


def check_backends(reference) -> Dict[str, Dict[str, str]]:
    """Import both frameworks (``versions()``); raise UsageError with one line if one fails."""
    from .adapters.base import BackendUnavailable

    out = {}
    try:
        out[REFERENCE] = reference.versions()
    except ReferenceFailure as exc:
        if exc.kind != "import":
            raise
        raise UsageError(f"backend {REFERENCE!r} cannot be used: {str(exc).splitlines()[0]}") from None
    try:
        out[PORT] = _torch_adapter().versions()
    except (ImportError, BackendUnavailable) as exc:
        text = str(exc).splitlines()[0] if str(exc) else ""
        raise UsageError(f"backend {PORT!r} cannot be used: {type(exc).__name__}: {text}") from None
    return out


def _meta(ctx: CaseContext, backend: str, **extra) -> Dict[str, Any]:
    return {"backend": backend, "case": ctx.case.name, "dtype": ctx.case.dtype, "device": "cpu", **extra}


def port_run(adapter, model, inputs: Mapping[str, Any], teacher: Optional[Mapping[str, Any]], *,
             reuse: Optional[Tuple[Mapping[str, Any], Mapping[str, Any]]] = None,
             use_forward: bool = False) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, str], Optional[str]]:
    """Run the port like :func:`parity.adapters.base.execute` does (forward, then every stage
    again from the teacher's inputs), stage by stage so that a failure is attributed.

    ``reuse=(stages, local)``: take the network stages (latent, amp, phase) end to end and
    teacher-forced from these instead of computing them (valid for faults that cannot change
    them). ``use_forward``: run ``adapter.forward`` (the real forward path) instead of the
    stage loop. Returns ``(stages, local, local_errors, crash)``: a teacher-forced stage that
    raises is left out of ``local`` and its error kept in ``local_errors`` (``execute`` would
    abort the whole job there); ``crash`` is ``"stage: error"`` when the port's own forward
    raised (``stages`` then holds what ran).
    """
    stages: Dict[str, Any] = {}
    crash = None
    if use_forward and reuse is None:
        try:
            stages = adapter.forward(model, inputs)
        except Exception as exc:  # noqa: BLE001 - reported, the self-test goes on
            crash = f"forward: {type(exc).__name__}: {exc}"
    else:
        env = dict(inputs)
        for st in STAGES:
            try:
                if reuse is not None and st.name in fault_catalogue.NETWORK_STAGES:
                    out = reuse[0][st.name]
                else:
                    out = adapter.run_stage(model, st.name, {k: env[k] for k in st.inputs})
            except Exception as exc:  # noqa: BLE001
                crash = f"{st.name}: {type(exc).__name__}: {exc}"
                break
            env[st.name] = stages[st.name] = out
    local: Dict[str, Any] = {}
    errors: Dict[str, str] = {}
    if teacher is not None:
        env_all = {**inputs, **teacher}
        for st in STAGES:
            if not all(k in env_all for k in st.inputs):
                continue
            if reuse is not None and st.name in fault_catalogue.NETWORK_STAGES and st.name in reuse[1]:
                local[st.name] = reuse[1][st.name]
                continue
            try:
                local[st.name] = adapter.run_stage(model, st.name, {k: env_all[k] for k in st.inputs})
            except Exception as exc:  # noqa: BLE001
                errors[st.name] = f"{type(exc).__name__}: {exc}"
    return stages, local, errors, crash


def _reference_keys(case: case_registry.Case) -> Tuple[Tuple[str, str], Optional[Tuple[str, str]]]:
    """(key of the reference the port is compared with, key of the float32 run or None)."""
    if case.tolerance_mode == "noise_floor" and case.dtype == "float32":
        return (case.name, "float64"), (case.name, "float32")
    return (case.name, case.dtype), None


def _submit_reference(reference, case: case_registry.Case, inputs) -> None:
    reference.submit([k for k in _reference_keys(case) if k is not None], inputs)


def _receive_reference(reference, case: case_registry.Case, table: ToleranceTable):
    """(reference stages, tolerances) of the forward(s) submitted by :func:`_submit_reference`."""
    answers = reference.receive()
    if len(answers) == 1:
        return answers[0], table
    return answers[0], noise_floor_tolerances(answers[0], answers[1])


def prepare_case(case: case_registry.Case, reference, table: ToleranceTable, progress: Progress) -> CaseContext:
    """Reference once (models kept for the false-alarm seeds), clean port once (baseline)."""
    pt_ad = _torch_adapter()
    t0 = time.perf_counter()
    config, weights, inputs = case_registry.prepare(case)
    for key in _reference_keys(case):
        if key is not None:
            reference.build(key, config, weights, key[1])
    _submit_reference(reference, case, inputs)
    ref_stages, tol = _receive_reference(reference, case, table)
    t_ref = time.perf_counter() - t0
    noise = _reference_keys(case)[1] is not None
    ctx = CaseContext(case=case, config=config, weights=weights, inputs=inputs, tol=tol, noise_floor=noise,
                      reference=Capture(stages=ref_stages, meta={"backend": REFERENCE, "case": case.name,
                                                                 "dtype": _reference_keys(case)[0][1],
                                                                 "device": "cpu"}))
    t0 = time.perf_counter()
    ctx.port_model = pt_ad.build(config, weights, case.dtype, "cpu")
    stages, local, errors, crash = port_run(pt_ad, ctx.port_model, inputs, ref_stages, use_forward=True)
    ctx.clean_stages, ctx.clean_local = stages, local
    ctx.clean_result = compare(ctx.reference, Capture(stages=stages, meta=_meta(ctx, PORT)), tol,
                               case=case.name, dtype=case.dtype, local=local)
    if crash or errors:
        ctx.clean_result.verdict = "fail"
        ctx.clean_result.problems.append(f"clean port raised: {crash or errors}")
    ctx.timings = {"reference_s": t_ref, "clean_port_s": time.perf_counter() - t0}
    worst = _worst_margin(ctx.clean_result)
    mode = " (noise floor)" if noise else ""
    progress(f"  case {case.name}{mode}: reference {t_ref:.1f} s, clean port {ctx.clean_result.verdict} "
             f"(worst margin {_fmt(worst[1])} at {worst[0]})")
    return ctx


# ---------------------------------------------------------------------------------------------
# faults
# ---------------------------------------------------------------------------------------------
def _finite_or_none(x):
    return None if x is None else float(x)


def _worst_margin(result: CaseResult) -> Tuple[Optional[str], float]:
    """(stage, max over stages of end-to-end margin and local error); inf for structural problems."""
    best: Tuple[Optional[str], float] = (None, 0.0)
    for s in result.stages:
        vals = [v for v in (s.margin, s.local_error) if v is not None]
        if s.problem is not None:
            vals.append(math.inf)
        for v in vals:
            if v > best[1] or best[0] is None:
                best = (s.name, float(v))
    return best


def _largest_local(result: CaseResult, local: Mapping[str, Any], reference: Mapping[str, Any]
                   ) -> Tuple[Optional[str], Optional[float]]:
    """(stage, largest teacher-forced margin). compare() attaches no local result to a stage whose
    end-to-end comparison is structural; such a stage counts as inf when its teacher-forced
    output does not have the reference's shape either."""
    best: Tuple[Optional[str], Optional[float]] = (None, None)
    for s in result.stages:
        v = s.local_error
        if v is None and s.problem is not None and s.name in local and s.name in reference \
                and np.shape(local[s.name]) != np.shape(reference[s.name]):
            v = math.inf
        if v is None:
            continue
        if best[1] is None or v > best[1]:
            best = (s.name, float(v))
    return best


def run_fault_on_case(fault: fault_catalogue.Fault, ctx: CaseContext) -> Dict[str, Any]:
    """The port under ``fault`` on one case, compared with the cached reference."""
    pt_ad = _torch_adapter()
    t0 = time.perf_counter()
    crash = None
    stages: Dict[str, Any] = {}
    local: Dict[str, Any] = {}
    errors: Dict[str, str] = {}
    with fault_catalogue.inject(fault):
        if fault.network:
            try:
                model = pt_ad.build(ctx.config, ctx.weights, ctx.case.dtype, "cpu")
            except Exception as exc:  # noqa: BLE001
                model, crash = None, f"build: {type(exc).__name__}: {exc}"
            if model is not None:
                stages, local, errors, crash = port_run(pt_ad, model, ctx.inputs, ctx.reference.stages)
        else:
            stages, local, errors, crash = port_run(pt_ad, ctx.port_model, ctx.inputs, ctx.reference.stages,
                                                    reuse=(ctx.clean_stages, ctx.clean_local))
    result = compare(ctx.reference, Capture(stages=stages, meta=_meta(ctx, PORT, fault=fault.name)), ctx.tol,
                     case=ctx.case.name, dtype=ctx.case.dtype, local=local)
    exp = result.stage(fault.expected_stage)
    largest = _largest_local(result, local, ctx.reference.stages)
    first = result.first_divergent_stage
    if crash is not None and (first is None or crash.startswith("build:")):
        first = crash.split(":", 1)[0]  # "build", or the stage whose computation raised
    return {
        "case": ctx.case.name,
        "verdict": "fail" if (crash or result.verdict != "pass") else "pass",
        "first_divergent_stage": first,
        "root_cause_stage": result.root_cause_stage,
        "failed_stages": [s.name for s in result.stages if not s],
        "margin_at_expected": _finite_or_none(exp.margin),
        "local_error_at_expected": _finite_or_none(exp.local_error),
        "problem_at_expected": exp.problem,
        "largest_local_error_stage": largest[0],
        "largest_local_error": largest[1],
        "local_errors": errors,
        "crash": crash,
        "seconds": time.perf_counter() - t0,
        "message": exp.message if not exp else "",
    }


def summarise_fault(fault: fault_catalogue.Fault, runs: List[Dict[str, Any]], *, required: bool) -> Dict[str, Any]:
    """One flat dict per fault (the table row), with the per-case runs nested."""
    caught = [r for r in runs if r["verdict"] == "fail"]
    detected = bool(caught)
    first = caught[0] if caught else None
    mislocalised = [r for r in caught if r["first_divergent_stage"] != fault.expected_stage]
    ran = {r["case"] for r in runs}
    missed_must = [c for c in fault.must_show if c in ran and c not in {r["case"] for r in caught}]
    if not runs:
        status = "fail" if required else "skipped"
        reason = "no applicable case was run" + ("" if required else " (not counted: cases were restricted)")
    elif not detected:
        status, reason = "fail", f"not detected in {len(runs)} applicable case(s)"
    elif mislocalised:
        where = ", ".join(f"{r['first_divergent_stage']} in {r['case']}" for r in mislocalised)
        status, reason = "fail", f"first divergent stage {where}, expected {fault.expected_stage}"
    elif missed_must:
        status, reason = "fail", f"not caught in case(s) where it must show: {', '.join(missed_must)}"
    else:
        status, reason = "pass", "detected and localised"
    margin = None
    structural = None
    if first is not None:
        margin = first["margin_at_expected"]
        structural = first["problem_at_expected"]
    return {
        "name": fault.name,
        "description": fault.description,
        "upstream": fault.upstream,
        "expected_stage": fault.expected_stage,
        "applies_to": fault.applies.text,
        "network": fault.network,
        "detected": detected,
        "found_stage": first["first_divergent_stage"] if first else None,
        "root_cause_stage": first["root_cause_stage"] if first else None,
        "largest_local_error_stage": first["largest_local_error_stage"] if first else None,
        "largest_local_error": first["largest_local_error"] if first else None,
        "margin_at_expected": margin,
        "local_error_at_expected": first["local_error_at_expected"] if first else None,
        "structural_at_expected": structural,
        "caught_by": [r["case"] for r in caught],
        "cases_run": [r["case"] for r in runs],
        "must_show": list(fault.must_show),
        "localised": detected and not mislocalised,
        "status": status,
        "reason": reason,
        "notes": fault.notes,
        "runs": runs,
    }


SUMMARY_KEYS = ("name", "expected_stage", "found_stage", "status", "margin_at_expected", "largest_local_error_stage",
                "largest_local_error", "caught_by", "cases_run", "description")


def summary_row(row: Mapping[str, Any]) -> Dict[str, Any]:
    """The compact form of a fault row (the terminal table's columns) for a report section."""
    out = {k: row[k] for k in SUMMARY_KEYS}
    out["structural"] = bool(row["structural_at_expected"])
    return out


# ---------------------------------------------------------------------------------------------
# false alarms
# ---------------------------------------------------------------------------------------------
def false_alarm_case(ctx: CaseContext, seeds: Sequence[int], reference, table: ToleranceTable) -> Dict[str, Any]:
    """The clean port over input seeds, models reused; worst margin (end to end or local).

    The reference of seed i+1 is submitted before the port runs seed i (with the child-process
    reference, the two overlap)."""
    pt_ad = _torch_adapter()
    t0 = time.perf_counter()
    worst = {"margin": 0.0, "stage": None, "seed": None}
    failures = []
    seeds = [int(s) for s in seeds]
    variants = [ctx.case.with_(input_seed=seed) for seed in seeds]

    def inputs_of(variant):
        return case_registry.prepare(variant)[2]

    pending = inputs_of(variants[0]) if variants else None
    if pending is not None:
        _submit_reference(reference, ctx.case, pending)
    for i, (seed, variant) in enumerate(zip(seeds, variants)):
        inputs = pending
        ref, tol = _receive_reference(reference, ctx.case, table)
        if i + 1 < len(variants):
            pending = inputs_of(variants[i + 1])
            _submit_reference(reference, ctx.case, pending)
        stages, local, errors, crash = port_run(pt_ad, ctx.port_model, inputs, ref, use_forward=True)
        res = compare(Capture(stages=ref, meta={"backend": REFERENCE, "case": variant.name}),
                      Capture(stages=stages, meta=_meta(ctx, PORT)), tol, case=variant.name,
                      dtype=ctx.case.dtype, local=local)
        stage, margin = _worst_margin(res)
        if worst["stage"] is None or margin > worst["margin"]:
            worst = {"margin": margin, "stage": stage, "seed": seed}
        if res.verdict != "pass" or crash or errors:
            failures.append({"seed": seed, "first_divergent_stage": res.first_divergent_stage,
                             "root_cause_stage": res.root_cause_stage, "worst_margin": margin,
                             "crash": crash, "local_errors": errors,
                             "failed_stages": [s.name for s in res.stages if not s]})
    return {"case": ctx.case.name, "seeds": seeds, "failures": failures,
            "worst_margin": worst["margin"], "worst_stage": worst["stage"], "worst_seed": worst["seed"],
            "verdict": "pass" if not failures else "fail", "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------
def select_cases(names: Optional[Sequence[str]]) -> List[case_registry.Case]:
    if not names:
        return list(case_registry.suite("default"))
    out = []
    for n in names:
        if n not in case_registry.CASES:
            raise UsageError(f"unknown case {n!r}; known cases are: {', '.join(case_registry.CASES)}")
        if case_registry.CASES[n] not in out:
            out.append(case_registry.CASES[n])
    return out


def select_faults(names: Optional[Sequence[str]],
                  catalogue: Sequence[fault_catalogue.Fault] = None) -> List[fault_catalogue.Fault]:
    catalogue = fault_catalogue.FAULTS if catalogue is None else catalogue
    if not names:
        return list(catalogue)
    by_name = {f.name: f for f in catalogue}
    out = []
    for n in names:
        if n not in by_name:
            raise UsageError(f"unknown fault {n!r}; known faults are: {', '.join(by_name)}")
        if by_name[n] not in out:
            out.append(by_name[n])
    return out


def run_selftest(*, faults: Optional[Sequence[str]] = None, cases: Optional[Sequence[str]] = None,
                 false_alarm_seeds: int = DEFAULT_SEEDS, only_false_alarm: bool = False,
                 tolerances: Optional[ToleranceTable] = None,
                 catalogue: Optional[Sequence[fault_catalogue.Fault]] = None,
                 reference: str = "process",
                 progress: Progress = lambda s: None) -> Dict[str, Any]:
    """Run the self-test (the port in this process; the reference as ``reference`` says:
    "process" or "inprocess"); return the ``selftest.json`` document."""
    if reference not in REFERENCE_MODES:
        raise UsageError(f"reference={reference!r}; expected one of {list(REFERENCE_MODES)}")
    runner = REFERENCE_MODES[reference]()
    try:
        return _run_selftest(runner, reference_mode=reference, faults=faults, cases=cases,
                             false_alarm_seeds=false_alarm_seeds, only_false_alarm=only_false_alarm,
                             tolerances=tolerances, catalogue=catalogue, progress=progress)
    finally:
        runner.close()


def _run_selftest(runner, *, reference_mode, faults, cases, false_alarm_seeds, only_false_alarm, tolerances,
                  catalogue, progress) -> Dict[str, Any]:
    t_start = time.perf_counter()
    selected_cases = select_cases(cases)
    selected_faults = [] if only_false_alarm else select_faults(faults, catalogue)
    faults_required = not cases or bool(faults)  # restricted cases: unrunnable faults are skipped
    tol = tolerances if tolerances is not None else load_tolerances()
    versions = check_backends(runner)

    # cases a selected fault needs (all cases for the false-alarm check)
    needed = [c for c in selected_cases
              if false_alarm_seeds > 0 or any(f.applicable(c) for f in selected_faults)]
    progress(f"reference and clean port on {len(needed)} case(s)")
    contexts: Dict[str, CaseContext] = {}
    t0 = time.perf_counter()
    for case in needed:
        contexts[case.name] = prepare_case(case, runner, tol, progress)
    t_baseline = time.perf_counter() - t0

    clean = []
    for ctx in contexts.values():
        stage, margin = _worst_margin(ctx.clean_result)
        clean.append({"case": ctx.case.name, "covers": ctx.case.covers, "dtype": ctx.case.dtype,
                      "verdict": ctx.clean_result.verdict, "first_divergent_stage": ctx.clean_result.first_divergent_stage,
                      "worst_margin": margin, "worst_stage": stage, "problems": list(ctx.clean_result.problems),
                      **{k: round(v, 3) for k, v in ctx.timings.items()}})

    t0 = time.perf_counter()
    fault_rows = []
    for fault in selected_faults:
        runs = []
        for case in selected_cases:
            ctx = contexts.get(case.name)
            if ctx is None or not fault.applicable(case) or ctx.clean_result.verdict != "pass":
                continue
            runs.append(run_fault_on_case(fault, ctx))
        row = summarise_fault(fault, runs, required=faults_required)
        fault_rows.append(row)
        progress(f"  fault {fault.name}: {row['status']} ({row['reason']}; found {row['found_stage']}, "
                 f"caught by {len(row['caught_by'])}/{len(runs)}, {sum(r['seconds'] for r in runs):.1f} s)")
    t_faults = time.perf_counter() - t0

    t0 = time.perf_counter()
    fa_cases = []
    if false_alarm_seeds > 0:
        progress(f"false-alarm check: {false_alarm_seeds} input seeds per case")
        for ctx in contexts.values():
            r = false_alarm_case(ctx, range(false_alarm_seeds), runner, tol)
            fa_cases.append(r)
            progress(f"  case {ctx.case.name}: {r['verdict']}, worst margin {_fmt(r['worst_margin'])} at "
                     f"{r['worst_stage']} (seed {r['worst_seed']}), {r['seconds']:.1f} s")
    t_fa = time.perf_counter() - t0
    if fa_cases:
        w = max(fa_cases, key=lambda r: r["worst_margin"])
        false_alarm = {"seeds_per_case": false_alarm_seeds, "cases": fa_cases,
                       "verdict": "pass" if all(r["verdict"] == "pass" for r in fa_cases) else "fail",
                       "worst_margin": w["worst_margin"], "worst_case": w["case"], "worst_stage": w["worst_stage"],
                       "worst_seed": w["worst_seed"],
                       "runs": sum(len(r["seeds"]) for r in fa_cases),
                       "failures": sum(len(r["failures"]) for r in fa_cases)}
    else:
        false_alarm = {"seeds_per_case": 0, "cases": [], "verdict": "not_run", "worst_margin": None}

    problems = []
    bad_clean = [c["case"] for c in clean if c["verdict"] != "pass"]
    if bad_clean:
        problems.append(f"the clean port fails case(s) {', '.join(bad_clean)} (faults were not run there)")
    failed_faults = [r["name"] for r in fault_rows if r["status"] == "fail"]
    if failed_faults:
        problems.append(f"fault(s) not detected or not localised: {', '.join(failed_faults)}")
    if false_alarm["verdict"] == "fail":
        problems.append(f"false alarm: the clean port failed {false_alarm['failures']} of "
                        f"{false_alarm['runs']} seeded runs")
    verdict = "pass" if not problems else "fail"
    total = time.perf_counter() - t_start
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "verdict": verdict, "problems": problems,
        "faults": fault_rows,
        "summary": [summary_row(r) for r in fault_rows],
        "false_alarm": false_alarm,
        "clean": clean,
        "cases": [c.name for c in selected_cases],
        "reference_mode": reference_mode,
        "versions": versions,
        "tolerances": str(getattr(tol, "path", "")),
        "timings": {"total_s": round(total, 2), "baseline_s": round(t_baseline, 2),
                    "faults_s": round(t_faults, 2), "false_alarm_s": round(t_fa, 2)},
    }


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------
def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if math.isinf(x):
        return "inf"
    if math.isnan(x):
        return "nan"
    return format(x, ".3g")


def format_table(doc: Mapping[str, Any]) -> str:
    """The terminal report: the fault table, the false-alarm lines, the verdict and timings."""
    lines = _fault_table(doc) if doc["faults"] else []
    fa = doc["false_alarm"]
    if fa["verdict"] != "not_run":
        if lines:
            lines.append("")
        lines.append(f"false alarm: {fa['verdict']}, {fa['runs']} seeded runs "
                     f"({fa['seeds_per_case']} seeds x {len(fa['cases'])} cases), {fa['failures']} failed; "
                     f"worst margin {_fmt(fa['worst_margin'])} ({fa['worst_case']}, stage {fa['worst_stage']}, "
                     f"seed {fa['worst_seed']})")
        for c in fa["cases"]:
            failed = "" if c["verdict"] == "pass" else f"  FAILED seeds {[x['seed'] for x in c['failures']]}"
            lines.append(f"  {c['case']:<28} worst margin {_fmt(c['worst_margin']):<9} at {c['worst_stage']} "
                         f"(seed {c['worst_seed']}){failed}")
    t = doc["timings"]
    lines.append("")
    lines.append(f"selftest {doc['verdict'].upper()} in {t['total_s']:.1f} s (baseline {t['baseline_s']:.1f} s, "
                 f"faults {t['faults_s']:.1f} s, false alarm {t['false_alarm_s']:.1f} s)")
    for p in doc["problems"]:
        lines.append(f"  - {p}")
    return "\n".join(lines)


def _fault_table(doc: Mapping[str, Any]) -> List[str]:
    rows = [("fault", "expected", "found", "ok", "margin@exp", "largest local", "caught by")]
    for f in doc["faults"]:
        if f["margin_at_expected"] is not None:
            margin = _fmt(f["margin_at_expected"])
        elif f["structural_at_expected"]:
            margin = "structural"
        else:
            margin = "-"
        if f["largest_local_error_stage"] is None:
            local = "-"
        elif f["largest_local_error"] is not None and math.isinf(f["largest_local_error"]):
            local = f"{f['largest_local_error_stage']} structural"
        else:
            local = f"{f['largest_local_error_stage']} {_fmt(f['largest_local_error'])}"
        caught = f"{len(f['caught_by'])}/{len(f['cases_run'])}"
        if f["caught_by"] and len(f["caught_by"]) == len(f["cases_run"]) and len(f["caught_by"]) > 3:
            caught += " (every applicable case)"
        elif f["caught_by"]:
            caught += " " + ", ".join(f["caught_by"])
        ok = {"pass": "yes", "fail": "NO", "skipped": "skip"}[f["status"]]
        rows.append((f["name"], f["expected_stage"], f["found_stage"] or "-", ok, margin, local, caught))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 9)
    for f in doc["faults"]:
        if f["status"] == "fail":
            lines.append(f"  {f['name']}: {f['reason']}")
    return lines


def check_hub(hub: Path, force: bool) -> None:
    """Refuse (UsageError) a hub path that is a file, unwritable, or already holds a selftest.json."""
    if hub.exists() and not hub.is_dir():
        raise UsageError(f"hub {hub} exists and is not a folder; give a folder path for --hub")
    if (hub / SELFTEST_JSON).exists() and not force:
        raise UsageError(f"hub {hub} already holds {SELFTEST_JSON}; choose another --hub or pass --force to replace it")
    probe = hub
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise UsageError(f"hub {hub} is not writable ({probe} is read-only)")


def write_json(path: Path, doc: Mapping[str, Any]) -> None:
    data = (json.dumps(to_json(doc), indent=1, allow_nan=False) + "\n").encode()
    write_bytes_atomic(path, data)


def default_hub() -> Path:
    base = REPORTS_DIR / f"selftest-{time.strftime('%Y-%m-%dT%H%M%SZ', time.gmtime())}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m parity.selftest", description=__doc__.split("\n\n")[0])
    p.add_argument("--hub", type=Path, help="folder for selftest.json (default: a new reports/selftest-<stamp>/)")
    p.add_argument("--fault", nargs="+", action="extend", metavar="NAME", help="run only these faults")
    p.add_argument("--case", nargs="+", action="extend", metavar="NAME", help="run only these cases")
    p.add_argument("--false-alarm-seeds", type=int, default=DEFAULT_SEEDS, metavar="N",
                   help=f"input seeds per case for the false-alarm check (default {DEFAULT_SEEDS}; 0 skips it)")
    p.add_argument("--only-false-alarm", action="store_true", help="run only the false-alarm check")
    p.add_argument("--force", action="store_true", help="replace an existing selftest.json in --hub")
    p.add_argument("--reference", choices=list(REFERENCE_MODES), default="process",
                   help="run the TensorFlow reference in one child process (default) or in this process")
    p.add_argument("--list", action="store_true", help="list the faults and the cases they apply to, then exit")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def _list(out) -> None:
    suite = case_registry.suite("default")
    for f in fault_catalogue.FAULTS:
        names = [c.name for c in suite if f.applicable(c)]
        print(f"{f.name:<28} {f.expected_stage:<18} {f.description}", file=out)
        print(f"{'':<28} applies to {f.applies.text}: {', '.join(names) or 'NO default case'}", file=out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    prog = "parity.selftest"
    try:
        if args.false_alarm_seeds < 0:
            raise UsageError(f"--false-alarm-seeds must be >= 0, got {args.false_alarm_seeds}")
        if args.only_false_alarm and args.false_alarm_seeds == 0:
            raise UsageError("--only-false-alarm needs --false-alarm-seeds >= 1")
        if args.list:
            _list(sys.stdout)
            return 0
        # validate names and the hub before anything slow runs
        select_cases(args.case)
        select_faults(args.fault)
        hub = args.hub if args.hub is not None else default_hub()
        check_hub(hub, args.force)
        progress = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
        doc = run_selftest(faults=args.fault, cases=args.case, false_alarm_seeds=args.false_alarm_seeds,
                           only_false_alarm=args.only_false_alarm, reference=args.reference, progress=progress)
        doc["argv"] = list(sys.argv[1:] if argv is None else argv)
        doc["hub"] = str(hub)
        print(format_table(doc))
        check_hub(hub, args.force)  # still ours to write (nobody wrote one meanwhile)
        write_json(hub / SELFTEST_JSON, doc)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except ReferenceFailure as exc:
        print(f"{prog}: error: the reference failed: {str(exc).splitlines()[0] if str(exc) else exc!r}",
              file=sys.stderr)
        return 2
    print(f"wrote {hub / SELFTEST_JSON}")
    return 0 if doc["verdict"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
