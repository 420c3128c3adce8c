"""The report's PNG figures.

Per case: reference | candidate | |difference| panels of the stages that matter, error / tolerance by
stage, per-patch error, error histogram; per hub: the case x stage heat map and the patch grids
of the default case. They are drawn with :mod:`parity.report.raster` (PIL, with matplotlib's
colormaps, tick locator and font), ~0.2 s per case, where matplotlib Axes took ~1 s.

Every figure has a title, colour bars with units, and one colour scale for the reference and candidate
panels of a stage (same vmin/vmax), so the eye compares like with like. Patch grids show at
most :data:`MAX_TILES` patches. Figures are written atomically (temporary file + rename).

Glossary (forward-model.md): B batch, C|K patches per group, N patch side, M canvas side.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from parity.messages import fmt

from .raster import Canvas, Plot, colour, nice_ticks

MAX_TILES = 16
#: Stages that get reference | candidate | |difference| panels (plus a failing case's first divergent and
#: root-cause stages when those are images).
FIGURE_STAGES = ("amp", "phase", "canvas", "exit_wave", "far_field_amp")
#: Margins (error / tolerance) below this are drawn at this value on log axes.
MARGIN_FLOOR = 1e-4
#: Stages drawn on a log10 scale (far field: the central peak dwarfs the rest), clipped to
#: LOG_DECADES_SHOWN decades below the reference's maximum.
LOG_STAGES = ("far_field_amp", "pred_amp", "pred_intensity")
LOG_DECADES_SHOWN = 6
LOG_MARGIN_RANGE = (-4.0, 2.0)

UNITS = {
    "input_scaled": "Xs / s (a.u.)", "latent": "activation (a.u.)", "amp": "amplitude (a.u.)",
    "phase": "phase (rad)", "object_patches": "|O| (a.u.)", "canvas": "|O| (a.u.)", "trimmed_object": "|O| (a.u.)",
    "extracted_patches": "|O| (a.u.)", "probe": "|P| (a.u.)", "exit_wave": "|psi| (a.u.)",
    "far_field_amp": "amplitude (a.u.)", "pred_amp": "amplitude (sqrt photons)", "pred_intensity": "photons",
}


@functools.lru_cache(maxsize=None)
def _cmap(name: str, bad: str = "white"):
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad=bad)


# --------------------------------------------------------------------------- mosaics
def tiles_of(x: np.ndarray, max_tiles: int = MAX_TILES) -> Tuple[List[np.ndarray], List[str], str]:
    """Up to ``max_tiles`` 2-D images of a stage and their labels.

    (B, C, N, N): patches (b, c) in row-major order, whole groups first; (B, M, M): samples;
    (N, N): the image itself. Returns (tiles, labels, description).
    """
    x = np.asarray(x)
    if x.ndim == 4:
        B, C = x.shape[:2]
        idx = [(b, c) for b in range(B) for c in range(C)][:max_tiles]
        return [x[b, c] for b, c in idx], [f"{b},{c}" for b, c in idx], \
            f"patches (b, c) {idx[0]}..{idx[-1]} of {B}x{C}"
    if x.ndim == 3:
        n = min(x.shape[0], max_tiles)
        return [x[b] for b in range(n)], [str(b) for b in range(n)], f"samples 0..{n - 1} of {x.shape[0]}"
    if x.ndim == 2:
        return [x], [""], "whole image"
    raise ValueError(f"cannot draw an array of shape {x.shape} as images")


def mosaic(tiles: Sequence[np.ndarray], gap: int = 2) -> np.ndarray:
    """Tiles (same shape) in a near-square grid, separated by NaN gaps (drawn white)."""
    k = len(tiles)
    cols = int(math.ceil(math.sqrt(k)))
    rows = int(math.ceil(k / cols))
    h, w = tiles[0].shape
    out = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap), np.nan)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = t
    return out


def _limits(*arrays: np.ndarray) -> Tuple[float, float]:
    lo = min(float(np.nanmin(a)) for a in arrays)
    hi = max(float(np.nanmax(a)) for a in arrays)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 1.0
    if hi <= lo:
        hi = lo + (abs(lo) * 1e-6 or 1e-30)
    return lo, hi


# --------------------------------------------------------------------------- raster panels
# Stage figures are composed as one RGB raster: panels and colour-bar strips drawn with NumPy
# through matplotlib's colormaps, text with matplotlib's DejaVu Sans font (parity.report.raster).
# This is ~5x cheaper than one matplotlib Axes per panel and colour bar (text layout dominates
# there) and reads the same.
_PANEL = 300  # target long side of a panel, pixels
_CBW, _TICKW, _GAP = 14, 64, 18
_TITLE_H, _LINE_H = 24, 18


def _resample(img: np.ndarray, peak: bool) -> np.ndarray:
    """Integer up-sampling (repeat) or down-sampling (stride; block max for ``peak`` panels)."""
    n = max(img.shape)
    if n < _PANEL // 2:
        k = max(1, _PANEL // n)
        return np.repeat(np.repeat(img, k, axis=0), k, axis=1)
    if n > int(_PANEL * 1.3):
        k = int(math.ceil(n / _PANEL))
        if not peak:
            return img[::k, ::k]
        h, w = (img.shape[0] + k - 1) // k * k, (img.shape[1] + k - 1) // k * k
        pad = np.full((h, w), np.nan)
        pad[:img.shape[0], :img.shape[1]] = img
        blocks = pad.reshape(h // k, k, w // k, k)
        with np.errstate(invalid="ignore"):
            return np.fmax.reduce(np.fmax.reduce(blocks, axis=3), axis=1)
    return img


def _rgb(img: np.ndarray, cmap: str, vmin: float, vmax: float) -> np.ndarray:
    span = vmax - vmin if vmax > vmin else 1.0
    with np.errstate(invalid="ignore"):
        z = np.clip((img - vmin) / span, 0.0, 1.0)
    z = np.where(np.isnan(img), np.nan, z)
    return _cmap(cmap)(z, bytes=True)[..., :3]


def _raster_figure(path: Path, suptitle: str, rows: Sequence[Sequence[Dict[str, Any]]]) -> None:
    """Rows of panels {img, cmap, vmin, vmax, title, label, peak} with colour bars, as one PNG."""
    lines = suptitle.count("\n") + 1
    top = 8 + lines * _LINE_H + 6
    prepared = [[dict(p, img=_resample(p["img"], p.get("peak", False))) for p in row] for row in rows]
    ph = max(p["img"].shape[0] for row in prepared for p in row)
    pw = max(p["img"].shape[1] for row in prepared for p in row)
    col_w = pw + 6 + _CBW + _TICKW + _GAP
    W = 12 + col_w * max(len(r) for r in prepared)
    H = top + len(prepared) * (_TITLE_H + ph + 14)
    canvas = np.full((H, W, 3), 255, np.uint8)
    texts = [(W / 2, 8, suptitle, dict(anchor="ma", fontsize=11))]
    for i, row in enumerate(prepared):
        y0 = top + i * (_TITLE_H + ph + 14) + _TITLE_H
        for j, p in enumerate(row):
            img = p["img"]
            x0 = 12 + j * col_w
            h, w = img.shape
            oy, ox = y0 + (ph - h) // 2, x0 + (pw - w) // 2
            canvas[oy:oy + h, ox:ox + w] = _rgb(img, p["cmap"], p["vmin"], p["vmax"])
            canvas[oy - 1:oy + h + 1, [ox - 1, ox + w]] = 0  # frame
            canvas[[oy - 1, oy + h], ox - 1:ox + w + 1] = 0
            texts.append((x0 + pw / 2, y0 - 5, p["title"], dict(anchor="md", fontsize=10)))
            # colour bar: vmax at the top
            cx = x0 + pw + 6
            grad = np.linspace(p["vmax"], p["vmin"], ph)[:, None] * np.ones((1, _CBW))
            canvas[y0:y0 + ph, cx:cx + _CBW] = _rgb(grad, p["cmap"], p["vmin"], p["vmax"])
            canvas[y0:y0 + ph, [cx - 1, cx + _CBW]] = 0
            canvas[[y0 - 1, y0 + ph], cx - 1:cx + _CBW + 1] = 0
            span = p["vmax"] - p["vmin"]
            for t in nice_ticks(p["vmin"], p["vmax"], 5):
                ty = y0 + (ph - 1) * (1 - (t - p["vmin"]) / span) if span > 0 else y0 + ph / 2
                canvas[int(round(ty)), cx + _CBW:cx + _CBW + 4] = 0
                texts.append((cx + _CBW + 6, ty, format(t, ".3g"), dict(anchor="lm", fontsize=8)))
            texts.append((cx + _CBW + _TICKW - 2, y0 + ph / 2, p["label"], dict(anchor="mm", rotation=90, fontsize=9)))
    c = Canvas(W, H)
    c.paste(canvas, 0, 0)
    for x, y, text, kw in texts:
        c.text(x, y, text, size=kw.get("fontsize", 10), anchor=kw["anchor"], rotate=kw.get("rotation", 0))
    c.save(path)


def stage_figure(path: Path, title: str, stage: str, ref: np.ndarray, cand: np.ndarray,
                 labels: Tuple[str, str] = ("reference", "candidate")) -> None:
    """reference | candidate | |candidate - reference| for one stage; complex stages get an amplitude and a phase row.

    The reference and candidate panels of a row share vmin/vmax; the difference panel has its own scale
    (0 .. its maximum over the shown tiles; down-sampled difference panels keep block maxima).
    """
    ref_t, names, what = tiles_of(ref)
    cand_t = tiles_of(cand)[0]
    iscomplex = np.iscomplexobj(ref) or np.iscomplexobj(cand)
    unit = UNITS.get(stage, "a.u.")
    rows = []
    if iscomplex:
        r64 = [np.asarray(t, np.complex128) for t in ref_t]
        c64 = [np.asarray(t, np.complex128) for t in cand_t]
        amp_r, amp_c = mosaic([np.abs(t) for t in r64]), mosaic([np.abs(t) for t in c64])
        diff = mosaic([np.abs(c - r) for r, c in zip(r64, c64)])
        scale = max(float(np.abs(np.asarray(ref)).max()), 1e-300)
        keep = [np.abs(r) > 1e-3 * scale for r in r64]
        phase_r = mosaic([np.where(k, np.angle(r), np.nan) for k, r in zip(keep, r64)])
        phase_c = mosaic([np.where(k, np.angle(c), np.nan) for k, c in zip(keep, c64)])
        dphi = mosaic([np.where(k, np.abs(np.angle(c * np.conj(r))), np.nan) for k, r, c in zip(keep, r64, c64)])
        amp_unit = unit if unit.startswith("|") else f"|{stage}| ({unit})"
        rows.append(("amplitude", amp_r, amp_c, diff, amp_unit, "|candidate - reference| (complex)",
                     f"|{labels[1]} - {labels[0]}|"))
        rows.append(("phase", phase_r, phase_c, dphi, "phase (rad)", "|phase difference| (rad)", "|phase difference|"))
    else:
        r64 = [np.asarray(t, np.float64) for t in ref_t]
        c64 = [np.asarray(t, np.float64) for t in cand_t]
        a, b = mosaic(r64), mosaic(c64)
        if stage in LOG_STAGES:  # diffraction-like: a peak many decades above the rest
            floor = LOG_DECADES_SHOWN
            top = max(float(np.nanmax(np.abs(a))), 1e-300)
            with np.errstate(divide="ignore", invalid="ignore"):
                a, b = (np.log10(np.maximum(np.abs(x), top * 10.0 ** -floor)) for x in (a, b))
            unit = f"log10 {unit}"
        rows.append((None, a, b, mosaic([np.abs(c - r) for r, c in zip(r64, c64)]), unit,
                     f"|candidate - reference|, {UNITS.get(stage, 'a.u.')}", f"|{labels[1]} - {labels[0]}|"))
    panels = []
    for row, a, b, d, unit_label, dlabel, dname in rows:
        vmin, vmax = _limits(a, b)
        prefix = f"{row}: " if row else ""
        dmax = float(np.nanmax(d)) if np.isfinite(d).any() else 0.0
        dtitle = f"{prefix}{dname}, max {fmt(dmax)}" if dmax > 0 else f"{prefix}identical (|difference| = 0)"
        panels.append([
            dict(img=a, cmap="viridis", vmin=vmin, vmax=vmax, title=f"{prefix}{labels[0]} (reference)",
                 label=unit_label),
            dict(img=b, cmap="viridis", vmin=vmin, vmax=vmax, title=f"{prefix}{labels[1]} (candidate)", label=unit_label),
            dict(img=d, cmap="magma", vmin=0.0, vmax=dmax if dmax > 0 else 1.0, title=dtitle, label=dlabel, peak=True),
        ])
    sup = (f"{title}\nstage {stage}: {what}; one colour scale for {labels[0]} and {labels[1]}"
           + ("\nphase drawn where |reference| > 1e-3 max|reference| (white elsewhere)" if iscomplex else "")
           + (f"\nvalues on a log10 scale, clipped {LOG_DECADES_SHOWN} decades below the maximum; difference linear"
              if stage in LOG_STAGES and not iscomplex else ""))
    _raster_figure(path, sup, panels)


# --------------------------------------------------------------------------- error plots
def _margin_value(m: Any) -> float:
    if m is None:
        return math.nan
    m = float(m)
    return max(m, MARGIN_FLOOR) if math.isfinite(m) else 10 ** LOG_MARGIN_RANGE[1]


def _decades(lo: float, hi: float) -> Tuple[float, float]:
    """Whole decades around [lo, hi] (both > 0)."""
    return 10.0 ** math.floor(math.log10(lo)), 10.0 ** math.ceil(math.log10(hi))


_SHAPES = "os^vD"
_LEGEND_X = 14  # legend offset right of the axes


def error_by_stage(path: Path, title: str, stages: Sequence[Mapping[str, Any]]) -> None:
    """Error / tolerance (margin) of every stage, end to end and teacher-forced (local)."""
    names = [s["name"] for s in stages]
    x = list(range(len(names)))
    e2e = [_margin_value(s.get("margin")) for s in stages]
    loc = [_margin_value(s.get("local_error")) for s in stages]
    failed = [s.get("verdict") != "pass" for s in stages]
    finite = [v for v in e2e + loc if math.isfinite(v)] or [1.0]
    ylim = _decades(min(MARGIN_FLOOR, min(finite)) / 2, max(10.0, max(finite) * 3))
    c = Canvas(1060, 380, scale=2)
    p = Plot(c, (92, 40, 760, 280), (-0.6, len(names) - 0.4), ylim, ylog=True)
    p.yticks()
    blue, orange, red = colour("tab:blue"), colour("tab:orange"), colour("crimson")
    p.hline(1.0, red, dash=5)
    p.polyline(x, e2e, blue, width=1.5)
    p.markers(x, e2e, "o", blue, 7)
    p.markers(x, loc, "^", orange, 7)
    top = 10 ** (math.log10(ylim[1]) - 0.05)
    p.markers([i for i, f in zip(x, failed) if f], [v if math.isfinite(v) else top for v, f in zip(e2e, failed) if f],
              "s", None, 15, edge=red, width=2)
    p.xticks(x, names, rotate=35)
    p.frame(title, ylabel="error / tolerance (> 1 fails)")
    c.text(760 + _LEGEND_X, 300, f"values below {MARGIN_FLOOR:g} (e.g. exact: 0)\nare drawn at {MARGIN_FLOOR:g}", size=8)
    entries = [("tolerance (error / tolerance = 1)", red, "dash"), ("end to end (candidate vs reference)", blue, "o"),
               ("local (teacher-forced:\nreference inputs into the candidate stage)", orange, "^")]
    if any(failed):
        entries.append(("failing stage", red, "hollow-s"))
    p.legend(entries, 760 + _LEGEND_X, 40)
    c.save(path)


def patch_error_scatter(path: Path, title: str, patch_errors: Mapping[str, Mapping[str, Any]],
                        ref_max: Mapping[str, float]) -> None:
    """Per-patch max |candidate - reference| relative to the stage's max|reference|, one colour per stage."""
    floor = 1e-12
    series = []
    for stage, pe in patch_errors.items():
        vals = np.asarray(pe["max_abs"], dtype=float).ravel()
        scale = ref_max.get(stage) or 0.0
        rel = vals / scale if scale > 0 else vals
        series.append((stage, np.where(np.isfinite(rel), np.maximum(rel, floor), 1.0)))
    n = max((len(v) for _, v in series), default=1)
    allv = np.concatenate([v for _, v in series]) if series else np.array([1.0])
    ylim = _decades(max(float(allv.min()) / 2, floor / 2), max(float(allv.max()) * 2, 10 * floor))
    c = Canvas(1060, 370, scale=2)
    p = Plot(c, (92, 40, 800, 322), (-0.7, n - 0.3), ylim, ylog=True)
    p.yticks()
    step = 1 if n <= 40 else int(math.ceil(n / 40))
    p.xticks(list(range(0, n, step)), [str(i) for i in range(0, n, step)])
    entries = []
    for i, (stage, v) in enumerate(series):
        col, shape = colour(f"C{i % 10}"), _SHAPES[i % len(_SHAPES)]
        off = (i - len(series) / 2) * 0.08
        p.markers([k + off for k in range(len(v))], list(v), shape, col, 6)
        entries.append((stage, col, shape))
    p.frame(title, xlabel="patch index b * C + c (C|K patches per group)",
            ylabel=f"max |candidate - reference| in a patch / max|reference| of the stage (0 at {floor:g})")
    p.legend(entries, 800 + _LEGEND_X, 40)
    c.save(path)


