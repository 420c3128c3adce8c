"""The backward section of a report (``--backward``): JSON entries, heat maps, page, terminal.

Per case, ``case["backward"]`` holds per loss the adjoint stages (``grad:S``, reverse pipeline
order) and the weights, each with verdict, label, margin, local error, max |d|, rel_l2 and the
resolved tolerance (the full statistics are those of :mod:`parity.compare`); the document's
``backward`` block holds the verdict over cases and the heat maps' files. A report with
``--backward`` is schema version 3 (:data:`SCHEMA_VERSION`); without it nothing here runs and
the document is version 2, unchanged.
"""
from __future__ import annotations

import html
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence

from parity.jsonable import decode_float, to_json
from parity.messages import fmt

SCHEMA_VERSION = 3  # the report document's version with a backward section
_FIELDS = ("verdict", "label", "margin", "local_error", "max_abs", "rel_max", "rel_l2", "mismatch_count",
           "n_elements", "nonfinite", "problem")


def _entry(sr) -> Dict[str, Any]:
    d = {"name": sr.name, **{k: getattr(sr, k) for k in _FIELDS}, "tolerance": sr.tolerance}
    if sr.verdict != "pass":
        d["message"] = sr.message
    return to_json(d)


def case_entry(b) -> Dict[str, Any]:
    """The ``backward`` entry of one case (a parity.backward.BackwardResult)."""
    out: Dict[str, Any] = {"schema": "parity.backward_result", "schema_version": 1, "verdict": b.verdict,
                           "available": b.available, "reason": b.reason, "tolerance_mode": b.tolerance_mode,
                           "summary": b.summary(), "losses": {}}
    for loss, lb in b.losses.items():
        out["losses"][loss] = to_json({
            "verdict": lb.verdict, "first_divergent_stage": lb.adjoint.first_divergent_stage,
            "root_cause_stage": lb.adjoint.root_cause_stage, "first_divergent_weight": lb.weights.first_divergent_stage,
            "root_cause_weight": lb.weights.root_cause_stage, "nonfinite": lb.nonfinite,
            "stages": [_entry(s) for s in lb.adjoint.stages], "weights": [_entry(s) for s in lb.weights.stages]})
    return out


def block(cases: Sequence[Mapping[str, Any]], figures: Mapping[str, str]) -> Dict[str, Any]:
    """The document's ``backward`` block: verdict over the cases that have one, per loss the
    worst margin per adjoint stage and per layer, and the heat maps."""
    entries = [c for c in cases if c.get("backward")]
    failed = [c["key"] for c in entries if c["backward"]["verdict"] == "fail"]
    unavailable = [c["key"] for c in entries if c["backward"]["verdict"] == "not_available"]
    missing = [c["key"] for c in cases if not c.get("backward")]
    worst: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for c in entries:
        for loss, lb in c["backward"]["losses"].items():
            w = worst.setdefault(loss, {"stages": {}, "weights": {}})
            for kind in ("stages", "weights"):
                for s in lb[kind]:
                    m = decode_float(s.get("margin"))
                    cur = w[kind].get(s["name"])
                    if m is not None and (cur is None or _gt(m, decode_float(cur["margin"]))):
                        w[kind][s["name"]] = {"margin": s.get("margin"), "rel_l2": s.get("rel_l2"), "case": c["key"]}
    verdict = "fail" if failed or missing else ("not_available" if entries and len(unavailable) == len(entries)
                                                 else "pass")
    reasons = []
    if failed:
        reasons.append(f"backward parity failed in {len(failed)} of {len(entries)} cases: " + ", ".join(failed[:10]))
    if missing:
        reasons.append(f"{len(missing)} case(s) have no backward result (the forward did not run): "
                       + ", ".join(missing[:5]))
    return {"verdict": verdict, "cases": len(entries), "passed": sum(c["backward"]["verdict"] == "pass" for c in entries),
            "failed": failed, "not_available": unavailable, "reasons": reasons, "worst": worst,
            "figures": dict(figures)}


def _gt(a: float, b: Optional[float]) -> bool:
    if b is None:
        return True
    if math.isnan(a):
        return not math.isnan(b)
    return a > b


