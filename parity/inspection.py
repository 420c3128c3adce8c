"""Inspection without running a model: ``parity compare`` (two capture files) and ``parity show``
(a finished hub).

``parity compare A B [--stage S ...] [--tolerances F] [--dtype D]`` compares capture B (the
candidate) with capture A (the reference) by :func:`parity.compare.compare` under the tolerance
table, and prints the comparator's message of every compared stage: the same messages the
report stores, for the same two files (a failing stage's message lacks the report's
teacher-forced line, and a noise_floor case is judged by the table here). A and B are captures
written by the harness (parity.capture) or any ``.npz`` whose arrays are named as the stages of
parity/stages.py (batch inputs are ignored).

``parity show HUB [CASE [STAGE]]`` prints, from the hub's parity_report.json, the summary table,
one case (its stage table, captures and figures), or one stage's full message with the paths of
its figures and captures. Capture and figure paths come from the report (``captures``: role ->
hub-relative path; ``figures``). A hub without parity_report.json is reported as incomplete,
with what its RUNNING marker says.

Exit codes as the report's: 0 pass, 1 parity failure, 2 bad usage or bad input (one line on
stderr naming the file), 3 a shown case (or, for the summary, any case) could not run.
"""
from __future__ import annotations

import argparse
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from parity.capture import META_KEY, Capture, CaptureError, load_capture
from parity.stages import BATCH_INPUTS, BY_NAME, STAGE_NAMES
from parity.tolerances import DTYPES

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_NOT_RUN = 0, 1, 2, 3
#: The candidate's role in a case's ``captures`` map (the first of these that it holds).
CANDIDATE_ROLES = ("candidate", "port")


class InputError(ValueError):
    """Bad usage or an unusable file: one sentence naming it (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def _paragraph(i: int) -> str:
    """Paragraph ``i`` of this module's docstring, as plain text for --help."""
    return __doc__.split("\n\n")[i].replace(":func:", "").replace("`", "")


def _fail_line(prog: str, exc: BaseException) -> int:
    print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
    return EXIT_BAD_INPUT


