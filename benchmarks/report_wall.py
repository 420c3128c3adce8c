"""Section ``report``: cold wall time of ``python -m parity.report`` and where it goes.

Each run is a new process (imports included) writing into a fresh temporary hub; the breakdown
comes from the timings the report records in ``parity_report.json`` (``timings`` and each case's
``timings``), the wall time is also taken from outside, with the run's CPU time (children's
rusage). The hub is deleted after it is read.

Breakdown (all sums over the cases, seconds of wall time in the report's main process):

* ``startup``: process start to the hub claimed (interpreter, parity imports, plan) = ``setup_s``;
* ``imports``: framework imports inside the jobs (``import_s``);
* ``inputs+weights``: fixtures and weight sets read / drawn (``prepare_s``);
* ``builds``: model construction including loading the weights into it (``build_s``);
* ``forward tf`` / ``forward torch``: each backend's recorded forward pass (``forward_s``; the
  first pass of a job, so it includes TensorFlow's graph tracing);
* ``teacher forcing``: the port's stages recomputed from the reference's inputs (``local_s``);
* ``compare+stats``: :func:`parity.compare.compare` (``compare_s``);
* ``figures+captures handoff`` and ``other``: per-case ``handoff_s`` and ``other_s``;
* ``finish``: after the last case: waiting for the figure worker (``drain_s``), closing the
  backend workers, heat map, JSON, HTML (= wall - startup - sum of the cases' ``total_s``);
* ``background``: figures and capture files drawn by the figure worker *while the next case
  runs* (not on the critical path, but it takes CPU from the cases on a 2-core machine).

The target "harness share" is everything but imports, builds and forward passes:
``1 - (imports + builds + forward) / wall``; the report's own ``harness_fraction`` also counts
the teacher-forced stages as backend work, and is given alongside.
"""
from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .common import ROOT, Section, child_env, fmt_summary, loadavg, summarize, table

ROWS = (  # (key, label) in display order
    ("startup_s", "startup (interpreter, parity imports, plan)"),
    ("import_s", "framework imports"),
    ("prepare_s", "inputs + weight sets (fixtures, npz, Glorot)"),
    ("build_s", "model builds (incl. loading weights into the model)"),
    ("reference_forward_s", "forward passes, tf (first pass: incl. tracing)"),
    ("candidate_forward_s", "forward passes, candidate"),
    ("local_s", "teacher-forced stages (both)"),
    ("compare_s", "comparison + statistics"),
    ("handoff_s", "handoff of figures/captures to the worker"),
    ("other_s", "other per-case (job files, process round trips)"),
    ("finish_s", "finish: wait for figures, heat map, JSON, HTML"),
    ("drain_s", "  of which waiting for the figure worker"),
    ("wall_s", "wall (report's clock, from process start)"),
    ("external_wall_s", "wall (measured outside, cold process)"),
    ("background_s", "background: figures + capture files (overlapped)"),
    ("cpu_s", "CPU time of the run, all processes (user+sys)"),
)
FRACTIONS = (("harness_share", "harness share (all but imports, builds, forward)"),
             ("report_harness_fraction", "harness share as the report counts it (local = backend)"))


def breakdown(doc: Dict[str, Any]) -> Dict[str, float]:
    """Per-run breakdown from a parity_report.json document (see the module docstring)."""
    t = doc["timings"]
    cases = doc["cases"]

    def total(key: str) -> float:
        return float(sum(float(c.get("timings", {}).get(key, 0.0) or 0.0) for c in cases))

    wall = float(t["wall_s"])
    startup = float(t.get("setup_s", 0.0))
    out = {
        "wall_s": wall, "startup_s": startup, "import_s": total("import_s"), "prepare_s": total("prepare_s"),
        "build_s": total("build_s"), "reference_forward_s": total("reference_forward_s"),
        "candidate_forward_s": total("candidate_forward_s"), "forward_s": total("forward_s"), "local_s": total("local_s"),
        "compare_s": total("compare_s"), "handoff_s": total("handoff_s"), "other_s": total("other_s"),
        "finish_s": wall - startup - total("total_s"), "drain_s": float(t.get("drain_s", 0.0) or 0.0),
        "background_s": total("figures_s") + total("write_s"),
        "figures_s": total("figures_s"), "write_s": total("write_s"),
        "report_harness_fraction": float(t.get("harness_fraction", float("nan"))),
    }
    backend = out["import_s"] + out["build_s"] + out["forward_s"]
    out["harness_s"] = wall - backend
    out["harness_share"] = out["harness_s"] / wall if wall > 0 else float("nan")
    return out


