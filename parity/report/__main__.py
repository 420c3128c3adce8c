"""python -m parity.report: run the forward-parity suite and write a report hub.

The CLI owns the terminal: a progress display on stderr (a bar when stderr is a terminal, else
one compact line per case), the summary table on stdout, and one line on stderr for bad usage
or bad input (exit 2). See ``--help``.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, List, Optional, Sequence, TextIO

_T0 = time.perf_counter()

from parity import cases as case_registry  # noqa: E402
from parity.divergences import stage_note  # noqa: E402
from parity.messages import fmt  # noqa: E402
from parity.pool import DEFAULT_JOB_TIMEOUT  # noqa: E402
from parity.sides import side_names  # noqa: E402
from parity.jsonable import decode_float  # noqa: E402
from parity.tolerances import DTYPES, NOISE_FLOOR_K  # noqa: E402

from . import ArtifactError, ReportInputError, ReportOptions, build_report  # noqa: E402
from .backward import summary_lines as backward_summary_lines  # noqa: E402
from .figures import shown_margin  # noqa: E402
from .training import summary_line as training_line  # noqa: E402
from .options import (DEFAULT_DRIFT_FACTOR, DEFAULT_ISOLATION, ISOLATIONS, TOLERANCE_MODES,  # noqa: E402
                      pair_option)

PROG = "python -m parity.report"

DESCRIPTION = """\
Run the forward-parity cases of a pair (default: the TensorFlow reference reference_tf against
its PyTorch port torch_impl, stage by stage) and write a report hub: parity_report.json (+ its
JSON schema), index.html, summary.png, per-case figures under analysis/<case>/, per-patch
statistics (analysis/{reference,candidate}_patch_stats.json), patch grids of the first case
(analysis/{reference,candidate}_patch_grid.png), the raw captures under
captures/<case>/<role>.<side>.npz and the resolved configuration (config.json)."""

EPILOG = """\
exit codes:
  0    every case passed, or failed only at known divergences (and, with --baseline, no
       stage drifted)
  1    parity failure: a new divergence, a known one grown beyond its entry, a registered one
       that is gone (fixed: remove the entry), or drift beyond --drift-factor
  2    bad usage or bad input: a bad flag, or an unusable file (capture, fixture, weights,
       tolerance table, hub); one line on stderr naming it; nothing written, or the hub left as
       it was (an earlier report in it untouched)
  3    a case could not run (crashed, timed out, backend missing): the other cases are still
       judged and reported; takes precedence over 1. Also: the report itself stopped on an
       internal error (one line; -v for the traceback; the hub removed or marked incomplete)
  130  interrupted (the hub keeps no parity_report.json, so it claims no verdict)