# --------------------------------------------------------------------------- compare
def read_capture(path: Path) -> Capture:
    """A capture of ours (it holds ``__meta__``), or a plain ``.npz`` of arrays named as stages."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"capture file {path} does not exist")
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n[:-4] if n.endswith(".npy") else n for n in zf.namelist()]
    except (zipfile.BadZipFile, OSError, EOFError):
        return load_capture(path)  # raises, with its sentence for empty, truncated, pickled, .npy files
    if META_KEY in names:
        return load_capture(path)
    arrays: Dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for name in npz.files:
                arrays[name] = npz[name]
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise InputError(f"capture file {path} holds Python objects (pickle), which are refused") from None
        raise InputError(f"capture file {path} is not a readable .npz archive (corrupt or truncated): "
                         f"{exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(f"capture file {path} is not a readable .npz archive (corrupt or truncated): "
                         f"{exc}") from None
    unknown = [n for n in arrays if n not in BY_NAME and n not in BATCH_INPUTS]
    if unknown:
        raise InputError(f"capture file {path} holds array(s) {unknown} that are not stages; name the arrays "
                         f"as the stages of parity/stages.py ({', '.join(STAGE_NAMES)})")
    return Capture(stages={k: v for k, v in arrays.items() if k in BY_NAME},
                   inputs={k: v for k, v in arrays.items() if k in BATCH_INPUTS}, meta={})


def compare_files(reference: Path, candidate: Path, *, stages: Sequence[str] = (), tolerances: Optional[Path] = None,
                  dtype: Optional[str] = None):
    """CaseResult of candidate vs reference (files); InputError for unusable files or names."""
    from parity.compare import compare
    from parity.tolerances import load_tolerances

    unknown = [s for s in stages if s not in BY_NAME]
    if unknown:
        raise InputError(f"unknown stage {unknown[0]!r}; known stages are {', '.join(STAGE_NAMES)}")
    if dtype is not None and dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; allowed are {', '.join(DTYPES)}")
    try:
        table = load_tolerances(tolerances)
    except (ValueError, OSError) as exc:  # names the file
        raise InputError(str(exc)) from None
    try:
        ref, cand = read_capture(reference), read_capture(candidate)
    except CaptureError as exc:
        raise InputError(str(exc)) from None
    present = set(ref.stages) | set(cand.stages)
    wanted = [s for s in STAGE_NAMES if s in (set(stages) if stages else present)]
    missing = [s for s in wanted if s not in present]
    if missing or not wanted:
        what = f"stage {missing[0]!r}" if missing else "any stage"
        raise InputError(f"neither {reference} nor {candidate} holds {what}; they hold "
                         f"{', '.join(s for s in STAGE_NAMES if s in present) or 'no stage arrays'}")
    if dtype is None:
        meta_dtype = cand.meta.get("dtype")
        dtype = meta_dtype if meta_dtype in DTYPES else None  # None: each stage's own precision
    return compare(ref, cand, table, dtype=dtype, stages=wanted)


def compare_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="parity compare", description=_paragraph(1),
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="exit codes: 0 every compared stage passed; 1 a stage failed; 2 bad usage or an unusable file")
    p.add_argument("reference", type=Path, metavar="A.npz",
                   help="the reference capture (a case's 'reference' capture: see parity show HUB CASE)")
    p.add_argument("candidate", type=Path, metavar="B.npz", help="the candidate capture (the case's other one)")
    p.add_argument("--stage", dest="stages", metavar="S", action="append", default=[],
                   help="compare only this stage (repeatable; default: every stage either file holds)")
    p.add_argument("--tolerances", type=Path, default=None, metavar="FILE",
                   help="tolerance table (TOML; default: parity/tolerances.toml)")
    p.add_argument("--dtype", choices=DTYPES, default=None,
                   help="precision whose tolerances apply (default: the candidate capture's dtype, else each "
                        "array's own precision)")
    return p


def compare_main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = compare_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        result = compare_files(args.reference, args.candidate, stages=args.stages, tolerances=args.tolerances,
                               dtype=args.dtype)
    except InputError as exc:
        return _fail_line("parity compare", exc)
    for sr in result.stages:
        print(sr.message)
    if len(result.stages) > 1:
        print(result.summary().splitlines()[0])
    return EXIT_PASS if result.passed else EXIT_FAIL


# --------------------------------------------------------------------------- show
def incomplete_reason(hub: Path) -> Optional[str]:
    """Why a hub folder holds no finished report (None when it holds one, or no RUNNING marker)."""
    from parity.report import hub as hub_mod
    from parity.report import marker

    hub = Path(hub)
    if (hub / hub_mod.REPORT_JSON).is_file():
        return None
    info = marker.read(hub / hub_mod.RUNNING)
    if info is None:
        return None
    what = f"a run started {info.get('started', 'at an unknown time')}"
    if info.get("pid") is not None:
        what += f" (pid {info['pid']} on {info.get('host', 'an unknown host')})"
    if info.get("stopped"):
        return f"{what} stopped before writing {hub_mod.REPORT_JSON}: {info['stopped']}"
    if marker.is_live(info):
        return f"{what} is still running (no {hub_mod.REPORT_JSON} yet)"
    return f"{what} did not finish ({hub_mod.RUNNING} marker, no {hub_mod.REPORT_JSON})"


def read_hub(hub: Path) -> Dict[str, Any]:
    """parity_report.json of a finished hub; InputError naming the hub (incomplete, missing, broken)."""
    from parity.report import hub as hub_mod

    hub = Path(hub)
    why = incomplete_reason(hub) if hub.is_dir() else None
    if why is not None:
        raise InputError(f"hub {hub} is incomplete: {why}; it claims no verdict")
    try:
        return hub_mod.read_report(hub)
    except hub_mod.HubError as exc:
        raise InputError(str(exc)) from None


def _code(cases: List[Dict[str, Any]], verdict: str) -> int:
    """3 when a case did not run; 0 for a pass (a case failing only at known divergences
    passes, parity.divergences); 1 otherwise."""
    from parity.divergences import verdict_ok

    if any(c.get("error") for c in cases):
        return EXIT_NOT_RUN
    return EXIT_PASS if verdict_ok(verdict) else EXIT_FAIL


def find_case(doc: Dict[str, Any], name: str) -> Dict[str, Any]:
    """A case entry by key (``name`` or ``name@device``), or by name when it ran on one device."""
    cases = [c for c in doc["cases"] if isinstance(c, dict)]
    by_key = [c for c in cases if c.get("key", c.get("name")) == name]
    by_name = [c for c in cases if c.get("name") == name]
    found = by_key or by_name
    keys = ", ".join(c.get("key", c.get("name", "?")) for c in cases)
    if not found:
        raise InputError(f"hub {doc.get('hub')} has no case {name!r}; it has {keys}")
    if len(found) > 1:
        raise InputError(f"case {name!r} ran on several devices in hub {doc.get('hub')}; give one of {keys}")
    return found[0]


def _paths(root: Path, items) -> List[str]:
    out = []
    for label, rel in items:
        if rel:
            p = root / rel
            out.append(f"  {label}: {p}" + ("" if p.is_file() else "  (missing)"))
    return out


def _case_figures(case: Dict[str, Any]) -> List[tuple]:
    figs = case.get("figures") or {}
    items = [(f"stage {s}", rel) for s, rel in (figs.get("stages") or {}).items()]
    items += [(k, figs.get(k)) for k in ("error_by_stage", "error_histogram", "patch_errors")]
    items += [(f"{b} patch grid", rel) for b, rel in (figs.get("patch_grids") or {}).items()]
    return items


def show_summary(root: Path, doc: Dict[str, Any]) -> str:
    from parity.report.__main__ import summary_table

    tol = doc.get("tolerances") or {}
    head = (f"report of {doc.get('created')} ({doc.get('mode')}; tolerances {tol.get('mode')} from "
            f"{tol.get('path')})")
    return head + "\n" + summary_table(dict(doc, hub=str(root)))


def show_case(root: Path, case: Dict[str, Any]) -> str:
    from parity.compare import CaseResult

    lines = [f"case {case.get('key', case['name'])}: device {case.get('device')}, dtype {case.get('dtype')}, "
             f"tolerance mode {case.get('tolerance_mode')}"]
    if case.get("error"):
        lines.append(f"case {case.get('key', case['name'])}: FAILED: did not run to the end: {case['error']}")
    else:
        lines.extend(CaseResult.from_dict(dict(case, verdict=case.get("raw_verdict", case["verdict"])))
                     .summary().splitlines())
    if case.get("divergences"):
        lines.append(f"known divergences: verdict {case['verdict'].upper()} (without them: "
                     f"{str(case.get('raw_verdict')).upper()})")
        for st in case.get("stages", []):
            d = st.get("divergence")
            if d:
                lines.append(f"  {st['name']}: {d['status'].replace('_', ' ')}: {d['message']}"
                             + (f" [{d['where']}]" if d.get("where") else ""))
    caps = _paths(root, sorted((case.get("captures") or {}).items()))
    figs = _paths(root, _case_figures(case))
    lines += (["captures:"] + caps) if caps else []
    lines += (["figures:"] + figs) if figs else []
    return "\n".join(lines)


def show_stage(root: Path, case: Dict[str, Any], stage: str) -> str:
    entry = next((s for s in case.get("stages", []) if s.get("name") == stage), None)
    if entry is None:
        have = ", ".join(s.get("name", "?") for s in case.get("stages", [])) or "none (it did not run)"
        raise InputError(f"case {case.get('key', case['name'])} has no stage {stage!r}; its stages: {have}")
    lines = [entry.get("message") or f"stage {stage}: {entry.get('verdict')}"]
    d = entry.get("divergence")
    if d:
        lines.append(f"{d['status'].replace('_', ' ')}: {d['message']}" + (f" [{d['where']}]" if d.get("where") else ""))
    figs = (case.get("figures") or {})
    items = [(f"stage {stage}", (figs.get("stages") or {}).get(stage)),
             ("error_by_stage (every stage)", figs.get("error_by_stage")),
             ("error_histogram", figs.get("error_histogram") if stage in (figs.get("stages") or {}) else None),
             ("patch_errors", figs.get("patch_errors") if entry.get("worst_patches") else None)]
    paths = _paths(root, items)
    lines += (["figures:"] + paths) if paths else ["figures: none drawn for this stage"]
    caps = case.get("captures") or {}
    lines += ["captures:"] + _paths(root, sorted(caps.items()))
    cand = next((caps[r] for r in CANDIDATE_ROLES if r in caps), None)
    if "reference" in caps and cand:
        lines.append(f"compare again: parity compare {root / caps['reference']} {root / cand} --stage {stage}")
    return "\n".join(lines)


def show_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="parity show", description=_paragraph(2),
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="exit codes: 0 the hub (case, stage) passed; 1 it failed; 2 bad usage, an unknown case or "
                       "stage, or a hub that is missing, broken or incomplete; 3 a case could not run")
    p.add_argument("hub", type=Path, metavar="HUB", help="a hub folder written by parity report")
    p.add_argument("case", nargs="?", default=None, metavar="CASE", help="a case (name, or name@device)")
    p.add_argument("stage", nargs="?", default=None, metavar="STAGE", help="one stage of the case")
    return p


def show_main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = show_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    root = args.hub
    try:
        doc = read_hub(root)
        if args.case is None:
            print(show_summary(root, doc))
            return _code(doc["cases"], doc["verdict"])
        case = find_case(doc, args.case)
        if args.stage is None:
            print(show_case(root, case))
            return _code([case], case["verdict"])
        text = show_stage(root, case, args.stage)
    except InputError as exc:
        return _fail_line("parity show", exc)
    print(text)
    entry = next(s for s in case["stages"] if s.get("name") == args.stage)
    known = (entry.get("divergence") or {}).get("status") in ("known", "known_propagated")
    return EXIT_PASS if entry.get("verdict") == "pass" or known else EXIT_FAIL