def histogram_data(ref: np.ndarray, cand: np.ndarray) -> Dict[str, Any]:
    """log10(|candidate - reference| / max|reference|) of the nonzero differences, and how many are exactly 0."""
    r = np.asarray(ref)
    c = np.asarray(cand)
    wide = np.complex128 if (r.dtype.kind == "c" or c.dtype.kind == "c") else np.float64
    d = np.abs(c.astype(wide) - r.astype(wide)).ravel()
    scale = float(np.abs(r).max()) if r.size else 0.0
    d = d[np.isfinite(d)]
    nz = d[d > 0]
    logs = np.log10(nz / scale) if scale > 0 else np.log10(nz)
    return {"logs": logs, "n": int(r.size), "zero": int(d.size - nz.size)}


def error_histogram(path: Path, title: str, data: Mapping[str, Mapping[str, Any]]) -> None:
    """Distribution of the elementwise error of the figure stages (stage-relative, log10)."""
    c = Canvas(1060, 370, scale=2)
    logs = [d["logs"] for d in data.values() if d["logs"].size]
    if not logs:
        p = Plot(c, (92, 40, 800, 322), (0.0, 1.0), (0.0, 1.0))
        c.text(446, 180, "every difference is exactly 0", size=11, anchor="mm")
        p.frame(title)
        c.save(path)
        return
    lo = math.floor(min(float(v.min()) for v in logs))
    hi = max(math.ceil(max(float(v.max()) for v in logs)), lo + 1)
    edges = np.linspace(lo, hi, 61)
    hists = []
    for stage, d in data.items():
        counts, _ = np.histogram(d["logs"], bins=edges)
        hists.append((stage, counts / max(d["n"], 1), d["zero"] / max(d["n"], 1)))
    top = max(float(h.max()) for _, h, _ in hists) if hists else 1.0
    p = Plot(c, (92, 40, 800, 322), (lo, hi), (0.0, top * 1.08 or 1.0))
    p.yticks()
    ticks = list(range(lo, hi + 1, max(1, (hi - lo) // 12)))
    p.xticks(ticks, [str(t) for t in ticks], grid=True)
    entries = []
    for i, (stage, h, zero) in enumerate(hists):
        col = colour(f"C{i % 10}")
        p.stairs(list(h), list(edges), col)
        entries.append((f"{stage} ({100 * zero:.0f}% exactly 0)", col, "line"))
    p.frame(title, xlabel="log10(|candidate - reference| / max|reference| of the stage)", ylabel="fraction of the stage's elements")
    p.legend(entries, 800 + _LEGEND_X, 40)
    c.save(path)


# --------------------------------------------------------------------------- hub-level figures
def log_margin(m: Any) -> float:
    """log10(error / tolerance) clipped to LOG_MARGIN_RANGE; NaN when not computed."""
    if m is None:
        return math.nan
    m = float(m)
    if math.isnan(m):
        return math.nan
    lo, hi = LOG_MARGIN_RANGE
    if m <= 0:
        return lo
    return min(max(math.log10(m), lo), hi) if math.isfinite(m) else hi


def shown_margin(margin: Any, local_error: Any, verdict: str, nonfinite: int = 0) -> Tuple[Any, str]:
    """What a case x stage cell shows: the end-to-end error / tolerance, or, for a stage that
    fails only in its teacher-forced (local) comparison, the local one prefixed "L". A failed
    stage with ``nonfinite`` NaN/Inf elements shows "NaN/Inf" at inf: no tolerance passes it,
    whatever the margin of its finite elements."""
    if verdict != "pass" and nonfinite:
        return math.inf, "NaN/Inf"
    m = None if margin is None else float(margin)
    loc = None if local_error is None else float(local_error)
    if verdict != "pass" and (m is None or m <= 1) and loc is not None and loc > 1:
        return loc, "L" + fmt(loc)
    return m, "n/a" if m is None else fmt(m)


#: The heat map's colours at log10(error / tolerance) = -4 .. 2 (ColorBrewer RdYlGn, reversed);
#: index.html colours its table with the same scale.
MARGIN_COLOURS = ((-4.0, (26, 152, 80)), (-2.0, (145, 207, 96)), (0.0, (255, 255, 191)), (1.0, (252, 141, 89)),
                  (2.0, (215, 48, 39)))
NOT_COMPARED = (204, 204, 204)


def margin_colour(z: float) -> Tuple[int, int, int]:
    """RGB of a log10(error / tolerance) value (already clipped, see log_margin); grey for NaN."""
    if math.isnan(z):
        return NOT_COMPARED
    for (x0, c0), (x1, c1) in zip(MARGIN_COLOURS, MARGIN_COLOURS[1:]):
        if z <= x1:
            t = (z - x0) / (x1 - x0)
            return tuple(int(round(a + (b - a) * t)) for a, b in zip(c0, c1))  # type: ignore[return-value]
    return MARGIN_COLOURS[-1][1]


def summary_heatmap(path: Path, title: str, rows: Sequence[str], stages: Sequence[str],
                    margins: Sequence[Sequence[Any]], failed: Sequence[Sequence[bool]],
                    texts: Optional[Sequence[Sequence[str]]] = None) -> None:
    """Case x stage heat map of log10(error / tolerance); failing cells framed, values written."""
    from .raster import font

    lo, hi = LOG_MARGIN_RANGE
    label_w = 24 + max([font(11).getlength(r) for r in rows] + [60])
    cw, ch = 66, 26
    top, bottom = 84, 110
    W = int(label_w + cw * len(stages) + 130)
    heading = (title + f"\ncell text: error / tolerance (margin, > 1 fails; L: of the teacher-forced local "
               f"comparison)\ncolour: its log10, clipped to [{lo:g}, {hi:g}]; framed: failing stage; grey: not compared")
    W = max(W, int(max(font(10).getlength(line) for line in heading.split("\n"))) + 40)  # a narrow map keeps its title
    H = top + ch * max(len(rows), 1) + bottom
    c = Canvas(W, H)
    c.text(W / 2, 10, heading, size=10, anchor="ma")
    for i, row in enumerate(margins):
        y = top + i * ch
        c.text(label_w - 8, y + ch / 2, rows[i], size=9, anchor="rm")
        for j, m in enumerate(row):
            x = label_w + j * cw
            z = log_margin(m)
            c.rect(x, y, x + cw, y + ch, outline=(255, 255, 255), fill=margin_colour(z), width=1)
            text = texts[i][j] if texts is not None else ("n/a" if m is None else fmt(m))
            dark = not math.isnan(z) and (z < lo + 1.2 or z > hi - 0.6)
            c.text(x + cw / 2, y + ch / 2, text, size=8, anchor="mm", fill=(255, 255, 255) if dark else (0, 0, 0))
    for i, row in enumerate(failed):  # frames on top of every cell
        for j, bad in enumerate(row):
            if bad:
                x, y = label_w + j * cw, top + i * ch
                c.rect(x + 1, y + 1, x + cw - 1, y + ch - 1, outline=(0, 0, 0), width=2)
    y_end = top + ch * len(rows)
    for j, stage in enumerate(stages):
        x = label_w + j * cw + cw / 2
        c.line([(x, y_end), (x, y_end + 4)], fill=(0, 0, 0))
        c.text(x + 3, y_end + 6, stage, size=9, anchor="rt", rotate=35)
    # colour bar
    bx, by, bh = label_w + cw * len(stages) + 24, top, max(ch * len(rows), 160)
    grad = np.linspace(hi, lo, int(bh))
    strip = np.array([margin_colour(float(z)) for z in grad], dtype=np.uint8)[:, None, :].repeat(16, axis=1)
    c.paste(strip, int(bx), int(by))
    c.rect(bx - 1, by - 1, bx + 16, by + bh, outline=(0, 0, 0))
    for t in (lo, lo / 2, 0.0, hi / 2, hi):
        ty = by + (hi - t) / (hi - lo) * (bh - 1)
        c.line([(bx + 16, ty), (bx + 20, ty)], fill=(0, 0, 0))
        c.text(bx + 23, ty, f"{t:g}", size=8, anchor="lm")
    c.text(bx + 62, by + bh / 2, "log10(error / tolerance)", size=9, anchor="mm", rotate=90)
    c.save(path)


def patch_grid(path: Path, title: str, amp: np.ndarray, phase: np.ndarray, amp_scale: float,
               phase_limits: Tuple[float, float]) -> None:
    """Normalised amplitude and phase patch grids of one backend (amp / amp_scale, phase in rad).

    Give both backends the same ``amp_scale`` and ``phase_limits`` so their grids compare."""
    a_tiles, _, what = tiles_of(amp)
    p_tiles = tiles_of(phase)[0]
    scale = amp_scale if amp_scale > 0 else 1.0
    a = mosaic([np.asarray(t, np.float64) / scale for t in a_tiles])
    p = mosaic([np.asarray(t, np.float64) for t in p_tiles])
    panels = [[
        dict(img=a, cmap="viridis", vmin=0.0, vmax=max(1.0, float(np.nanmax(a))), title="amplitude / max|amp of the reference|",
             label="normalised amplitude (1 = reference max)"),
        dict(img=p, cmap="viridis", vmin=phase_limits[0], vmax=phase_limits[1], title="phase", label="phase (rad)"),
    ]]
    _raster_figure(path, f"{title}\n{what}; both sides drawn on the same scales (the reference's)", panels)


def figure_stages(result_stages: Sequence[Any], first_divergent: Optional[str], root_cause: Optional[str],
                  stage_list: Any = None) -> List[str]:
    """FIGURE_STAGES (another pair: its first five image stages) plus a failing case's first
    divergent / root-cause stage, when they are images."""
    from parity.stages import BUILTIN

    sl = stage_list if stage_list is not None else BUILTIN
    names = list(FIGURE_STAGES) if sl.names == BUILTIN.names else [s.name for s in sl if s.spatial][:5]
    for extra in (first_divergent, root_cause):
        st = sl.by_name.get(extra or "")
        if st is not None and st.spatial and extra not in names:
            names.append(extra)
    present = {getattr(s, "name", None) for s in result_stages}
    return [n for n in names if n in present]