errored cases:
  a case whose side raised, crashed or ran past --job-timeout is reported as failed with the
  side, the job and the reason (and the last lines the side's worker printed) on the terminal,
  on the page and in the case's "errors" in parity_report.json; the other cases still run.

the hub:
  --hub may name an existing folder holding your own files (plans, logs); they are left
  untouched. A hub that holds a parity report is never overwritten unless --force (which
  removes exactly the files that report listed). The JSON is written last; while a run is in
  progress the hub holds a RUNNING marker instead.

recheck:
  --recheck SRC re-compares the captures stored in SRC under the tolerances given now
  (--tolerances, --tolerance-mode), without running any model, and writes a new report into
  --hub (default: a new folder under reports/; captures are hard-linked or copied). To
  rewrite SRC itself, pass --hub SRC --force (its captures are kept). noise_floor needs a
  source that ran in noise_floor mode (it stored the float64 oracle and the float32 reference).

known divergences:
  stages the pair's registry (parity/data/divergences/<pair>.toml, docs/divergences.md) names
  are reported in full, labelled known (and their propagated stages known too); such a case is
  KNOWN and does not fail the run. --divergences FILE adds or replaces entries for one run;
  --no-divergences: the raw verdicts. A recheck applies the entries its source recorded.

devices:
  --devices cpu,cuda runs every case on every available device; an unavailable device is
  reported with the reason ("unavailable") and does not fail the run. If none is available,
  exit 2.

examples:
  python -m parity.report                                   # default suite -> reports/<UTC time>/
  python -m parity.report --case n64_g1 --hub reports/try1
  python -m parity.report --pair torch_impl:torch_impl                # a side against itself
  python -m parity.report --pair example                    # a pair of your own (docs/pairs.md)
  python -m parity.report --suite nightly --junit reports/nightly.xml --baseline reports/last
  python -m parity.report --recheck reports/try1 --hub reports/try1-tight --tolerances tight.toml
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what to run")
    sizes = ", ".join(f"{name}: {len(case_registry.suite(name))} cases" for name in case_registry.SUITES)
    g.add_argument("--suite", default=None, metavar="NAME",
                   help=f"case suite of the pair (default: default; the built-in pair's: {sizes})")
    g.add_argument("--case", dest="cases", metavar="NAME", nargs="+", action="extend", default=[],
                   help="run only these cases (repeatable; see --list)")
    g.add_argument("--list", action="store_true", help="list the cases and suites, then exit")
    g.add_argument("--pair", default=None, metavar="REFERENCE:CANDIDATE",
                   help="the two sides to compare, reference first (default: reference_tf:torch_impl; sides: "
                        f"{', '.join(side_names())}); any side may take either role, or both; or the name of a "
                        "registered pair (e.g. example)")
    g.add_argument("--upstream", default=None, metavar="PATH",
                   help="a PtychoPINN checkout (the folder holding ptycho/ and ptycho_torch/) for the sides ptycho "
                        "and ptycho_torch; default: the environment variable PARITY_PTYCHOPINN")
    g.add_argument("--pair-from", default=None, metavar="MODULE:OBJECT",
                   help="a pair of your own: a parity.pairs.Pair, or a function returning one, imported from "
                        "MODULE (see docs/pairs.md; a pair your package registers under the entry point group "
                        "parity.pairs is found by --pair NAME)")
    g.add_argument("--job-timeout", type=float, default=DEFAULT_JOB_TIMEOUT, metavar="SECONDS",
                   help=f"a side's job that runs longer is killed and its case reported as an error, the other "
                        f"cases still run (default {DEFAULT_JOB_TIMEOUT:g})")
    g.add_argument("--devices", default=None, metavar="LIST",
                   help="comma-separated devices: cpu, cuda, cuda:<i> (default: cpu)")
    g.add_argument("--dtype", choices=DTYPES, default=None, help="override every case's dtype")
    g.add_argument("--backward", action="store_true",
                   help="also compare the gradients of the losses per stage (reverse pipeline order) and per "
                        "weight, with the local backward error (docs/backward.md); exit 1 when they fail")
    g.add_argument("--isolation", choices=ISOLATIONS, default=None,
                   help=f"where the backends run: workers (one long-lived process per backend, shared by every "
                        f"case), inprocess (this process; what monkeypatching tests need) or subprocess (a fresh "
                        f"process per job) (default: {DEFAULT_ISOLATION})")
    g.add_argument("--train-steps", type=int, default=None, metavar="K",
                   help="also run K Adam steps of one case from the same weights on both sides and compare the "
                        "loss curve and the weights after each step (docs/training.md; default: none)")
    g.add_argument("--train-case", default=None, metavar="NAME",
                   help="the case of --train-steps (default: the first case of the run)")
    g.add_argument("--train-loss", default="loss_nll", choices=("loss_nll", "loss_mae"),
                   help="the loss --train-steps minimises (default loss_nll)")
    g.add_argument("--train-batches", default="seeded:20", metavar="seeded:N|split",
                   help="the batches of --train-steps: N batches of the case's size generated from its fixture "
                        "seed (the first is the case's own), or the case's batch one sample a batch (default "
                        "seeded:20); K must not exceed them")
    g = p.add_argument_group("how to judge")
    g.add_argument("--tolerances", type=Path, default=None, metavar="FILE",
                   help="tolerance table (TOML; default: parity/tolerances.toml)")
    g.add_argument("--tolerance-mode", choices=TOLERANCE_MODES, default=None,
                   help="table: the tolerance table for every case; noise_floor: gate float32 cases at k x the "
                        "reference's own float32 error against its float64 run (default: each case's own mode, "
                        "see parity/cases.py; for --recheck: each case's mode in the source)")
    g.add_argument("--noise-floor-k", type=float, default=NOISE_FLOOR_K, metavar="K",
                   help=f"k of the noise-floor gate (default {NOISE_FLOOR_K:g})")
    g.add_argument("--baseline", type=Path, default=None, metavar="HUB",
                   help="an earlier hub: report per case and stage the error now vs then and flag growth")
    g.add_argument("--drift-factor", type=float, default=DEFAULT_DRIFT_FACTOR, metavar="F",
                   help=f"flag a stage whose max |candidate - reference| grew by more than F x (default {DEFAULT_DRIFT_FACTOR:g}); "
                        f"flagged drift fails the run even if the stage passes")
    g.add_argument("--divergences", type=Path, default=None, metavar="FILE",
                   help="a registry of known divergences (TOML, docs/divergences.md) on top of the pair's shipped "
                        "one, for this run")
    g.add_argument("--no-divergences", action="store_true",
                   help="apply no known divergence: every failing stage fails the run (the raw verdicts)")
    g.add_argument("--recheck", type=Path, default=None, metavar="SRC_HUB",
                   help="recompute the verdicts from SRC_HUB's stored captures under the tolerances given now; "
                        "runs no model (see 'recheck' below)")
    g = p.add_argument_group("output")
    g.add_argument("--hub", type=Path, default=None, metavar="DIR",
                   help="report folder (default: reports/<UTC timestamp> under the current folder); may hold "
                        "your own files")
    g.add_argument("--force", action="store_true", help="replace a parity report already in --hub")
    g.add_argument("--junit", type=Path, default=None, metavar="FILE", help="also write JUnit XML here")
    g.add_argument("--no-figures", dest="figures", action="store_false", help="write no PNG figures")
    g.add_argument("--no-background", dest="background", action="store_false",
                   help="write each case's captures and figures before the next case starts (default: in a "
                        "thread while it runs)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress; print only the verdict and failures")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="log progress details (-vv: debug) and print every failing stage's message")
    return p


