"""``python -m parity.selftest --backward``: the backward-only faults of the catalogue
(``kind="backward"``: the forward is the clean port's bit for bit, the gradient is not), each
injected into the candidate on the default cases where it applies, with the backward comparison
on. A fault is

* ``caught`` when its forward comparison passes (every stage) and its backward comparison
  fails first at its expected adjoint stage (or, for a fault that shows in a weight before any
  stage, with its expected weight among the failing weights) for a loss it names, on every
  case it applies to;
* ``caught_elsewhere`` when the backward comparison fails, but first somewhere else;
* ``missed`` when the backward comparison passes;
* ``forward_visible`` when the forward comparison fails: a backward-only fault whose forward
  differs is itself a defect of the fault.

The clean port's backward comparison must pass on the same cases (no false alarm). The verdict
is pass when both hold. Runs through one engine (the sides' workers serve every job).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from .. import faults as fault_catalogue
from ..gradients import adjoint_name

STATUSES = ("caught", "caught_elsewhere", "missed", "forward_visible", "error")


def backward_faults(names: Optional[Sequence[str]] = None):
    chosen = list(fault_catalogue.BACKWARD_FAULTS)
    if names:
        by = {f.name: f for f in chosen}
        unknown = [n for n in names if n not in by]
        if unknown:
            raise KeyError(f"unknown backward-only fault {unknown[0]!r}; known: {', '.join(by)}")
        chosen = [by[n] for n in names]
    return chosen


def _where(run, loss: str) -> Dict[str, Any]:
    lb = run.backward.losses[loss]
    return {"verdict": lb.verdict, "first_divergent_stage": lb.adjoint.first_divergent_stage,
            "root_cause_stage": lb.adjoint.root_cause_stage,
            "first_divergent_weight": lb.weights.first_divergent_stage,
            "failing_weights": [s.name for s in lb.weights.stages if not s]}


def _judge(fault, runs: Dict[str, Any]) -> str:
    statuses = []
    for case, got in runs.items():
        if "error" in got:
            statuses.append("error")
            continue
        if got["forward_verdict"] != "pass":
            statuses.append("forward_visible")
            continue
        losses = [got["losses"][loss] for loss in fault.losses if loss in got["losses"]]
        if not any(w["verdict"] == "fail" for w in losses):
            statuses.append("missed")
            continue
        stage = adjoint_name(fault.expected_stage)
        # at the expected adjoint stage; or, for a fault that shows in a weight, with that weight failing
        hit = any(w["verdict"] == "fail" and (w["first_divergent_stage"] == stage
                                              or (fault.expected_weight
                                                  and fault.expected_weight in w.get("failing_weights", ())))
                  for w in losses)
        statuses.append("caught" if hit else "caught_elsewhere")
    for s in ("error", "forward_visible", "missed", "caught_elsewhere"):
        if s in statuses:
            return s
    return "caught" if statuses else "missed"


def run_backward_selftest(*, faults: Optional[Sequence[str]] = None, cases: Optional[Sequence[str]] = None,
                          isolation: str = "workers", job_timeout: Optional[float] = None, pair=None,
                          progress: Callable[[str], None] = lambda s: None) -> Dict[str, Any]:
    from .. import cases as case_registry
    from ..engine import Engine
    from ..pairs import resolve_pair
    from ..run import run_case

    pair = resolve_pair(pair)
    suite = [case_registry.get_case(c) for c in cases] if cases else list(case_registry.suite("default"))
    chosen = backward_faults(faults)
    engine = Engine(pair, isolation=isolation, job_timeout=job_timeout)
    t0 = time.perf_counter()
    rows: List[Dict[str, Any]] = []
    clean: Dict[str, Any] = {}
    try:
        needed = sorted({c.name for f in chosen for c in suite if f.applicable(c)},
                        key=[c.name for c in suite].index)
        for name in needed:
            run = run_case(name, engine=engine, task="backward")
            clean[name] = {"forward_verdict": run.result.verdict, "backward_verdict": run.backward.verdict}
            progress(f"clean {name}: forward {run.result.verdict}, backward {run.backward.verdict}")
        for f in chosen:
            runs: Dict[str, Any] = {}
            for case in [c for c in suite if f.applicable(c)]:
                try:
                    run = run_case(case.name, engine=engine, task="backward", faults=(f.name,))
                except Exception as exc:  # noqa: BLE001 - reported in the fault's row
                    runs[case.name] = {"error": f"{type(exc).__name__}: {exc}"}
                    continue
                runs[case.name] = {"forward_verdict": run.result.verdict,
                                   "forward_first_divergent": run.result.first_divergent_stage,
                                   "losses": {loss: _where(run, loss) for loss in run.backward.losses}}
            status = _judge(f, runs)
            rows.append({"fault": f.name, "description": f.description, "expected_stage": f.expected_stage,
                         "expected_weight": f.expected_weight or None, "losses": list(f.losses), "status": status,
                         "cases": runs})
            progress(f"{f.name}: {status}")
    finally:
        engine.close()
    false_alarms = [n for n, c in clean.items() if c["backward_verdict"] != "pass" or c["forward_verdict"] != "pass"]
    verdict = "pass" if chosen and all(r["status"] == "caught" for r in rows) and not false_alarms else "fail"
    return {"schema": "parity.selftest_backward", "schema_version": 1, "verdict": verdict, "pair": pair.spec,
            "faults": rows, "clean": clean, "false_alarms": false_alarms,
            "wall_s": time.perf_counter() - t0}


def format_backward_table(doc: Dict[str, Any]) -> str:
    lines = [f"{'fault':<30} {'expected':<26} {'status':<16} where it first showed (case: loss -> stage | weight)"]
    for r in doc["faults"]:
        expected = adjoint_name(r["expected_stage"]) + (f" | {r['expected_weight']}" if r["expected_weight"] else "")
        shown = []
        for case, got in r["cases"].items():
            if "error" in got:
                shown.append(f"{case}: error")
                continue
            if got["forward_verdict"] != "pass":
                shown.append(f"{case}: FORWARD {got['forward_first_divergent']}")
                continue
            for loss, w in got["losses"].items():
                if w["verdict"] == "fail":
                    shown.append(f"{case}: {loss} -> {w['first_divergent_stage'] or '-'} | "
                                 f"{w['first_divergent_weight'] or '-'}")
        lines.append(f"{r['fault']:<30} {expected:<26} {r['status']:<16} " + "; ".join(shown[:3])
                     + (" ..." if len(shown) > 3 else ""))
    caught = sum(r["status"] == "caught" for r in doc["faults"])
    lines.append(f"clean port: {len(doc['clean'])} case(s), false alarms: {', '.join(doc['false_alarms']) or 'none'}")
    lines.append(f"verdict: {doc['verdict'].upper()}  {caught}/{len(doc['faults'])} backward-only faults caught at "
                 f"their expected stage or weight (wall {doc['wall_s']:.1f}s)")
    return "\n".join(lines)
