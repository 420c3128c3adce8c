"""The nightly parity gate, runnable locally; the CI workflow is a thin wrapper around it.

    python scripts/nightly.py [--reports reports] [--suite nightly] [--baseline HUB|auto|none]
                              [--pair NAME|REFERENCE:CANDIDATE] [--upstream PATH] [--divergences FILE]
                              [-- extra arguments for python -m parity.report]

Steps:
1. ``pytest tests/parity -k forward --suite SUITE [--pair PAIR] --junitxml HUB/junit-pytest.xml``
2. ``python -m parity.report --suite SUITE [--pair PAIR] --hub HUB --baseline LAST_GREEN --junit HUB/junit-report.xml``
   where HUB is ``REPORTS/nightly-<UTC date-time>`` (``nightly-<pair>-...`` for another pair)
   and LAST_GREEN the newest earlier hub of the same pair whose ``parity_report.json`` says
   ``"verdict": "pass"`` (none on a first run: the report then runs without drift checks and
   says so).

``--upstream PATH`` names the PtychoPINN checkout of the sides ``ptycho`` and ``ptycho_torch``
(both steps get it as ``PARITY_PTYCHOPINN``); the PtychoPINN gate is
``python scripts/nightly.py --pair ptycho:ptycho_torch --suite ptychopinn --upstream PATH``.

Both steps apply the pair's known divergences (parity/data/divergences/<pair>.toml, with
``--divergences FILE`` on top; docs/divergences.md): a known divergence is tolerated and still
reported in full; a new one, one that grew beyond its entry, or a registered one that is gone
(fixed: remove the entry) fails the gate.

Exit code: 0 only when both steps pass and no drift was flagged; otherwise the first
non-zero code of the two (1 = parity failure or drift, 2 = bad usage or input, 3 = a case
could not run); any non-zero code is red.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parent.parent


def _prefix(pair: Optional[str]) -> str:
    return "nightly-" if not pair else f"nightly-{pair.replace(':', '-')}-"


def last_green(reports: Path, exclude: Optional[Path] = None, pair: Optional[str] = None) -> Optional[Path]:
    """Newest nightly hub of ``pair`` (default: the built-in pair) under ``reports`` whose
    report verdict is pass."""
    prefix = _prefix(pair)
    candidates = sorted(p for p in reports.glob(f"{prefix}*") if p.is_dir() and p != exclude
                        and (pair or p.name[len(prefix):len(prefix) + 1].isdigit()))
    for hub in reversed(candidates):
        report = hub / "parity_report.json"
        try:
            if json.loads(report.read_text()).get("verdict") == "pass":
                return hub
        except (OSError, ValueError):
            continue
    return None


def _divergence_line(hub: Path) -> str:
    """What the report made of the known divergences, in one line."""
    try:
        doc = json.loads((hub / "parity_report.json").read_text())
    except (OSError, ValueError):
        return "nightly: no report to read the known divergences from"
    block = doc.get("divergences") or {}
    if not block.get("enabled", False):
        return "nightly: known divergences not applied"
    counts = block.get("counts") or {}
    return (f"nightly: {len(block.get('entries') or [])} registered divergence(s); cases known (tolerated): "
            f"{counts.get('known', 0)}, fixed (remove the entry): {counts.get('fixed', 0)}, "
            f"failed: {counts.get('fail', 0)}")


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: List[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reports", type=Path, default=ROOT / "reports", help="folder holding the nightly hubs")
    ap.add_argument("--suite", default="nightly", help="the pair's suite (built-in: default, nightly, adversarial)")
    ap.add_argument("--pair", default=None, help="a registered pair or REFERENCE:CANDIDATE (default: the built-in pair)")
    ap.add_argument("--baseline", default="auto", help="a hub, 'auto' (last green nightly hub) or 'none'")
    ap.add_argument("--hub", type=Path, default=None, help="hub folder (default REPORTS/nightly-<UTC time>)")
    ap.add_argument("--skip-pytest", action="store_true", help="run only the report step")
    ap.add_argument("--upstream", default=None, help="a PtychoPINN checkout (for the sides ptycho and ptycho_torch)")
    ap.add_argument("--divergences", type=Path, default=None,
                    help="a registry of known divergences on top of the pair's shipped one (both steps)")
    args = ap.parse_args(argv)
    env = dict(os.environ)
    if args.upstream is not None:
        if not Path(args.upstream).is_dir():
            print(f"nightly: --upstream {args.upstream} is not a folder (a PtychoPINN checkout holds ptycho/ and "
                  f"ptycho_torch/)", file=sys.stderr)
            return 2
        env["PARITY_PTYCHOPINN"] = str(Path(args.upstream).resolve())

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    hub = args.hub or args.reports / f"{_prefix(args.pair)}{stamp}"
    if hub.exists() and (hub / "parity_report.json").exists():
        print(f"nightly: hub {hub} already holds a parity report; choose another --hub", file=sys.stderr)
        return 2
    hub.mkdir(parents=True, exist_ok=True)
    if args.baseline == "auto":
        baseline = last_green(args.reports, exclude=hub, pair=args.pair)
    elif args.baseline == "none":
        baseline = None
    else:
        baseline = Path(args.baseline)

    codes = []
    if not args.skip_pytest:
        cmd = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "parity"), "-k", "forward", "-q",
               "--suite", args.suite, "--junitxml", str(hub / "junit-pytest.xml"), "-p", "no:cacheprovider"]
        if args.pair:
            cmd += ["--pair", args.pair]
        if args.divergences:
            cmd += ["--divergences", str(args.divergences.resolve())]
        print("nightly: " + " ".join(cmd), flush=True)
        codes.append(subprocess.call(cmd, cwd=ROOT, env=env))
    cmd = [sys.executable, "-m", "parity.report", "--hub", str(hub), "--junit", str(hub / "junit-report.xml")]
    if "--case" not in extra:  # explicit cases (e.g. a quick local check) replace the suite
        cmd += ["--suite", args.suite]
    if args.pair:
        cmd += ["--pair", args.pair]
    if args.divergences:
        cmd += ["--divergences", str(args.divergences.resolve())]
    if baseline is not None:
        cmd += ["--baseline", str(baseline)]
    else:
        print("nightly: no earlier green nightly hub; running without a drift baseline", flush=True)
    cmd += extra
    print("nightly: " + " ".join(cmd), flush=True)
    codes.append(subprocess.call(cmd, cwd=ROOT, env=env))
    rc = next((c for c in codes if c != 0), 0)
    print(_divergence_line(hub), flush=True)
    print(f"nightly: hub {hub}; exit {rc}", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