def run_once(hub: Path, extra_args: Sequence[str] = (), timeout: float = 900) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "parity.report", "--hub", str(hub), *extra_args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = loadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT), env=child_env(), timeout=timeout)
    external = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = hub / "parity_report.json"
    if not report.exists():
        raise RuntimeError(f"parity.report wrote no report (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")
    doc = json.loads(report.read_text())
    b = breakdown(doc)
    b["external_wall_s"] = external
    b["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"breakdown": b, "exit_code": proc.returncode, "verdict": doc.get("verdict"),
            "cases": {c["key"]: {k: c["timings"].get(k) for k in ("total_s", "forward_s", "build_s")}
                      for c in doc["cases"]},
            "n_cases": len(doc["cases"]), "isolation": (doc.get("config") or {}).get("isolation"),
            "threads": ((doc.get("provenance") or {}).get("threads")), "load_before": load0, "load_after": loadavg(),
            "summary_line": next((ln for ln in proc.stdout.splitlines() if ln.startswith("verdict:")), "")}


def run(runs: int = 2, extra_args: Sequence[str] = (), workdir: Optional[Path] = None, log=print) -> Dict[str, Any]:
    records: List[Dict[str, Any]] = []
    with Section("report") as sec:
        for i in range(runs):
            tmp = Path(tempfile.mkdtemp(prefix="report-", dir=workdir))
            try:
                rec = run_once(tmp / "hub", extra_args)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            records.append(rec)
            b = rec["breakdown"]
            log(f"  report run {i + 1}/{runs}: wall {b['external_wall_s']:.1f}s, harness share "
                f"{100 * b['harness_share']:.1f}%, verdict {rec['verdict']}, load {rec['load_after']}")
    keys = [k for k, _ in ROWS] + [k for k, _ in FRACTIONS] + ["forward_s", "harness_s"]
    summary = {k: summarize(r["breakdown"][k] for r in records) for k in keys}
    wall = summary["external_wall_s"]["median"]
    share = summary["harness_share"]["median"]
    return {**sec.record, "command": ["python", "-m", "parity.report", "--hub", "<fresh temp dir>", *extra_args],
            "runs": records, "summary": summary,
            "n_cases": records[0]["n_cases"] if records else 0,
            "isolation": records[0]["isolation"] if records else None,
            "targets": {"harness_share_le_10pct": share is not None and share <= 0.10,
                        "wall_under_60s": wall is not None and wall < 60.0}}


def render(res: Dict[str, Any]) -> str:
    s = res["summary"]
    wall = s["wall_s"]["median"] or 1.0
    rows = []
    for k, label in ROWS:
        share = "" if k in ("wall_s", "external_wall_s", "cpu_s", "background_s") else \
            f"{100 * (s[k]['median'] or 0) / wall:.1f}%"
        rows.append([label, fmt_summary(s[k]), share])
    for k, label in FRACTIONS:
        rows.append([label, fmt_summary(s[k], "%"), ""])
    t = res["targets"]
    tail = (f"{len(res['runs'])} cold run(s) of `{' '.join(res['command'])}` ({res['n_cases']} cases, isolation "
            f"{res['isolation']}); targets: harness share <= 10%: {'MET' if t['harness_share_le_10pct'] else 'MISSED'}, "
            f"wall < 60 s: {'MET' if t['wall_under_60s'] else 'MISSED'}; load {res['load_before']} -> {res['load_after']}")
    return table(rows, ["", "median [min-max]", "of wall"]) + "\n" + tail
