"""The one mismatch message format (tested line by line) and the case summary.

A failing stage reads::

    case n64_g2_int, stage canvas: FAILED (complex64, tolerance rtol=1e-05 atol=0 atol_scaled=1e-05 [defaults.float32])
    Mismatched elements: 123 / 24336 (0.51%)
    Greatest absolute difference: 0.0123 at index (1, 40, 41) (up to 3.2e-05 allowed)
    Greatest relative difference: 0.0871 at index (1, 40, 41) (up to 0.000143 allowed)
    Relative L2 error: 0.00121; stage-relative max error: 0.00384
    Minimum passing tolerance: rtol=0.00384 atol=0 atol_scaled=0.00384 (x384 the current tolerance)
    Near-zero reference values: 3 exactly zero, 2 tiny (0 < |ref| <= 2.1e-06); not used for the relative difference
    Amplitude difference: 0.0101 at index (0, 3, 2); phase difference (amplitude-weighted): max 0.002 rad at index (0, 3, 2), mean 0.0001 rad
    ULP distance (float32 grid): max 1.2e+03, p99 12
    Local (teacher-forced) comparison: FAILED, margin 12.3 -> root cause
    Worst patches (b, c: max abs): (1, 2: 0.0123), (0, 3: 0.01)
    Non-finite: reference 0 NaN, 0 Inf; candidate 3 NaN, 1 Inf (4 elements); NaN or Inf always fails
    To accept an intended change: add a reviewed override with a reason to parity/tolerances.toml, or regenerate goldens with pytest --force-regen.

The first three lines and the last are always present; the others appear when they apply
(near-zero values, complex stages, float candidates, a local comparison, patch stages with a
nonzero difference, non-finite values). With non-finite values no tolerance passes: the minimum
passing tolerance reads "none (non-finite values)". Stage and case results are read by
attribute (no import of compare).
"""
from __future__ import annotations

import math
from typing import Any, List, Mapping, Optional

from parity.stages import BY_NAME

ACCEPT_HINT = ("To accept an intended change: add a reviewed override with a reason to parity/tolerances.toml, "
               "or regenerate goldens with pytest --force-regen.")
STRUCTURAL_HINT = ("Fix the adapter or the model so that both backends emit the stage as declared in "
                   "parity/stages.py (shapes are never broadcast or reshaped to fit).")


def fmt(x: Any) -> str:
    """3 significant digits; "n/a" for None; "nan"/"inf" as such."""
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return format(x, ".3g")


def fmt_index(idx: Any) -> str:
    if idx is None:
        return "n/a"
    return "(" + ", ".join(str(int(i)) for i in idx) + ")"


def fmt_percent(frac: float) -> str:
    p = 100.0 * frac
    if p == 0:
        return "0%"
    if p >= 0.01:
        return f"{p:.2f}%"
    return f"{p:.2g}%"


def fmt_tolerance(tol: Mapping[str, Any]) -> str:
    text = f"rtol={fmt(tol['rtol'])} atol={fmt(tol['atol'])} atol_scaled={fmt(tol['atol_scaled'])}"
    if tol.get("max_mismatch_fraction"):
        text += f" max_mismatch_fraction={fmt(tol['max_mismatch_fraction'])}"
    return text


def _case(case: str) -> str:
    return f"case {case}" if case else "case <unnamed>"


def _threshold(tol: Mapping[str, Any], ref_max: float, ref_abs: float) -> float:
    return tol["atol"] + tol["atol_scaled"] * ref_max + tol["rtol"] * ref_abs


def header(case: str, sr: Any) -> str:
    """First line of a stage message."""
    head = f"{_case(case)}, stage {sr.name}"
    if sr.problem is not None:
        return f"{head}: FAILED (structural)"
    tol = sr.tolerance
    src = f" [{tol['source']}]" if tol.get("source") else ""
    what = "FAILED" if sr.verdict != "pass" else "passed"
    return f"{head}: {what} ({sr.dtype}, tolerance {fmt_tolerance(tol)}{src})"