# --------------------------------------------------------------------------- progress
class Progress:
    """Progress on stderr: a live bar on a terminal, else one line per finished case."""

    def __init__(self, stream: TextIO, quiet: bool):
        self.stream, self.quiet = stream, quiet
        self.tty = stream.isatty() and not quiet
        self.total = 0
        self.done = 0
        self.current = ""
        self.hub: Optional[str] = None
        self._t_case = time.perf_counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: Optional[threading.Thread] = None

    def __call__(self, event: str, index: int, total: int, info: Any) -> None:
        if event == "begin":
            self.hub = info
            return
        self.total = total
        if event == "start":
            self.current = info
            self._t_case = time.perf_counter()
            if self.tty and self._ticker is None:
                self._ticker = threading.Thread(target=self._tick, daemon=True)
                self._ticker.start()
            self._draw()
        elif event == "done":
            self.done = index + 1
            if not self.quiet:
                rec = info
                dt = rec.timings.get("total_s", 0.0)
                what = rec.status or rec.verdict
                what = what if what == "pass" else what.upper()
                extra = ""
                if rec.error:
                    extra = f"  error: {rec.error[:120]}"
                elif rec.result is not None and rec.result.first_divergent_stage:
                    extra = f"  first divergent stage: {rec.result.first_divergent_stage}"
                line = f"[{index + 1:>{len(str(total))}}/{total}] {what:<4}  {rec.key}  {dt:.1f}s{extra}"
                with self._lock:
                    self._clear()
                    print(line, file=self.stream, flush=True)
            self._draw()

    def _clear(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K")

    def _draw(self) -> None:
        if not self.tty or self.total == 0:
            return
        width = 24
        filled = int(width * self.done / self.total)
        el = time.perf_counter() - self._t_case
        running = f"  {self.current} {el:4.0f}s" if self.done < self.total else "  writing the report"
        with self._lock:
            self._clear()
            self.stream.write(f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}{running}")
            self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self._draw()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=1)
        if self.tty:
            with self._lock:
                self._clear()
                self.stream.flush()