# ------------------------------------------------------------------------------ heat maps
def heatmaps(records, path_of, title_prefix: str) -> Dict[str, str]:
    """Per loss: case x adjoint stage and layer x case heat maps of error / tolerance; returns
    {name: hub-relative path} of the files drawn (``path_of(rel)`` -> absolute path)."""
    from parity.backward import layer_matrix

    from .figures import summary_heatmap

    results = [r.backward for r in records if getattr(r, "backward", None) is not None and r.backward.available]
    keys = {id(r.backward): r.key for r in records if getattr(r, "backward", None) is not None}
    out: Dict[str, str] = {}
    if results:
        path_of("analysis").mkdir(parents=True, exist_ok=True)
    losses = list(dict.fromkeys(loss for b in results for loss in b.losses))
    for loss in losses:
        mine = [b for b in results if loss in b.losses]
        stages = list(dict.fromkeys(s.name for b in mine for s in b.losses[loss].adjoint.stages))
        rows, margins, failed = [], [], []
        for b in mine:
            by = {s.name: s for s in b.losses[loss].adjoint.stages}
            rows.append(keys[id(b)])
            margins.append([by[s].margin if s in by else None for s in stages])
            failed.append([s in by and by[s].verdict != "pass" for s in stages])
        rel = f"analysis/backward_{loss}_stages.png"
        summary_heatmap(path_of(rel), f"{title_prefix}: d{loss}/d(stage), case x adjoint stage", rows, stages, margins,
                        failed)
        out[f"{loss}_stages"] = rel
        layers, cases, m = layer_matrix(mine, loss, "margin")
        verdicts = {(s.name, keys[id(b)]): s.verdict != "pass" for b in mine for s in b.losses[loss].weights.stages}
        case_keys = [keys[id(b)] for b in mine]
        rel = f"analysis/backward_{loss}_layers.png"
        summary_heatmap(path_of(rel), f"{title_prefix}: d{loss}/d(weight), layer x case", layers, case_keys,
                        [[None if math.isnan(v) else v for v in row] for row in m.tolist()],
                        [[verdicts.get((layer, k), False) for k in case_keys] for layer in layers])
        out[f"{loss}_layers"] = rel
    return out


# ------------------------------------------------------------------------------ page, terminal
def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def html_section(doc: Mapping[str, Any]) -> str:
    bw = doc.get("backward")
    if not bw:
        return ""
    rows = []
    for c in doc.get("cases", []):
        b = c.get("backward")
        if not b:
            rows.append(f"<tr><td>{_e(c['key'])}</td><td colspan=5>no backward result (the forward did not run)</td></tr>")
            continue
        if not b["available"]:
            rows.append(f"<tr><td>{_e(c['key'])}</td><td>NOT AVAILABLE</td><td colspan=4>{_e(b['reason'])}</td></tr>")
            continue
        for loss, lb in b["losses"].items():
            worst_w = max(lb["weights"], key=lambda s: decode_float(s.get("margin")) or 0.0, default=None)
            rows.append(f"<tr><td>{_e(c['key'])}</td><td>{_e(loss)}: {_e(lb['verdict'].upper())}</td>"
                        f"<td>{_e(lb.get('first_divergent_stage') or '-')}</td><td>{_e(lb.get('root_cause_stage') or '-')}"
                        f"</td><td>{_e(lb.get('first_divergent_weight') or '-')}</td><td>"
                        + (f"{_e(worst_w['name'])}: margin {fmt(decode_float(worst_w.get('margin')))}, rel_l2 "
                           f"{fmt(decode_float(worst_w.get('rel_l2')))}" if worst_w else "-") + "</td></tr>")
    figs = "".join(f'<figure><a href="{_e(rel)}"><img src="{_e(rel)}" alt="{_e(name)}"></a><figcaption>{_e(name)}'
                   f'</figcaption></figure>' for name, rel in (bw.get("figures") or {}).items()
                   if rel in doc.get("artifacts", []))
    reasons = "".join(f"<li>{_e(r)}</li>" for r in bw.get("reasons", []))
    return (f"<h2>Backward parity: {_e(bw['verdict'].upper().replace('_', ' '))} ({bw['passed']} of {bw['cases']} cases)</h2><ul>{reasons}</ul>"
            "<p class=\"small\">Gradients of each loss with respect to every stage it depends on (grad:S, compared "
            "in reverse pipeline order) and to every weight; root cause from the candidate's vector-Jacobian "
            "products fed the reference's values and output gradients (docs/backward.md).</p>"
            "<table><tr><th>case</th><th>loss</th><th>first divergent backward stage</th><th>root cause</th>"
            f"<th>first divergent weight</th><th>worst weight</th></tr>{''.join(rows)}</table>"
            f'<div class="figs">{figs}</div>')


def summary_lines(doc: Mapping[str, Any], verbose: int = 0) -> List[str]:
    bw = doc.get("backward")
    if not bw:
        return []
    lines = []
    for c in doc.get("cases", []):
        b = c.get("backward")
        if b and (b["verdict"] != "pass" or verbose):
            lines.append(b["summary"])
            if verbose:
                for lb in b["losses"].values():
                    lines.extend(s["message"] for s in lb["stages"] + lb["weights"] if s.get("message"))
    lines.append(f"backward: {bw['verdict'].upper().replace('_', ' ')}  {bw['passed']}/{bw['cases']} cases passed"
                 + (f"; not available: {', '.join(bw['not_available'])}" if bw["not_available"] else ""))
    return lines
