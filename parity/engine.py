"""The engine: executes plans (:mod:`parity.plan`) of one pair.

:class:`Engine` runs a plan's nodes on one executor: in this process, or in the worker pool
(:mod:`parity.pool`, several sides busy at once), and hands over one
:class:`parity.plan.Outcome` per comparison, in plan order, as soon as it is decided. A node
that fails (an error, a crash, a timeout) fails the comparisons that use it, with the side, the
job and the reason; the rest of the plan still runs.

Everything that runs sides builds a plan: :func:`parity.run.run_case`, the device matrix, the
self-test (clean run, faults, false-alarm seeds), noise-floor runs and the report's recheck.
The plan types are re-exported here (``from parity.engine import Plan, Run, ...``).
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from .capture import load_capture
from .compare import compare
from .jobs import Job, JobResult, execute, weights_digest
from .pairs import Pair, resolve_pair
from .plan import (TOLERANCE_MODES, Comparison, NoiseFloor, Outcome, Plan, Run, Stored, role_of,  # noqa: F401
                   uses_noise_floor)
from .pool import DEFAULT_JOB_TIMEOUT, JobError, WorkerPool
from .sides import SideUnavailable
from .tolerances import ToleranceTable, noise_floor_tolerances

log = logging.getLogger(__name__)

ISOLATIONS = ("inprocess", "workers", "subprocess")

__all__ = ["Comparison", "Engine", "ISOLATIONS", "InProcess", "NoiseFloor", "Outcome", "Plan", "Pooled", "Run", "role_of",
           "Stored", "TOLERANCE_MODES", "uses_noise_floor"]


# ------------------------------------------------------------------------------------ executors
class InProcess:
    """Runs each job in this process when it is submitted (what monkeypatching tests need)."""

    def __init__(self) -> None:
        self._done: List[Tuple[str, Any]] = []

    def can_take(self, job: Job) -> bool:
        return True

    def submit(self, job: Job, tag: str, teacher_file=None) -> None:
        t0 = time.perf_counter()
        try:
            out: Any = execute(job)
        except Exception as exc:  # noqa: BLE001 - the node fails, the plan goes on
            kind = "unavailable" if isinstance(exc, SideUnavailable) else "error"
            err = JobError(job.side, job.label, kind, f"{type(exc).__name__}: {exc}")
            err.original = exc
            out = err
        self._done.append((tag, out))
        log.debug("job %s: %.2f s", job.label, time.perf_counter() - t0)

    def wait(self) -> List[Tuple[str, Any]]:
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        pass


class Pooled:
    """Runs jobs in a :class:`WorkerPool`: one worker per side and device, several at once."""

    def __init__(self, pool: WorkerPool):
        self.pool = pool

    def can_take(self, job: Job) -> bool:
        return not self.pool.busy(job)

    def submit(self, job: Job, tag: str, teacher_file=None) -> None:
        self.pool.submit(job, tag, teacher_file=teacher_file)

    def wait(self) -> List[Tuple[str, Any]]:
        return [(t.tag, out) for t, out in self.pool.wait()]

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------ engine
class Engine:
    """Executes plans of one pair. ``isolation``: "inprocess", "workers" (one long-lived worker
    per side, shared by every plan this engine runs) or "subprocess" (a fresh worker per job).
    ``pool``: an existing WorkerPool to use (not closed by :meth:`close`). ``lookahead``: how
    many undecided comparisons may have jobs in flight (bounds the captures held in memory)."""

    def __init__(self, pair: Optional[Pair] = None, *, isolation: str = "inprocess",
                 pool: Optional[WorkerPool] = None, job_timeout: Optional[float] = DEFAULT_JOB_TIMEOUT,
                 lookahead: int = 2):
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation={isolation!r}; expected one of {list(ISOLATIONS)}")
        self.pair = pair if pair is not None else resolve_pair(None)
        self.isolation = isolation
        self.lookahead = max(1, int(lookahead))
        self.job_timeout = job_timeout
        self._pool = pool
        self._own_pool: Optional[WorkerPool] = None
        self._executor: Any = InProcess() if isolation == "inprocess" else None

    @property
    def pool(self) -> Optional[WorkerPool]:
        """The worker pool (started on first use; None in process)."""
        if self.isolation == "inprocess":
            return None
        if self._pool is None:
            self._pool = self._own_pool = WorkerPool(job_timeout=self.job_timeout,
                                                     fresh=self.isolation == "subprocess")
        return self._pool

    @property
    def executor(self) -> Any:
        if self._executor is None:
            self._executor = Pooled(self.pool)
        return self._executor

    def plan(self) -> Plan:
        return Plan(pair=self.pair)

    def devices(self) -> Dict[str, Dict[str, str]]:
        """side -> {device: description} for both sides of the pair, asked where the sides run
        (in this process, or of their workers); a side that cannot be asked holds
        ``{"__error__": reason}``."""
        from .sides import get_side, side_target

        out: Dict[str, Dict[str, str]] = {}
        for side in dict.fromkeys((self.pair.reference, self.pair.candidate)):
            try:
                if self.pool is None:
                    out[side] = get_side(side).devices()
                else:
                    out[side] = self.pool.devices(side, side_target(side))
            except Exception as exc:  # noqa: BLE001 - a side that cannot be imported sees no device
                out[side] = {"__error__": f"{type(exc).__name__}: {exc}"}
        return out

    def close(self, wait: bool = True) -> None:
        if self._own_pool is not None:
            self._own_pool.close(wait=wait)
            self._own_pool = self._pool = None
            self._executor = None

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ running a plan
    def run(self, plan: Plan, on_outcome: Optional[Callable[[Outcome], None]] = None,
            on_start: Optional[Callable[[Comparison], None]] = None,
            reuse: Optional[Mapping[str, JobResult]] = None) -> List[Outcome]:
        """Execute ``plan``; return the outcomes in plan order (also handed to ``on_outcome``
        one by one, in plan order, as each is decided). ``reuse``: outputs of nodes an earlier
        plan ran (``Outcome.nodes``), taken instead of running those nodes again."""
        state = self.state = _State(self, plan)
        for key, out in (reuse or {}).items():
            if key in plan.nodes:
                state.outputs[key] = out
        outcomes: List[Outcome] = []
        pending = list(plan.comparisons)
        started = set()
        while pending:
            for c in pending[: self.lookahead]:  # first keep the workers busy ...
                for key in c.nodes:
                    if state.dispatch(key) and c.key not in started:
                        started.add(c.key)
                        if on_start is not None:
                            on_start(c)
            if state.decided(pending[0]):  # ... then compare here while they work
                out = state.outcome(pending.pop(0))
                outcomes.append(out)
                if on_outcome is not None:
                    on_outcome(out)
                continue
            if not state.running:
                for c in pending[: self.lookahead]:  # nothing can move: fail what waits on a lost node
                    for key in c.nodes:
                        state.fail_blocked(key)
                continue
            state.collect()
        return outcomes


class _State:
    """Book-keeping of one plan execution: node outputs, failures, prepared cases."""

    def __init__(self, engine: Engine, plan: Plan):
        self.engine, self.plan = engine, plan
        self.outputs: Dict[str, JobResult] = {}
        self.failed: Dict[str, JobError] = {}
        self.running: Dict[str, float] = {}
        self.busy_s = 0.0  # wall time during which at least one job was running
        self._busy_since: Optional[float] = None
        self._prepared: "OrderedDict[str, tuple]" = OrderedDict()
        self.prepare_s: Dict[str, float] = {}
        self._users: Dict[str, int] = {}
        for c in plan.comparisons:
            for k in c.nodes:
                self._users[k] = self._users.get(k, 0) + 1
        for node in plan.nodes.values():
            for d in node.deps:
                self._users[d] = self._users.get(d, 0) + 1

    def finished(self, key: str) -> bool:
        return key in self.outputs or key in self.failed

    def decided(self, c: Comparison) -> bool:
        return all(self.finished(k) for k in c.nodes)

    def _prepare(self, case) -> tuple:
        name = case.name
        if name not in self._prepared:
            t0 = time.perf_counter()
            config, weights, inputs = self.plan.pair.prepare(case)
            self.prepare_s[name] = self.prepare_s.get(name, 0.0) + time.perf_counter() - t0
            self._prepared[name] = (config, weights, inputs, weights_digest(weights), weights_digest(inputs))
            while len(self._prepared) > 4:
                self._prepared.popitem(last=False)
        return self._prepared[name]

    def dispatch(self, key: str) -> bool:
        """Start node ``key`` if it is waiting and can start now; True when it was started."""
        if self.finished(key) or key in self.running:
            return False
        node = self.plan.nodes[key]
        for d in node.deps:
            self.dispatch(d)
            if d in self.failed:
                self.failed[key] = JobError(node.side, node.label, "error",
                                            f"not run: the run it is teacher-forced from failed ({self.failed[d].reason})")
                return False
            if d not in self.outputs:
                return False
        if isinstance(node, Stored):  # input, not a run: a capture that cannot be read raises (CaptureError)
            t0 = time.perf_counter()
            cap = load_capture(node.path)
            self.outputs[key] = JobResult(capture=cap, timings={"load_s": time.perf_counter() - t0},
                                          file=Path(node.path))
            return True
        try:
            config, weights, inputs, wid, iid = self._prepare(node.case)
        except Exception as exc:  # noqa: BLE001 - e.g. a fixture that fails its checksum
            err = JobError(node.side, node.label, "error", f"{type(exc).__name__}: {exc}")
            err.original = exc
            self.failed[key] = err
            return True
        teacher = self.outputs[node.teacher] if node.teacher else None
        job = Job(side=node.side, config=config, weights=weights, inputs=inputs, dtype=node.dtype,
                  device=node.device, case=node.case.name, teacher=teacher.capture.stages if teacher else None,
                  repeats=node.repeats, faults=node.faults, allow_tf32=node.allow_tf32,
                  graph=self.plan.pair.graph, weights_id=wid, inputs_id=iid, label=f"{node.label} ({node.side})",
                  task=node.task, losses=node.losses,
                  teacher_gradients=teacher.gradients if teacher is not None and node.task == "backward" else None)
        ex = self.engine.executor
        if not ex.can_take(job):
            return False
        if not self.running:
            self._busy_since = time.perf_counter()
        self.running[key] = time.perf_counter()
        ex.submit(job, key, teacher_file=teacher.file if teacher else None)
        if isinstance(ex, InProcess):
            self.collect()
        return True

    def collect(self) -> None:
        for key, out in self.engine.executor.wait():
            self.running.pop(key, None)
            if not self.running and self._busy_since is not None:
                self.busy_s += time.perf_counter() - self._busy_since
                self._busy_since = None
            if isinstance(out, JobError):
                log.error("%s", out)
                self.failed[key] = out
            else:
                self.outputs[key] = out

    def fail_blocked(self, key: str) -> None:
        if not self.finished(key) and key not in self.running:
            node = self.plan.nodes[key]
            self.failed[key] = JobError(getattr(node, "side", "?"), node.label, "error", "not run: a run it needs failed")

    def _release(self, key: str) -> None:
        """One user of ``key`` is done; the last one drops its output, and then the node
        releases its own teacher."""
        self._users[key] -= 1
        if self._users[key] <= 0:
            self.outputs.pop(key, None)
            for d in getattr(self.plan.nodes.get(key), "deps", ()):
                self._release(d)

    def outcome(self, c: Comparison) -> Outcome:
        roles, by_key = {}, {}
        for key in c.nodes:
            if key in self.outputs:
                roles[role_of(key)] = by_key[key] = self.outputs[key]
        failed = [self.failed[k] for k in c.nodes if k in self.failed]
        out = Outcome(comparison=c, result=None, outputs=roles, nodes=by_key)
        out.timings["prepare_s"] = self.prepare_s.get(c.case, 0.0)
        if failed:
            first = failed[0]
            out.error = str(first)
            out.exception = getattr(first, "original", first)
            out.errors = [e.to_dict() for e in failed]
        else:
            crashed = [(k, self.outputs[k]) for k in c.nodes if self.outputs[k].crash]
            t0 = time.perf_counter()
            ref, cand = self.outputs[c.reference], self.outputs[c.candidate]
            try:
                tol = self._tolerance(c)
                local = out.local
                out.result = compare(ref.capture, cand.capture, tol, case=c.case, dtype=c.dtype, device=c.device,
                                     local=local, stage_list=self.plan.pair.stage_list)
                out.result.meta.update(c.meta)
                if c.task == "backward":
                    out.backward = self._backward(c)
            except Exception as exc:  # noqa: BLE001 - e.g. a noise floor from non-finite runs
                out.error, out.exception = f"{type(exc).__name__}: {exc}", exc
            out.timings["compare_s"] = time.perf_counter() - t0
            if crashed and out.error is None:
                k, o = crashed[0]
                node = self.plan.nodes[k]
                out.error = f"side {node.side}, job {node.label!r}: the forward raised at stage {o.crash}"
                out.exception = o.exception
                out.errors = [{"side": node.side, "job": node.label, "kind": "error", "reason": o.crash, "tail": []}]
        for key in c.nodes:
            self._release(key)
        return out

    def _backward(self, c: Comparison):
        from .backward import compare_backward

        tol = c.tolerance
        noise = None
        if isinstance(tol, NoiseFloor):
            noise = (self.outputs[tol.oracle], self.outputs[tol.float32], tol.k)
            tol = None
        return compare_backward(self.outputs[c.reference], self.outputs[c.candidate], tol, case=c.case,
                                dtype=c.dtype, device=c.device, stage_list=self.plan.pair.stage_list,
                                local=c.local is not None, noise_floor=noise)

    def _tolerance(self, c: Comparison):
        tol = c.tolerance
        if isinstance(tol, NoiseFloor):
            return noise_floor_tolerances(self.outputs[tol.oracle].capture, self.outputs[tol.float32].capture, k=tol.k,
                                          stages=self.plan.pair.stage_names)
        if isinstance(tol, ToleranceTable):
            return tol.for_stages(self.plan.pair.stage_names)
        return tol
