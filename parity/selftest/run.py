"""The self-test as one engine plan: clean runs, fault runs and false-alarm seeds.

For every needed case the plan holds the comparison of the clean candidate with the reference
(:meth:`parity.engine.Plan.add_case`: the noise-floor decision and teacher forcing are the
engine's), one comparison per applicable fault (the candidate under the fault, teacher-forced
with the same reference run, which the plan shares) and one per false-alarm seed
(``Case.with_(input_seed=...)`` regenerates the fixture). The engine runs the reference and
the candidate side in their own workers at once; each worker builds a model once and reuses it
across seeds and faults that do not change the network.

Faults run only where the clean candidate passes: fault comparisons are judged after the clean
ones (a fault on a case whose clean run fails is not run, as before; it costs a run here, but
keeps the plan one plan).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from .. import faults as fault_catalogue
from ..engine import Engine, Outcome
from ..tolerances import ToleranceTable, load_tolerances
from .output import SCHEMA, SCHEMA_VERSION, UsageError, _fmt
from .verdicts import _finite_or_none, _largest_local, _worst_margin, summarise_fault, summary_row

DEFAULT_SEEDS = 20
Progress = Callable[[str], None]


def select_cases(names: Optional[Sequence[str]], cases=None) -> List[Any]:
    from .. import cases as default_cases

    cases = cases or default_cases
    if not names:
        return list(cases.suite("default"))
    out = []
    for n in names:
        if n not in cases.CASES:
            raise UsageError(f"unknown case {n!r}; known cases are: {', '.join(cases.CASES)}")
        if cases.CASES[n] not in out:
            out.append(cases.CASES[n])
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


def _failure_text(o: Outcome) -> Optional[str]:
    """"stage: error" of a candidate that raised part-way, "build: ..." of one that never ran."""
    if o.result is None:
        return f"build: {o.errors[0]['reason'] if o.errors else o.error}"
    if o.error is not None:
        return o.errors[0]["reason"] if o.errors else o.error
    return None


def _local_errors(o: Outcome) -> Dict[str, str]:
    cand = o.outputs.get("candidate")
    return dict(cand.capture.meta.get("local_errors") or {}) if cand is not None else {}


def _clean_row(case, o: Outcome) -> Dict[str, Any]:
    res = o.result
    crash, errors = _failure_text(o), _local_errors(o)
    verdict = res.verdict if res is not None else "fail"
    problems = list(res.problems) if res is not None else []
    if crash or errors:
        verdict = "fail"
        problems.append(f"clean candidate raised: {crash or errors}")
    stage, margin = _worst_margin(res) if res is not None else (None, float("inf"))
    return {"case": case.name, "covers": case.covers, "dtype": case.dtype, "verdict": verdict,
            "first_divergent_stage": res.first_divergent_stage if res is not None else None,
            "worst_margin": margin, "worst_stage": stage, "problems": problems}


def fault_run(fault: fault_catalogue.Fault, case, o: Outcome, seconds: float) -> Dict[str, Any]:
    """The row of one fault on one case, from its decided comparison."""
    crash = _failure_text(o)
    res = o.result
    if res is None:
        return {"case": case.name, "verdict": "fail", "first_divergent_stage": "build", "root_cause_stage": None,
                "failed_stages": [], "margin_at_expected": None, "local_error_at_expected": None,
                "problem_at_expected": None, "largest_local_error_stage": None, "largest_local_error": None,
                "local_errors": {}, "crash": crash, "seconds": seconds, "message": ""}
    exp = res.stage(fault.expected_stage)
    local = o.local or {}
    largest = _largest_local(res, local, o.outputs["reference"].capture.stages)
    first = res.first_divergent_stage
    if crash is not None and first is None:
        first = crash.split(":", 1)[0]
    return {
        "case": case.name,
        "verdict": "fail" if (crash or res.verdict != "pass") else "pass",
        "first_divergent_stage": first,
        "root_cause_stage": res.root_cause_stage,
        "failed_stages": [s.name for s in res.stages if not s],
        "margin_at_expected": _finite_or_none(exp.margin),
        "local_error_at_expected": _finite_or_none(exp.local_error),
        "problem_at_expected": exp.problem,
        "largest_local_error_stage": largest[0],
        "largest_local_error": largest[1],
        "local_errors": _local_errors(o),
        "crash": crash,
        "seconds": seconds,
        "message": exp.message if not exp else "",
    }


def run_selftest(*, faults: Optional[Sequence[str]] = None, cases: Optional[Sequence[str]] = None,
                 false_alarm_seeds: int = DEFAULT_SEEDS, only_false_alarm: bool = False,
                 tolerances: Optional[ToleranceTable] = None,
                 catalogue: Optional[Sequence[fault_catalogue.Fault]] = None,
                 isolation: str = "workers", pair=None, job_timeout: Optional[float] = None,
                 progress: Progress = lambda s: None) -> Dict[str, Any]:
    """Run the self-test on ``pair`` (default reference_tf:torch_impl; the faults are injected
    into its candidate side); return the ``selftest.json`` document."""
    from ..pairs import resolve_pair
    from ..pool import DEFAULT_JOB_TIMEOUT

    t_start = time.perf_counter()
    pair = resolve_pair(pair)
    selected_cases = select_cases(cases, pair.cases)
    not_run = None
    if pair.candidate != fault_catalogue.PATCHED_SIDE and not only_false_alarm:
        if faults:
            raise UsageError(f"the fault catalogue patches the {fault_catalogue.PATCHED_SIDE} side; pair {pair.name}'s "
                             f"candidate is {pair.candidate} (run --only-false-alarm for it)")
        only_false_alarm = True  # the false-alarm check applies to any pair; the faults do not
        not_run = (f"the fault catalogue patches the {fault_catalogue.PATCHED_SIDE} side, not {pair.candidate}: "
                   f"only the false-alarm check ran")
        progress(f"faults not run: {not_run}")
    selected_faults = [] if only_false_alarm else select_faults(faults, catalogue)
    faults_required = not cases or bool(faults)  # restricted cases: unrunnable faults are skipped
    tol = tolerances if tolerances is not None else load_tolerances()
    needed = [c for c in selected_cases if false_alarm_seeds > 0 or any(f.applicable(c) for f in selected_faults)]
    engine = Engine(pair, isolation=isolation, job_timeout=job_timeout or DEFAULT_JOB_TIMEOUT)
    try:
        doc = _run(engine, pair, selected_cases, selected_faults, needed, faults_required, false_alarm_seeds, tol,
                   isolation, progress, t_start)
        doc["faults_not_run"] = not_run
        return doc
    finally:
        engine.close()


def _check_sides(outcomes: List[Outcome]) -> Dict[str, Dict[str, str]]:
    """Versions per role from the first clean outcome; a side that is not installed is a
    usage error (exit 2), as a reference that fails to run."""
    from ..sides import SideUnavailable

    for o in outcomes:
        if isinstance(o.exception, SideUnavailable) or any(e.get("kind") == "unavailable" for e in o.errors):
            raise UsageError(f"a side cannot be used: {o.error}")
        ref_failed = [e for e in o.errors if e.get("job", "").startswith(("reference", "reference_float32"))]
        if ref_failed:
            raise UsageError(f"the reference failed: {ref_failed[0]['reason']}")
    for o in outcomes:
        if o.outputs.get("reference") is not None and o.outputs.get("candidate") is not None:
            return {role: dict(o.outputs[role].capture.meta.get("versions") or {}) for role in ("reference", "candidate")}
    return {}


def _run(engine, pair, selected_cases, selected_faults, needed, faults_required, seeds, tol, isolation, progress,
         t_start) -> Dict[str, Any]:
    # 1. clean runs
    progress(f"reference and clean candidate on {len(needed)} case(s)")
    plan = engine.plan()
    for case in needed:
        plan.add_case(case, tolerances=tol, key=f"clean/{case.name}", tag=case)
    t0 = time.perf_counter()
    clean_out = engine.run(plan, on_outcome=lambda o: progress(
        f"  case {o.comparison.case}{' (noise floor)' if o.comparison.meta['tolerance_mode'] == 'noise_floor' else ''}"
        f": clean candidate {o.result.verdict if o.result is not None else 'error: ' + str(o.error)}"))
    t_baseline = time.perf_counter() - t0
    versions = _check_sides(clean_out)
    clean = [_clean_row(o.comparison.tag, o) for o in clean_out]
    references = {k: jr for o in clean_out for k, jr in o.nodes.items() if k.startswith("reference")}
    passing = {row["case"] for row in clean if row["verdict"] == "pass"}

    # 2. faults (one plan: the reference runs are shared, the workers stay warm)
    t0 = time.perf_counter()
    plan = engine.plan()
    for fault in selected_faults:
        for case in selected_cases:
            if case.name in passing and fault.applicable(case):
                plan.add_case(case, tolerances=tol, faults=(fault.name,), key=f"{fault.name}/{case.name}",
                              tag=(fault, case))
    runs: Dict[str, List[Dict[str, Any]]] = {f.name: [] for f in selected_faults}
    clock = {"t": time.perf_counter()}

    def fault_done(o: Outcome) -> None:
        fault, case = o.comparison.tag
        now = time.perf_counter()
        runs[fault.name].append(fault_run(fault, case, o, now - clock["t"]))
        clock["t"] = now

    engine.run(plan, on_outcome=fault_done, reuse=references)  # the clean runs' references
    fault_rows = []
    for fault in selected_faults:
        row = summarise_fault(fault, runs[fault.name], required=faults_required)
        fault_rows.append(row)
        progress(f"  fault {fault.name}: {row['status']} ({row['reason']}; found {row['found_stage']}, "
                 f"caught by {len(row['caught_by'])}/{len(runs[fault.name])}, "
                 f"{sum(r['seconds'] for r in runs[fault.name]):.1f} s)")
    t_faults = time.perf_counter() - t0

    # 3. false alarms: the clean candidate over input seeds
    t0 = time.perf_counter()
    fa_cases = []
    if seeds > 0:
        progress(f"false-alarm check: {seeds} input seeds per case")
        plan = engine.plan()
        for case in needed:
            for seed in range(seeds):
                plan.add_case(case.with_(input_seed=seed), tolerances=tol, key=f"seed{seed}/{case.name}",
                              tag=(case, seed))
        per_case: Dict[str, Dict[str, Any]] = {}
        clock["t"] = time.perf_counter()

        def seed_done(o: Outcome) -> None:
            case, seed = o.comparison.tag
            r = per_case.setdefault(case.name, {"case": case.name, "seeds": [], "failures": [], "worst_margin": 0.0,
                                                "worst_stage": None, "worst_seed": None, "seconds": 0.0})
            now = time.perf_counter()
            r["seconds"] += now - clock["t"]
            clock["t"] = now
            r["seeds"].append(seed)
            res, crash, errors = o.result, _failure_text(o), _local_errors(o)
            stage, margin = _worst_margin(res) if res is not None else (None, float("inf"))
            if r["worst_stage"] is None or margin > r["worst_margin"]:
                r.update(worst_margin=margin, worst_stage=stage, worst_seed=seed)
            if res is None or res.verdict != "pass" or crash or errors:
                r["failures"].append({"seed": seed, "first_divergent_stage": res.first_divergent_stage if res else None,
                                      "root_cause_stage": res.root_cause_stage if res else None,
                                      "worst_margin": margin, "crash": crash, "local_errors": errors,
                                      "failed_stages": [s.name for s in res.stages if not s] if res else []})

        engine.run(plan, on_outcome=seed_done)
        for case in needed:
            r = per_case[case.name]
            r["verdict"] = "pass" if not r["failures"] else "fail"
            fa_cases.append(r)
            progress(f"  case {case.name}: {r['verdict']}, worst margin {_fmt(r['worst_margin'])} at "
                     f"{r['worst_stage']} (seed {r['worst_seed']}), {r['seconds']:.1f} s")
    t_fa = time.perf_counter() - t0
    if fa_cases:
        w = max(fa_cases, key=lambda r: r["worst_margin"])
        false_alarm = {"seeds_per_case": seeds, "cases": fa_cases,
                       "verdict": "pass" if all(r["verdict"] == "pass" for r in fa_cases) else "fail",
                       "worst_margin": w["worst_margin"], "worst_case": w["case"], "worst_stage": w["worst_stage"],
                       "worst_seed": w["worst_seed"], "runs": sum(len(r["seeds"]) for r in fa_cases),
                       "failures": sum(len(r["failures"]) for r in fa_cases)}
    else:
        false_alarm = {"seeds_per_case": 0, "cases": [], "verdict": "not_run", "worst_margin": None}

    problems = []
    bad_clean = [c["case"] for c in clean if c["verdict"] != "pass"]
    if bad_clean:
        problems.append(f"the clean candidate fails case(s) {', '.join(bad_clean)} (faults were not run there)")
    failed_faults = [r["name"] for r in fault_rows if r["status"] == "fail"]
    if failed_faults:
        problems.append(f"fault(s) not detected or not localised: {', '.join(failed_faults)}")
    if false_alarm["verdict"] == "fail":
        problems.append(f"false alarm: the clean candidate failed {false_alarm['failures']} of "
                        f"{false_alarm['runs']} seeded runs")
    total = time.perf_counter() - t_start
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "verdict": "pass" if not problems else "fail", "problems": problems,
        "faults": fault_rows,
        "summary": [summary_row(r) for r in fault_rows],
        "false_alarm": false_alarm,
        "clean": clean,
        "cases": [c.name for c in selected_cases],
        "pair": pair.to_dict(),
        "isolation": isolation,
        "versions": versions,
        "tolerances": str(getattr(tol, "path", "")),
        "timings": {"total_s": round(total, 2), "baseline_s": round(t_baseline, 2),
                    "faults_s": round(t_faults, 2), "false_alarm_s": round(t_fa, 2)},
    }
