"""A case's comparison + the registry -> per-stage divergence labels and the case's verdict.

Works on the JSON form of a case (a report's case entry, or ``CaseResult.to_dict()``), so a
run, a recheck, ``parity show`` and the pytest suite judge alike. For the entries that match
the case (its name and dtype):

* a registered stage that still fails locally, within ``grow_factor`` x its measured
  err/tol: ``known`` (not a failure; every statistic and figure is still reported);
* a registered stage grown beyond ``grow_factor`` x the measured err/tol: ``grown`` (failure:
  a known bug got worse);
* a registered stage that passes, or passes when fed the reference's inputs (its error now
  comes from upstream): ``fixed`` (failure until the entry is removed, like a strict xfail);
* a registered or downstream stage holding NaN/Inf: ``new`` (a known divergence never covers
  non-finite values);
* an unregistered stage that fails end to end but passes locally, whose failing upstream
  root causes are all registered: ``known_propagated`` (from those stages);
* an unregistered stage propagated from an unregistered root cause: ``propagated``
  (failure); an unregistered stage failing locally (or not teacher-forced): ``new``.

Case verdict: ``fail`` when a stage is new / propagated / grown or the case has structural
problems; else ``fixed`` when an entry is fixed; else ``known`` when a stage is known; else the
comparison's own verdict. A case no entry matches is left exactly as it was.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, MutableMapping, Optional, Sequence, Set, Tuple

from parity.jsonable import decode_float
from parity.messages import fmt

from .registry import Divergence, Registry

STATUSES = ("known", "known_propagated", "new", "propagated", "grown", "fixed")
TOLERATED = ("known", "known_propagated")
#: Case verdicts once a registry is applied: "known" and "pass" do not fail a run.
CASE_VERDICTS = ("pass", "known", "fixed", "fail")
OK_VERDICTS = ("pass", "known")


def verdict_ok(verdict: Optional[str]) -> bool:
    return verdict in OK_VERDICTS


def _num(v: Any) -> Optional[float]:
    v = decode_float(v)
    return None if v is None else float(v)


def _nonfinite(st: Mapping[str, Any]) -> int:
    return int((st.get("nonfinite") or {}).get("elements", 0) or 0)


def _shape_status(st: Mapping[str, Any], e: Divergence) -> Tuple[str, str]:
    problem = str(st.get("problem") or "")
    if st.get("verdict") == "pass" or "shape mismatch" not in problem:
        return "fixed", (f"fixed: remove the entry {e.id!r} ({e.source}): the shapes agree now "
                         f"(registered: {e.measured['shape']})")
    if e.measured["shape"] not in problem:
        return "grown", f"known divergence {e.id!r} changed: {problem} (registered: {e.measured['shape']})"
    return "known", f"known divergence {e.id!r}: {e.measured['shape']}: {e.reason}"


def _registered_status(st: Mapping[str, Any], e: Divergence) -> Tuple[str, str]:
    if e.kind == "shape":
        return _shape_status(st, e)
    if e.kind == "error":
        return "fixed", f"fixed: remove the entry {e.id!r} ({e.source}): the case runs now (registered: it raised)"
    margin, local = _num(st.get("margin")), _num(st.get("local_error"))
    now = fmt(margin) if margin is not None else "n/a"
    if st.get("verdict") == "pass":
        return "fixed", (f"fixed: remove the entry {e.id!r} ({e.source}): the stage passes now (err/tol {now}; "
                         f"registered {fmt(e.err_over_tol)})")
    if _nonfinite(st):
        return "new", (f"holds NaN/Inf ({_nonfinite(st)} element(s)); a known divergence ({e.id!r}) never covers "
                       f"non-finite values")
    if st.get("label") == "propagated":
        return "fixed", (f"fixed: remove the entry {e.id!r} ({e.source}): the stage passes when fed the "
                         f"reference's inputs (local err/tol {fmt(local)}); its error now comes from upstream")
    if margin is None or not math.isfinite(margin):
        return "new", f"cannot be compared ({st.get('problem') or 'no error statistics'}); entry {e.id!r} needs a margin"
    ratio = margin / e.err_over_tol
    if margin > e.grow_factor * e.err_over_tol:
        return "grown", (f"known divergence {e.id!r} grew from err/tol {fmt(e.err_over_tol)} to {now} "
                         f"(x{fmt(ratio)} > grow_factor {e.grow_factor:g})")
    return "known", f"known divergence {e.id!r}: err/tol {now} (registered {fmt(e.err_over_tol)}, x{fmt(ratio)}): {e.reason}"


def _roots(name: str, by: Mapping[str, Mapping[str, Any]], graph: Mapping[str, Sequence[str]],
           status: Mapping[str, str], seen: Optional[Set[str]] = None) -> Tuple[List[str], List[str]]:
    """The failing upstream root causes of a propagated stage: (registered ones, unregistered ones).

    Walks the stage graph up through failing inputs; a registered stage (known or grown) is a
    root; a failing stage that is propagated (registered or not) is walked through; any other
    failing stage is an unregistered root."""
    seen = set() if seen is None else seen
    known, other = [], []
    for parent in graph.get(name, ()):
        st = by.get(parent)
        if st is None or st.get("verdict") == "pass" or parent in seen:
            continue
        seen.add(parent)
        if status.get(parent) in ("known", "grown"):
            known.append(parent)
        elif st.get("label") == "propagated" and not _nonfinite(st):
            k, o = _roots(parent, by, graph, status, seen)
            known += k
            other += o
        else:
            other.append(parent)
    return known, other


def judge_case(case: MutableMapping[str, Any], registry: Registry, graph: Mapping[str, Sequence[str]],
               ) -> Optional[Dict[str, Any]]:
    """Label ``case`` (a case entry; changed in place) with the registry; returns its summary
    ``{"verdict", "raw_verdict", "entries": [...]}`` or None when no entry matches the case (or
    it did not run: a crashed case stays a failure)."""
    entries = registry.for_case(case.get("name", ""), case.get("dtype"))
    if not entries:
        return None
    if case.get("error"):
        return _judge_error(case, entries)
    stages = [s for s in case.get("stages") or [] if isinstance(s, dict)]
    by = {s["name"]: s for s in stages}
    registered = {e.stage: e for e in entries}
    status: Dict[str, str] = {}
    labels: Dict[str, Dict[str, Any]] = {}
    applied = []
    for e in entries:  # registered stages first: the propagated ones are judged against them
        st = by.get(e.stage)
        if st is None:
            applied.append({"id": e.id, "stage": e.stage, "status": "new", "err_over_tol": None,
                            "registered": e.err_over_tol, "message": f"stage {e.stage} is missing from the case"})
            continue
        s, msg = _registered_status(st, e)
        status[e.stage] = s
        labels[e.stage] = {"status": s, "entry": e.id, "reason": e.reason, "where": e.where, "pitfall": e.pitfall,
                           "registered": e.err_over_tol, "grow_factor": e.grow_factor, "from": None, "message": msg}
        applied.append({"id": e.id, "stage": e.stage, "status": s, "err_over_tol": st.get("margin"),
                        "registered": e.err_over_tol, "message": msg})
    for st in stages:
        name = st["name"]
        if name in registered or st.get("verdict") == "pass":
            continue
        if st.get("label") == "propagated" and not _nonfinite(st):
            known, other = _roots(name, by, {k: tuple(v) for k, v in graph.items()}, status)
            if known and not other:
                s, msg = "known_propagated", f"known (propagated from {', '.join(known)})"
            else:
                s = "propagated"
                msg = (f"propagated from {', '.join(other)}, which no entry registers" if other
                       else "propagated, but no failing upstream stage was found")
            labels[name] = {"status": s, "entry": None, "from": known or other, "message": msg}
        else:
            why = ("holds NaN/Inf" if _nonfinite(st) else
                   "not teacher-forced, so not known to be propagated" if st.get("label") == "not_checked" else
                   "fails when fed the reference's inputs")
            labels[name] = {"status": "new", "entry": None, "from": None,
                            "message": f"new divergence: {why}, and no entry registers it"}
        status[name] = labels[name]["status"]
    for st in stages:
        if st["name"] in labels:
            st["divergence"] = labels[st["name"]]
    raw = case.get("verdict")
    covered = tuple(f"stage {n}:" for n, st in status.items() if st == "known" and registered.get(n) is not None
                    and registered[n].kind == "shape")
    problems = [p for p in case.get("problems") or [] if not str(p).startswith(covered or ("\0",))]
    verdict = _case_verdict(status.values(), applied, bool(problems), raw)
    case["raw_verdict"], case["verdict"] = raw, verdict
    summary = {"verdict": verdict, "raw_verdict": raw, "entries": applied}
    case["divergences"] = summary["entries"]
    return summary


def _judge_error(case: MutableMapping[str, Any], entries: Sequence[Divergence]) -> Optional[Dict[str, Any]]:
    """A case that did not run: known when an error entry's text is in its error, else untouched
    (a crashed case stays a failure)."""
    error = str(case.get("error") or "")
    hits = [e for e in entries if e.kind == "error" and e.measured["error"] in error]
    if not hits:
        return None
    applied = [{"id": e.id, "stage": e.stage, "status": "known", "err_over_tol": None, "registered": None,
                "message": f"known divergence {e.id!r}: the case raises ({e.measured['error']}): {e.reason}"}
               for e in hits]
    raw = case.get("verdict")
    case["raw_verdict"], case["verdict"], case["divergences"] = raw, "known", applied
    return {"verdict": "known", "raw_verdict": raw, "entries": applied}


def _case_verdict(statuses, applied, problems: bool, raw: Optional[str]) -> str:
    statuses = list(statuses) + [a["status"] for a in applied]
    if problems or any(s in ("new", "propagated", "grown") for s in statuses):
        return "fail"
    if "fixed" in statuses:
        return "fixed"
    if any(s in TOLERATED for s in statuses):
        return "known"
    return raw or "fail"


def stage_graph(stage_list) -> Dict[str, Tuple[str, ...]]:
    """stage -> the stages it is computed from (batch inputs dropped), from a pair's stages."""
    names = {s.name for s in stage_list}
    return {s.name: tuple(i for i in s.inputs if i in names) for s in stage_list}


def judge_cases(cases: Sequence[MutableMapping[str, Any]], registry: Registry, stage_list) -> Dict[str, Any]:
    """Judge every case entry; the report's ``divergences`` block: the registry (files with
    sha256, every entry), per case what was applied, the counts, and entries no case used."""
    graph = stage_graph(stage_list)
    applied: Dict[str, Any] = {}
    used: Set[str] = set()
    for c in cases:
        got = judge_case(c, registry, graph)
        if got is not None:
            applied[c.get("key", c["name"])] = got
            used.update(a["id"] for a in got["entries"])
    counts = {v: sum(c.get("verdict") == v for c in cases) for v in CASE_VERDICTS}
    return {**registry.to_dict(), "applied": applied, "counts": counts,
            "unused": [e.id for e in registry.entries if e.id not in used]}


def stage_note(st: Mapping[str, Any]) -> str:
    """``"; known"``, ``"; known, propagated from canvas"``, ``"; new"`` ... for a judged stage
    entry (``""`` when the registry did not judge it): what the terminal adds to its margin."""
    d = st.get("divergence")
    if not d:
        return ""
    if d["status"] == "known_propagated":
        return f"; known, propagated from {', '.join(d.get('from') or [])}"
    return f"; {d['status']}"
