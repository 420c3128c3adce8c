"""The self-test's terminal table and its selftest.json (no models)."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, List, Mapping

from ..atomic import write_bytes_atomic
from ..stats import to_json

SCHEMA = "parity.selftest"
SCHEMA_VERSION = 2  # 2: "isolation" and "pair" replace "reference_mode"
SELFTEST_JSON = "selftest.json"
REPORTS_DIR = Path("reports")  # under the current folder, like the report's default hub


class UsageError(ValueError):
    """Bad command-line input; the message is one line (exit code 2)."""


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
    if doc.get("faults_not_run"):
        lines.append(f"faults not run: {doc['faults_not_run']}")
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


def check_hub(hub: Path, force: bool, name: str = SELFTEST_JSON) -> None:
    """Refuse (UsageError) a hub path that is a file, unwritable, or already holds ``name``."""
    if hub.exists() and not hub.is_dir():
        raise UsageError(f"hub {hub} exists and is not a folder; give a folder path for --hub")
    if (hub / name).exists() and not force:
        raise UsageError(f"hub {hub} already holds {name}; choose another --hub or pass --force to replace it")
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