def format_stage_failure(case: str, sr: Any, patch_errors: Optional[Mapping[str, Any]] = None) -> str:
    """Multi-line message for one stage result (a passing stage gets its header line with margin)."""
    if sr.problem is not None:
        problem = sr.problem[:1].upper() + sr.problem[1:]
        return "\n".join([header(case, sr), problem, STRUCTURAL_HINT])
    if sr.verdict == "pass":
        return f"{header(case, sr)}; margin {fmt(sr.margin)}, max abs difference {fmt(sr.max_abs)}"
    tol, M = sr.tolerance, sr.ref_max_abs or 0.0
    witness = sr.witness or {}
    lines: List[str] = [header(case, sr)]

    n = sr.n_elements or 0
    if sr.mismatch_count is None:
        lines.append(f"Mismatched elements: unknown / {n} (re-checked from stored statistics)")
    else:
        lines.append(f"Mismatched elements: {sr.mismatch_count} / {n} ({fmt_percent(sr.mismatch_fraction or 0.0)})")

    w_abs = witness.get("abs")
    allowed_abs = _threshold(tol, M, w_abs[1]) if w_abs else None
    lines.append(f"Greatest absolute difference: {fmt(sr.max_abs)} at index {fmt_index(sr.worst_index)} "
                 f"(up to {fmt(allowed_abs)} allowed)")
    w_rel = witness.get("rel")
    if sr.max_rel is None or (isinstance(sr.max_rel, float) and math.isnan(sr.max_rel)) or not w_rel \
            or not w_rel[1]:
        lines.append("Greatest relative difference: n/a (every reference value is zero or tiny)")
    else:
        allowed_rel = _threshold(tol, M, w_rel[1]) / w_rel[1]
        lines.append(f"Greatest relative difference: {fmt(sr.max_rel)} at index {fmt_index(sr.worst_rel_index)} "
                     f"(up to {fmt(allowed_rel)} allowed)")
    lines.append(f"Relative L2 error: {fmt(sr.rel_l2)}; stage-relative max error: {fmt(sr.rel_max)}")

    mpt = sr.min_passing_tolerance
    nf = sr.nonfinite or {}
    if nf.get("elements"):
        lines.append("Minimum passing tolerance: none (non-finite values)")
    elif mpt is None:
        lines.append("Minimum passing tolerance: unknown (re-check with the captures)")
    else:
        bound = {"<=": "at most ", ">=": "at least "}.get(sr.bound or "=", "")
        scale = f"x{fmt(sr.margin)} the current tolerance" if sr.margin is not None and math.isfinite(sr.margin) \
            else "scaling the current tolerance cannot pass"
        if sr.bound in ("<=", ">="):
            scale += "; bound from stored statistics"
        lines.append(f"Minimum passing tolerance: {bound}rtol={fmt(mpt['rtol'])} atol={fmt(mpt['atol'])} "
                     f"atol_scaled={fmt(mpt['atol_scaled'])} ({scale})")

    if sr.n_zero_ref or sr.n_tiny_ref:
        lines.append(f"Near-zero reference values: {sr.n_zero_ref} exactly zero, {sr.n_tiny_ref} tiny "
                     f"(0 < |ref| <= {fmt(sr.tiny)}); not used for the relative difference")
    cs = sr.complex_stats
    if cs:
        lines.append(f"Amplitude difference: {fmt(cs['amp_max_abs'])} at index {fmt_index(cs['amp_worst_index'])}; "
                     f"phase difference (amplitude-weighted): max {fmt(cs['phase_max_weighted'])} rad at index "
                     f"{fmt_index(cs['phase_worst_index'])}, mean {fmt(cs['phase_mean_weighted'])} rad")
    if sr.ulp:
        lines.append(f"ULP distance ({sr.ulp['grid']} grid): max {fmt(sr.ulp['max'])}, p99 {fmt(sr.ulp['p99'])}")
    if sr.local is not None:
        loc = sr.local
        verdict = "passed" if loc.get("verdict") == "pass" else "FAILED"
        detail = loc.get("problem") or f"margin {fmt(loc.get('margin'))}"
        consequence = {"root_cause": "root cause", "propagated": "error propagated from an earlier stage",
                       "ok": "ok"}.get(sr.label, sr.label)
        if sr.label == "root_cause" and loc.get("verdict") == "pass" and nf.get("elements"):
            consequence += " (non-finite values end to end, none with the reference's inputs)"
        lines.append(f"Local (teacher-forced) comparison: {verdict}, {detail} -> {consequence}")
    worst = [w for w in (patch_errors or {}).get("worst", []) if not w[2] == 0]  # NaN stays
    if worst:
        axis = "c"
        stage = BY_NAME.get(sr.name)
        if stage is not None and len(stage.shape) > 1:
            axis = stage.shape[1].lower()
        text = ", ".join(f"({b}, {c}: {fmt(v)})" for b, c, v in worst)
        lines.append(f"Worst patches (b, {axis}: max abs): {text}")
    if nf.get("elements"):
        lines.append(f"Non-finite: reference {nf['ref_nan']} NaN, {nf['ref_inf']} Inf; candidate {nf['cand_nan']} NaN, "
                     f"{nf['cand_inf']} Inf ({nf['elements']} elements); NaN or Inf always fails")
    lines.append(ACCEPT_HINT)
    return "\n".join(lines)


def format_case_summary(result: Any) -> str:
    """Case verdict line, problems, and a table of every stage."""
    stages = list(result.stages)
    failed = [s for s in stages if s.verdict != "pass"]
    if result.verdict == "pass":
        worst = max((s for s in stages if s.margin is not None), key=lambda s: s.margin, default=None)
        tail = f"; largest margin {fmt(worst.margin)} at stage {worst.name}" if worst is not None else ""
        first = f"{_case(result.name)}: passed ({len(stages)} stages{tail})"
    else:
        parts = [f"{len(failed)} of {len(stages)} stages failed"]
        if result.first_divergent_stage:
            parts.append(f"first divergent stage: {result.first_divergent_stage}")
        if result.root_cause_stage:
            parts.append(f"root cause: {result.root_cause_stage}")
        first = f"{_case(result.name)}: FAILED ({'; '.join(parts)})"
    lines = [first]
    if result.problems:
        lines.append("Problems:")
        lines.extend(f"  - {p}" for p in result.problems)
    width = max([len("stage")] + [len(s.name) for s in stages])
    lines.append(f"{'stage':<{width}}  verdict  label        margin    max_abs   rel_max   rel_l2")
    for s in stages:
        lines.append(f"{s.name:<{width}}  {s.verdict:<7}  {s.label:<11}  {fmt(s.margin):<8}  "
                     f"{fmt(s.max_abs):<8}  {fmt(s.rel_max):<8}  {fmt(s.rel_l2)}".rstrip())
    return "\n".join(lines)