# --------------------------------------------------------------------------- summary
def _worst(case: dict) -> str:
    best = None
    for s in case.get("stages", []):
        if s.get("verdict") != "pass" and _nonfinite(s):
            m, text = math.inf, "NaN/Inf"
        else:
            m = decode_float(s.get("margin"))
            text = fmt(m)
        if m is None:
            continue
        if best is None or m > best[1]:
            best = (s["name"], m, text)
    return "-" if best is None else f"{best[0]} {best[2]}"


def _nonfinite(st: dict) -> int:
    return (st.get("nonfinite") or {}).get("elements", 0)


def _shown(st: dict) -> str:
    m, text = shown_margin(decode_float(st.get("margin")), decode_float(st.get("local_error")), st.get("verdict"),
                           _nonfinite(st))
    if text == "NaN/Inf":
        return text
    return ("local x" + text[1:]) if text.startswith("L") else f"x{text}"


def summary_table(doc: dict, verbose: int = 0, quiet: bool = False) -> str:
    cases = doc["cases"]
    lines: List[str] = []
    rows = [("case", "device", "dtype", "verdict", "worst stage (err/tol)", "first divergent", "root cause",
             "drift", "time")]
    for c in cases:
        if quiet and c["verdict"] == "pass":
            continue
        drift = "-" if doc.get("drift") is None else (str(c.get("drift_flagged", 0)) + " flagged"
                                                     if c.get("drift_flagged") else "ok")
        rows.append((c["name"], c["device"], c["dtype"], c["verdict"] if c["verdict"] == "pass" else c["verdict"].upper(),
                     "crashed" if c.get("error") else _worst(c), c.get("first_divergent_stage") or "-",
                     c.get("root_cause_stage") or "-", drift,
                     f"{float(decode_float(c['timings'].get('total_s', 0.0)) or 0.0):.1f}s"))
    if len(rows) > 1:
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            lines.append("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    for c in cases:
        if c["verdict"] == "pass":
            continue
        if c.get("error"):
            lines.append(f"{c['key']}: did not run to the end: {c['error']}")
            continue
        failing = [s for s in c.get("stages", []) if s.get("verdict") != "pass"]
        if verbose:
            lines.extend(s.get("message", "") for s in failing)
        elif failing:
            lines.append(f"{c['key']}: {len(failing)} failing stage(s): " + ", ".join(
                f"{s['name']} ({_shown(s)}{stage_note(s)})" for s in failing))
        for a in c.get("divergences") or []:
            if a["status"] != "known":
                lines.append(f"{c['key']}: {a['stage']}: {a['message']}")
    for name, why in (doc.get("not_expressible") or {}).items():
        lines.append(f"{name}: not run, the pair cannot express it: " + "; ".join(f"{k}: {v}" for k, v in why.items()))
    for d in doc.get("devices", []):
        if d["status"] != "available":
            lines.append(f"device {d['device']}: unavailable ({d.get('reason')})")
    dr = doc.get("drift")
    if dr:
        lines.append(f"drift vs {dr['baseline']['hub']}: {dr['n_flagged']} stage(s) grew by more than x{dr['factor']:g}")
        for f in dr["flagged"][: (None if verbose else 10)]:
            lines.append(f"  {f['case']} {f['stage']}: max |d| {fmt(decode_float(f['then']))} -> "
                         f"{fmt(decode_float(f['now']))} (x{fmt(decode_float(f['ratio']))})")
    trained = training_line(doc.get("training"))
    if trained:
        lines.append(trained)
    lines.extend(backward_summary_lines(doc, verbose))
    s, t = doc["summary"], doc["timings"]
    known = "".join(f", {s[k]} {k}" for k in ("known", "fixed") if s.get(k))
    lines.append(f"verdict: {doc['verdict'].upper()}  {s['passed']}/{s['cases']} cases passed{known}"
                 + (f"  (wall {t['wall_s']:.1f}s; forward passes {t['forward_s']:.1f}s; harness "
                    f"{t['harness_s']:.1f}s = {100 * t['harness_fraction']:.1f}%)" if not quiet else ""))
    hub = doc["hub"]
    lines.append(f"hub: {hub}   page: {os.path.join(hub, 'index.html')}")
    return "\n".join(lines)


def _process_start() -> Optional[float]:
    """perf_counter() value at this process's start (Linux), so the wall time includes start-up."""
    try:
        with open("/proc/self/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
        return time.perf_counter() - age if 0 <= age < 3600 else None
    except (OSError, ValueError, IndexError):
        return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    as_program = argv is None
    started = time.perf_counter()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or bad usage (2, one line already printed)
        return int(exc.code or 0)
    level = logging.WARNING if args.verbose == 0 else (logging.INFO if args.verbose == 1 else logging.DEBUG)
    if args.quiet:
        level = logging.ERROR
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    if args.list:
        listed = case_registry
        if args.pair or args.pair_from:
            try:
                listed = pair_option(args.pair, args.pair_from).cases
            except ReportInputError as exc:
                print(f"{PROG}: error: {exc}", file=sys.stderr)
                return 2
        for c in listed.CASES.values():
            print(f"{c.name:<24} {c.dtype:<8} suites: {','.join(c.suites):<8} {c.covers}")
        print("suites: " + ", ".join(f"{name} ({len(listed.suite(name))} cases)"
                                     for name in getattr(listed, "SUITES", ("default", "nightly"))))
        return 0
    clock, t0 = "main() call", started
    if as_program:
        ps = _process_start()
        clock, t0 = ("process start", ps) if ps is not None else ("module import", _T0)
    try:
        from .devices import parse_devices

        devices = tuple(parse_devices(args.devices)) if args.devices is not None else None
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if args.upstream is not None:
        from parity.upstream import checkout

        try:  # the workers inherit the setting
            os.environ[checkout.ENV] = str(checkout.locate(args.upstream))
        except checkout.CheckoutMissing as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 2
    options = ReportOptions(
        hub=args.hub, suite=args.suite, cases=tuple(args.cases), devices=devices, dtype=args.dtype,
        tolerances=args.tolerances, tolerance_mode=args.tolerance_mode, noise_floor_k=args.noise_floor_k,
        isolation=args.isolation, baseline=args.baseline, drift_factor=args.drift_factor, recheck=args.recheck,
        junit=args.junit, force=args.force, figures=args.figures, background=args.background,
        command=("python", "-m", "parity.report", *argv), pair=args.pair, pair_from=args.pair_from,
        job_timeout=args.job_timeout, divergences=args.divergences, no_divergences=args.no_divergences,
        train_steps=args.train_steps, train_case=args.train_case, train_loss=args.train_loss,
        train_batches=args.train_batches, backward=args.backward)
    progress = Progress(sys.stderr, args.quiet)
    try:
        outcome = build_report(options, progress, started=t0, clock=clock)
    except ReportInputError as exc:
        progress.close()
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        progress.close()
        where = f"hub {progress.hub}" if progress.hub else "the hub"
        print(f"{PROG}: interrupted; {where} holds no parity_report.json (no verdict)", file=sys.stderr)
        return 130
    except (OSError, ArtifactError) as exc:  # e.g. the disk filled up while writing
        progress.close()
        print(f"{PROG}: error: cannot write the report: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: the hub was given back by build_report
        progress.close()
        msg = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"{PROG}: error: the report stopped: {msg}{'' if args.verbose else ' (-v for the traceback)'}",
              file=sys.stderr)
        if args.verbose:
            import traceback

            traceback.print_exc()
        return 3
    progress.close()
    print(summary_table(outcome.document, verbose=args.verbose, quiet=args.quiet), flush=True)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
