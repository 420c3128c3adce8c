"""Measure the backward-only faults (parity.faults.backward) on the default suite.

    python scripts/backward_faults.py [--fault NAME ...] [--case NAME ...] [--margin K]
                                      [--forward] [--json PATH]

For every fault and every default case where it applies (the port only, no TensorFlow):
the forward stages under the fault against the clean port's (their largest absolute
difference must be 0), and the gradient of each of the fault's losses: where it first goes
wrong in reverse pipeline order (a weight or an adjoint stage), its relative error there
(max and L2) and the clean port's float32-vs-float64 floor there. Prints one markdown row per
fault (the worst case over cases and losses) and, with ``--json``, writes every finding.

``--forward`` also runs the forward self-test's comparison (reference_tf against the port
under each fault, in this process, no false-alarm seeds) on the same cases and reports how
many runs pass it: a backward-only fault must pass every one.

Exit code: 0 when every fault passes the forward check and is caught where expected on every
case, 1 otherwise, 2 for bad usage (an unknown fault or case).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from parity import cases as case_registry  # noqa: E402
from parity import faults  # noqa: E402
from parity.faults import gradprobe  # noqa: E402


def _pick(names, known: Dict[str, object], what: str) -> List[object]:
    if not names:
        return list(known.values())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown[0]!r}; known {what}s are: {', '.join(known)}")
    return [known[n] for n in dict.fromkeys(names)]


def _fmt(x: float) -> str:
    return "inf" if x == float("inf") else f"{x:.2g}"


def _row(fault, findings: List[gradprobe.Finding], forward: str) -> str:
    worst = min(findings, key=lambda f: f.ratio)
    firsts = sorted({f.first or "-" for f in findings})
    cases = sorted({f.case for f in findings}, key=[c.name for c in case_registry.suite("default")].index)
    return (f"| {fault.name} | {worst.expected} | {_fmt(max(f.forward_max_diff for f in findings))} | {forward} | "
            f"{_fmt(min(f.error[0] for f in findings))} / {_fmt(min(f.error[1] for f in findings))} | "
            f"{_fmt(worst.ratio)} ({worst.case}, {worst.loss}) | {', '.join(firsts)} | "
            f"{sum(f.caught for f in findings)}/{len(findings)} | {', '.join(cases)} |")


def _forward_passes(selected, cases) -> Dict[str, str]:
    from parity.selftest import run_selftest

    doc = run_selftest(faults=[f.name for f in selected], cases=[c.name for c in cases], false_alarm_seeds=0,
                       catalogue=selected, isolation="inprocess")
    out = {}
    for row in doc["faults"]:
        runs = row.get("runs") or []
        passed = sum(1 for r in runs if r["verdict"] == "pass" and r["first_divergent_stage"] is None)
        out[row["name"]] = f"{passed}/{len(runs)} pass"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fault", action="append", help="a backward-only fault (default: all)")
    ap.add_argument("--case", action="append", help="a default case (default: all)")
    ap.add_argument("--margin", type=float, default=gradprobe.MARGIN, help="error / floor needed (default 10)")
    ap.add_argument("--forward", action="store_true", help="also run the forward comparison against reference_tf")
    ap.add_argument("--json", type=Path, help="write every finding here")
    args = ap.parse_args(argv)
    if not args.margin > 0:
        ap.error(f"--margin must be > 0, got {args.margin}")
    if args.json is not None and not args.json.parent.is_dir():
        ap.error(f"--json {args.json}: folder {args.json.parent} does not exist")
    try:
        selected = _pick(args.fault, {f.name: f for f in faults.BACKWARD_FAULTS}, "fault")
        cases = _pick(args.case, {c.name: c for c in case_registry.suite("default")}, "case")
    except SystemExit as exc:
        print(f"backward_faults: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    clean: Dict[str, gradprobe.CleanCase] = {}
    findings: Dict[str, List[gradprobe.Finding]] = {}
    for fault in selected:
        findings[fault.name] = []
        for case in cases:
            if fault.applicable(case):
                clean.setdefault(case.name, gradprobe.CleanCase(case))
                findings[fault.name] += gradprobe.check_fault(fault, clean[case.name], args.margin)
    t_probe = time.perf_counter() - t0
    forward = _forward_passes(selected, cases) if args.forward else {}
    print("| fault | expected | forward max abs diff | forward comparison | gradient error at expected (min max / "
          "min L2) | smallest error / floor | first wrong | caught | cases |")
    print("|---|---|---|---|---|---|---|---|---|")
    for fault in selected:
        if findings[fault.name]:
            print(_row(fault, findings[fault.name], forward.get(fault.name, "not run")))
        else:
            print(f"| {fault.name} | - | - | - | - | - | - | 0/0 | (no selected case applies) |")
    print(f"\nport forward + gradient probe: {t_probe:.1f} s; total {time.perf_counter() - t0:.1f} s")
    if args.json:
        args.json.write_text(json.dumps({name: [f.to_dict() for f in rows] for name, rows in findings.items()},
                                        indent=1))
    ok = all(f.caught for rows in findings.values() for f in rows)
    ok = ok and all(v.split("/")[0] == v.split("/")[1].split()[0] for v in forward.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
