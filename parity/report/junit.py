"""JUnit XML of a report document, for CI systems that show test results.

One ``testsuite`` per device (``parity.<device>``), one ``testcase`` per case: a failing case
is a ``failure`` (its failing stages' messages in the body; a fixed or grown known divergence
says so), a case failing only at known divergences is ``skipped`` with their messages (as
pytest reports an xfail), a crashed case an ``error``; an
unavailable device gives one ``skipped`` testcase with the reason. With a baseline, each
compared case also gets a ``<case> drift`` testcase that fails when a stage drifted.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Mapping

from parity.jsonable import decode_float


def _case_time(c: Mapping[str, Any]) -> str:
    t = (c.get("timings") or {}).get("total_s", 0.0)
    t = decode_float(t)
    return f"{float(t or 0.0):.3f}"


def to_junit(doc: Mapping[str, Any]) -> bytes:
    root = ET.Element("testsuites", name="parity")
    drift_rows: Dict[tuple, Dict[str, Any]] = {}
    if doc.get("drift"):
        for r in doc["drift"]["cases"]:
            drift_rows[(r["case"], r["device"])] = r
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for dev in doc.get("devices", []):
        suite = ET.SubElement(root, "testsuite", name=f"parity.{dev['device']}")
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        if dev["status"] != "available":
            tc = ET.SubElement(suite, "testcase", classname=f"parity.{dev['device']}", name="device", time="0")
            ET.SubElement(tc, "skipped", message=f"device {dev['device']} unavailable: {dev.get('reason')}")
            counts["tests"] += 1
            counts["skipped"] += 1
        for c in (c for c in doc.get("cases", []) if c["device"] == dev["device"]):
            tc = ET.SubElement(suite, "testcase", classname=f"parity.{dev['device']}", name=c["name"],
                               time=_case_time(c))
            counts["tests"] += 1
            if c.get("error"):
                el = ET.SubElement(tc, "error", message=c["error"][:500], type="CaseError")
                el.text = c["error"]
                counts["errors"] += 1
            elif c["verdict"] == "known":  # a known divergence: reported, not a failure (like an xfail)
                notes = [a["message"] for a in c.get("divergences") or []]
                ET.SubElement(tc, "skipped", message=f"known divergence: {'; '.join(notes)}"[:500])
                counts["skipped"] += 1
            elif c["verdict"] != "pass":
                failing = [s for s in c.get("stages", []) if s.get("verdict") != "pass"]
                msg = f"first divergent stage {c.get('first_divergent_stage')}"
                if c.get("root_cause_stage"):
                    msg += f"; root cause {c['root_cause_stage']}"
                judged = [a["message"] for a in c.get("divergences") or [] if a["status"] != "known"]
                if judged:
                    msg += "; " + "; ".join(judged)
                el = ET.SubElement(tc, "failure", message=msg[:1000], type="ParityMismatch")
                el.text = "\n\n".join([*c.get("problems", []), *judged, *(s.get("message", "") for s in failing)])
                counts["failures"] += 1
            row = drift_rows.get((c["name"], c["device"]))
            if row is not None:
                dt = ET.SubElement(suite, "testcase", classname=f"parity.{dev['device']}", name=f"{c['name']} drift",
                                   time="0")
                counts["tests"] += 1
                if row["n_flagged"]:
                    flagged: List[str] = [f"{f['stage']}: max |d| {f['then']} -> {f['now']} (x{f['ratio']})"
                                          for f in doc["drift"]["flagged"]
                                          if f["case"] == c["name"] and f["device"] == c["device"]]
                    el = ET.SubElement(dt, "failure", message=f"{row['n_flagged']} stage(s) drifted by more than "
                                                              f"x{doc['drift']['factor']}", type="ParityDrift")
                    el.text = "\n".join(flagged)
                    counts["failures"] += 1
                elif row["status"] != "compared":
                    ET.SubElement(dt, "skipped", message=row["status"])
                    counts["skipped"] += 1
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
    for k, v in totals.items():
        root.set(k, str(v))
    ET.indent(root)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"
