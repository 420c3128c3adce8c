"""index.html: one self-contained page (inline CSS, no script, no network) rendered from the
report document. Links are relative, so the hub can be moved or archived as a whole."""
from __future__ import annotations

import html
from typing import Any, List, Mapping, Optional, Sequence
from urllib.parse import quote

from parity.messages import fmt
from parity.stages import STAGE_NAMES
from parity.jsonable import decode_float

from .backward import html_section as backward_section
from .figures import LOG_MARGIN_RANGE, log_margin, margin_colour, shown_margin
from .training import section as training_section


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em;color:#222;max-width:1800px}
h1{margin:.2em 0} h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.banner{padding:.6em 1em;border-radius:6px;font-size:1.3em;font-weight:600;display:inline-block}
.pass{background:#d9f2d9;color:#135e13}.known{background:#fbeec4;color:#6b4e00}.fail{background:#f8d4d4;color:#8a1111}.na{background:#eee;color:#555}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}
th{background:#f4f4f4} td.m{text-align:center;font-variant-numeric:tabular-nums;min-width:3.6em}
td.bad{outline:2px solid #000;outline-offset:-2px;font-weight:700}
td.drift{box-shadow:inset 0 -4px 0 #7b2cbf}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:12px}
img{max-width:100%;border:1px solid #ddd;margin:4px 0}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:8px}
.small{color:#666;font-size:12px} details{margin:.5em 0}
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _href(rel: str) -> str:
    return quote(rel, safe="/@-_.~")


def _link(rel: Optional[str], text: Optional[str] = None) -> str:
    if not rel:
        return ""
    return f'<a href="{_href(rel)}">{_e(text or rel)}</a>'


def colour(margin: Any) -> str:
    """Background colour of a stage cell: its log10(error / tolerance) on the heat map's scale."""
    return "#%02x%02x%02x" % margin_colour(log_margin(decode_float(margin)))


def _verdict(v: Optional[str]) -> str:
    cls = {"pass": "pass", "fail": "fail", "known": "known", "fixed": "fail"}.get(v or "", "na")
    return f'<span class="banner {cls}" style="font-size:1em;padding:1px 6px">{_e((v or "n/a").upper())}</span>'


def _case_table(cases: Sequence[Mapping[str, Any]], stages: Sequence[str]) -> str:
    stages = list(stages)
    head = "".join(f"<th>{_e(s)}</th>" for s in stages)
    rows = []
    for c in cases:
        by = {s["name"]: s for s in c.get("stages", [])}
        cells = []
        for s in stages:
            st = by.get(s)
            if st is None:
                cells.append('<td class="m" style="background:#ddd">n/a</td>')
                continue
            m, text = shown_margin(decode_float(st.get("margin")), decode_float(st.get("local_error")),
                                   st.get("verdict"), (st.get("nonfinite") or {}).get("elements", 0))
            cls = "m" + (" bad" if st.get("verdict") != "pass" else "")
            drift = st.get("drift") or {}
            if drift.get("flagged"):
                cls += " drift"
            tip = (f"{s}: {st.get('verdict')}, label {st.get('label')}; error / tolerance {fmt(m)}; "
                   f"max |d| {fmt(decode_float(st.get('max_abs')))}; rel_l2 {fmt(decode_float(st.get('rel_l2')))}; "
                   f"local {fmt(decode_float(st.get('local_error')))}")
            if drift:
                tip += f"; drift x{fmt(decode_float(drift.get('ratio')))} vs baseline"
            if st.get("problem"):
                tip += f"; {st['problem']}"
            if st.get("divergence"):
                tip += f"; {st['divergence']['message']}"
                if st["divergence"]["status"] in ("known", "known_propagated"):
                    text += " K"
            cells.append(f'<td class="{cls}" style="background:{colour(m)}" title="{_e(tip)}">{_e(text)}</td>')
        name = f'<a href="#case-{_href(c["key"])}">{_e(c["key"])}</a>'
        rows.append(f"<tr><td>{name}</td><td>{_e(c['dtype'])}</td><td>{_verdict(c['verdict'])}</td>"
                    f"<td>{_e(c.get('first_divergent_stage') or '-')}</td><td>{_e(c.get('root_cause_stage') or '-')}"
                    f"</td>{''.join(cells)}</tr>")
    lo, hi = LOG_MARGIN_RANGE
    legend = (f'<p class="small">Cell: error / tolerance (the stage\'s margin; &gt; 1 fails; "L": that of the '
              f'teacher-forced local comparison, for a stage that fails only there), coloured by its log10 '
              f'from {lo:g} (green) through 0 (yellow) to {hi:g} (red); framed: failing stage; purple underline: '
              f'drifted against the baseline; "K": a known divergence (registered, or propagated from one); hover for '
              f'details.</p>')
    return (f"<table><tr><th>case</th><th>dtype</th><th>verdict</th><th>first divergent</th><th>root cause</th>"
            f"{head}</tr>{''.join(rows)}</table>{legend}")


def _figures(c: Mapping[str, Any]) -> str:
    figs = c.get("figures") or {}
    items: List[str] = []
    for stage, rel in (figs.get("stages") or {}).items():
        items.append((stage, rel))
    for name in ("error_by_stage", "patch_errors", "error_histogram"):
        if figs.get(name):
            items.append((name.replace("_", " "), figs[name]))
    if not items:
        return '<p class="small">no figures</p>'
    return '<div class="figs">' + "".join(
        f'<figure><a href="{_href(rel)}"><img src="{_href(rel)}" alt="{_e(label)}" loading="lazy"></a>'
        f'<figcaption class="small">{_link(rel, label)}</figcaption></figure>' for label, rel in items) + "</div>"


def _case_section(c: Mapping[str, Any]) -> str:
    parts = [f'<h3 id="case-{_e(c["key"])}">{_e(c["key"])} {_verdict(c["verdict"])}</h3>',
             f'<p class="small">device {_e(c["device"])}, dtype {_e(c["dtype"])}, tolerance mode '
             f'{_e(c.get("tolerance_mode"))}; covers: {_e((c.get("case") or {}).get("covers", ""))}</p>']
    if c.get("error"):
        parts.append(f"<pre>{_e(c['error'])}</pre>")
    for err in c.get("errors") or []:
        tail = "\n".join(err.get("tail") or [])
        parts.append(f'<p class="small">side <b>{_e(err.get("side"))}</b>, job {_e(err.get("job"))}: '
                     f'{_e(err.get("kind"))}: {_e(err.get("reason"))}</p>'
                     + (f"<pre>last lines of the side's worker:\n{_e(tail)}</pre>" if tail else ""))
    for p in c.get("problems") or []:
        parts.append(f"<pre>{_e(p)}</pre>")
    own = c.get("own_losses") or {}
    if own:
        rows = "".join(f"<tr><td>{_e(side)}</td><td>{_e(name)}</td><td>{_e(_num(v.get('value')))}</td>"
                       f"<td>{_e(v.get('canonical'))} = {_e(_num(v.get('canonical_value')))}</td>"
                       f"<td class='small'>{_e(v.get('computed_by'))}; {_e(v.get('relation'))}</td></tr>"
                       for side, losses in own.items() for name, v in losses.items())
        parts.append("<p>Each side's own loss (its code, its reduction) beside the canonical loss stages (derived "
                     "the same way on both sides from its captured stages; those are what is compared):</p>"
                     f"<table><tr><th>side</th><th>own loss</th><th>value</th><th>canonical stage</th>"
                     f"<th>computed by</th></tr>{rows}</table>")
    if c.get("divergences"):
        parts.append(_divergence_list(c))
    failing = [s for s in c.get("stages", []) if s.get("verdict") != "pass"]
    for s in failing[:6]:
        parts.append(f"<pre>{_e(s.get('message'))}</pre>")
    if len(failing) > 6:
        parts.append(f'<p class="small">... and {len(failing) - 6} more failing stages (see parity_report.json)</p>')
    caps = c.get("captures") or {}
    if caps:
        parts.append('<p class="small">captures: ' + ", ".join(_link(rel, role) for role, rel in caps.items()) + "</p>")
    parts.append(_figures(c))
    return "\n".join(parts)


def _divergence_list(c: Mapping[str, Any]) -> str:
    """The case's registered divergences and how each stage was judged (known, new, fixed ...)."""
    rows = []
    for st in c.get("stages", []):
        d = st.get("divergence")
        if d:
            where = f" ({_e(d.get('where'))})" if d.get("where") else ""
            rows.append(f"<li><b>{_e(st['name'])}</b>: {_e(d['status'].replace('_', ' '))}: {_e(d['message'])}{where}</li>")
    for a in c.get("divergences") or []:
        if a["stage"] not in {st["name"] for st in c.get("stages", [])}:
            rows.append(f"<li><b>{_e(a['stage'])}</b>: {_e(a['status'])}: {_e(a['message'])}</li>")
    return (f'<p class="small">known divergences (verdict without them: {_e(c.get("raw_verdict"))}):</p>'
            f'<ul class="small">{"".join(rows)}</ul>')


def _uses(applied: Mapping[str, Any], ident: str) -> str:
    got = [f"{key}: {a['status']}" for key, case in applied.items() for a in case["entries"] if a["id"] == ident]
    return ", ".join(got) or "no case of this run"


def _divergences(reg: Optional[Mapping[str, Any]]) -> str:
    if not reg:
        return ""
    if not reg.get("enabled", True):
        return f"<h2>Known divergences</h2><p class='small'>{_e(reg.get('note'))}</p>"
    files = "".join(f"<li>{_e(f['origin'])}: {_e(f['path'])} (sha256 {_e(f['sha256'][:16])}...)</li>"
                    for f in reg.get("files", []))
    applied = reg.get("applied") or {}
    rows = "".join(
        f"<tr><td>{_e(e['id'])}</td><td>{_e(e['cases'])}</td><td>{_e(e['stage'])}</td>"
        f"<td>{_e(_measured(e['measured']))}</td><td>{_e(e['reason'])}</td>"
        f"<td>{_e(e['where'])}</td><td>{_e(_uses(applied, e['id']))}</td></tr>"
        for e in reg.get("entries", []))
    table = ("<table><tr><th>entry</th><th>cases</th><th>stage</th><th>measured err/tol</th><th>reason</th>"
             f"<th>where</th><th>this run</th></tr>{rows}</table>") if rows else "<p class='small'>no entries</p>"
    return f"<h2>Known divergences</h2><ul class='small'>{files or '<li>' + _e(reg.get('note')) + '</li>'}</ul>{table}"


def _kv(d: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in d.items())
    return f"<table>{rows}</table>"


def _drift(drift: Optional[Mapping[str, Any]]) -> str:
    if not drift:
        return ""
    base = drift["baseline"]
    head = (f"<h2>Drift against the baseline</h2><p>baseline {_e(base.get('hub'))} (created {_e(base.get('created'))}, "
            f"verdict {_e(base.get('verdict'))}); metric {_e(drift['metric'])}; a stage is flagged when its error grew "
            f"by more than x{_e(fmt(decode_float(drift['factor'])))} ({_e(drift.get('floor'))}). "
            f"{_verdict(drift['verdict'])} {drift['n_flagged']} flagged.</p>")
    rows = "".join(f"<tr><td>{_e(f['case'])}</td><td>{_e(f['device'])}</td><td>{_e(f['stage'])}</td>"
                   f"<td>{_e(fmt(decode_float(f['then'])))}</td><td>{_e(fmt(decode_float(f['now'])))}</td>"
                   f"<td>x{_e(fmt(decode_float(f['ratio'])))}</td><td>{_e(f.get('verdict'))}</td></tr>"
                   for f in drift["flagged"])
    table = (f"<table><tr><th>case</th><th>device</th><th>stage</th><th>max |d| then</th><th>now</th><th>growth</th>"
             f"<th>verdict now</th></tr>{rows}</table>") if rows else ""
    status = "".join(f"<li>{_e(r['case'])} ({_e(r['device'])}): {_e(r['status'])}</li>" for r in drift["cases"]
                     if r["status"] != "compared")
    return head + table + (f"<ul class='small'>{status}</ul>" if status else "")


def _device_matrix(m: Optional[Mapping[str, Any]]) -> str:
    """Device matrix section: one row per comparison (or unavailable device)."""
    if not m:
        return ""
    rows = []
    for e in m.get("entries", []):
        stages = e.get("stages") or []
        worst = max(stages, key=lambda s: (s.get("margin") or 0) if isinstance(s.get("margin"), (int, float)) else 0,
                    default=None)
        ulp = max((s.get("ulp_max") or 0 for s in stages if isinstance(s.get("ulp_max"), (int, float))), default=None)
        rows.append(
            f"<tr><td>{_e(e['candidate'])}</td><td>{_e(e.get('reference') or '-')}</td><td>{_e(e['status'])}</td>"
            f"<td>{_e(e['verdict'])}</td><td>{_e(worst['name'] + ' ' + fmt(worst.get('margin'))) if worst else '-'}</td>"
            f"<td>{_e(fmt(worst.get('rel_max'))) if worst else '-'}</td><td>{_e(fmt(ulp)) if ulp is not None else '-'}</td>"
            f"<td>{_e(e.get('reason') or '')}</td></tr>")
    return (f"<h2>Device matrix ({_e(m.get('case'))}): {_e(str(m.get('verdict')).upper())}</h2>"
            "<table><tr><th>candidate</th><th>compared with</th><th>status</th><th>verdict</th>"
            "<th>worst stage (error/tolerance)</th><th>its stage-relative error</th><th>max ULPs</th><th>reason</th></tr>"
            + "".join(rows) + "</table>")


def render(doc: Mapping[str, Any]) -> str:
    """The page for a report document (parity.report.document)."""
    v = doc["verdict"]
    files = doc.get("files") or {}
    prov = doc.get("provenance") or {}
    s = doc.get("summary") or {}
    t = doc.get("timings") or {}
    devices = "".join(
        f"<li>{_e(d['device'])}: {_e(d['status'])}" + (f" ({_e(d['reason'])})" if d.get("reason") else "")
        + (f", {d['passed']} passed, {d['failed']} failed" if d["status"] == "available" else "") + "</li>"
        for d in doc.get("devices", []))
    reasons = "".join(f"<li>{_e(r)}</li>" for r in doc.get("verdict_reasons", []))
    links = [_link(files.get("summary"), "summary heat map"), _link("parity_report.json"),
             _link(files.get("schema"), "JSON schema"), _link(files.get("config"), "run configuration")]
    for group in ("patch_stats", "patch_grids"):
        for backend, rel in (files.get(group) or {}).items():
            if rel in doc.get("artifacts", []):
                links.append(_link(rel))
    if files.get("patch_errors") in doc.get("artifacts", []):
        links.append(_link(files["patch_errors"]))
    grids = "".join(f'<figure><a href="{_href(rel)}"><img src="{_href(rel)}" alt="{_e(b)} patch grid"></a></figure>'
                    for b, rel in (files.get("patch_grids") or {}).items() if rel in doc.get("artifacts", []))
    recheck = ""
    if doc.get("recheck_of"):
        r = doc["recheck_of"]
        recheck = (f"<p>Re-checked from the captures of {_e(r.get('hub'))} (created {_e(r.get('created'))}, verdict "
                   f"then {_e(r.get('verdict'))}) under new tolerances; no model was run.</p>")
    timing = {k: (fmt(t[k]) if isinstance(t.get(k), (int, float)) and not isinstance(t[k], bool) else t.get(k)) for k in
              ("clock", "wall_s", "setup_s", "forward_s", "backend_s", "isolation_s", "compare_s", "harness_s",
               "harness_fraction", "outside_forward_fraction", "figures_s", "write_s", "finish_s") if k in t}
    summary_img = (f'<p><a href="{_href(files["summary"])}"><img src="{_href(files["summary"])}" '
                   f'alt="summary heat map"></a></p>') if files.get("summary") in doc.get("artifacts", []) else ""
    prov_main = {k: prov.get(k) for k in ("python", "numpy", "tensorflow", "keras", "torch", "cuda", "os", "cpu",
                                          "tolerance_mode", "isolation", "TF_ENABLE_ONEDNN_OPTS", "command", "git")}
    known = "".join(f", {s[k]} {k}" for k in ("known", "fixed") if s.get(k))
    body = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Forward parity: {_e(v.upper())}</title>
<style>{CSS}</style></head><body>
<h1>Forward parity report</h1>
<p>Pair: reference <b>{_e((doc.get('pair') or {}).get('reference'))}</b>, candidate <b>{_e((doc.get('pair') or {}).get('candidate'))}</b></p>
<div class="banner {'pass' if v == 'pass' else 'fail'}">{_e(v.upper())}: {s.get('passed', 0)} of {s.get('cases', 0)} cases passed{known}</div>
<ul>{reasons}</ul>
{recheck}
<p class="small">created {_e(doc.get('created'))}; mode {_e(doc.get('mode'))}; tolerances {_e(doc['tolerances'].get('mode'))}
({_e(doc['tolerances'].get('path'))}); command <code>{_e(prov.get('command'))}</code></p>
<p>Devices:</p><ul>{devices}</ul>
<p>{' | '.join(l for l in links if l)}</p>
{_device_matrix(doc.get('device_matrix'))}
{_refused(doc.get('not_expressible'))}
{training_section(doc.get('training'))}
<h2>Cases x stages</h2>
{_case_table(doc.get('cases', []), (doc.get('pair') or {}).get('stages') or STAGE_NAMES)}
{summary_img}
{backward_section(doc)}
{_drift(doc.get('drift'))}
{_divergences(doc.get('divergences'))}
<h2>Patch grids of the default case</h2>
<div class="figs">{grids or '<p class="small">none</p>'}</div>
<h2>Cases</h2>
{''.join(_case_section(c) for c in doc.get('cases', []))}
<h2>Provenance</h2>
{_kv(prov_main)}
<details><summary>everything (determinism flags, threads, environment, fixture hashes)</summary><pre>{_e(_pretty(prov))}</pre></details>
<h2>Timings</h2>
{_kv(timing)}
<p class="small">{_e((t.get('definitions') or {}).get('harness_s', ''))}</p>
</body></html>
"""
    return body


def _measured(m: Mapping[str, Any]) -> str:
    if m.get("err_over_tol") is not None:
        return fmt(decode_float(m["err_over_tol"]))
    return f"shape: {m['shape']}" if "shape" in m else f"raises: {m.get('error')}"


def _num(v: Any) -> Any:
    return fmt(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def _refused(refused: Optional[Mapping[str, Any]]) -> str:
    if not refused:
        return ""
    rows = "".join(f"<li><b>{_e(name)}</b>: " + "; ".join(f"{_e(k)}: {_e(v)}" for k, v in why.items()) + "</li>"
                   for name, why in refused.items())
    return f"<h2>Cases the pair cannot express (not run)</h2><ul>{rows}</ul>"


def _pretty(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=1, sort_keys=True, default=str)
