"""The report's training-step section (``--train-steps K``): runs :func:`parity.training.train_case`
on one case after the forward cases (in the same workers), draws its figure and renders its
page section and terminal line. Without ``--train-steps`` nothing here runs and the report is
what it was.

The JSON entry ``training`` (its own schema ``parity.training``, version 1): ``status``
("decided", "unavailable": a side cannot train, with the reason, "error": a side's job failed),
the case, dtype, loss, K, the batches and Adam's hyperparameters, and for a decided run the
comparison (parity.training_compare.TrainingResult.to_dict), the figure and the time per side.
"""
from __future__ import annotations

import html
import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

from parity.jsonable import decode_float
from parity.messages import fmt

from .raster import Canvas, Plot, colour

log = logging.getLogger(__name__)

SCHEMA = "parity.training"
SCHEMA_VERSION = 1
FIGURE = "analysis/training/{case}.png"


def run(plan) -> Optional[Dict[str, Any]]:
    """The training entry of the report (None without --train-steps)."""
    o = plan.options
    if o.train_steps is None or plan.mode != "run" or plan.train_case is None:
        return None
    from parity import training as T
    from parity.pool import JobError

    case = plan.train_case
    settings = T.TrainSettings(steps=o.train_steps, loss=o.train_loss)
    entry: Dict[str, Any] = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "case": case.name,
                             "dtype": case.dtype, "loss": settings.loss, "steps": settings.steps,
                             "batches": o.train_batches, "settings": settings.to_dict(), "status": "decided"}
    t0 = time.perf_counter()
    try:
        T.check_pair(plan.engine.pair)
        result = T.train_case(case, steps=settings.steps, loss=settings.loss, batches=o.train_batches,
                              pair=plan.engine.pair, pool=plan.engine.pool, noise_floor_k=o.noise_floor_k).result
    except T.TrainingUnavailable as exc:
        entry.update(status="unavailable", verdict=None, reason=str(exc))
        return entry
    except (JobError, RuntimeError, ValueError) as exc:
        log.error("training steps of %s: %s", case.name, exc)
        entry.update(status="error", verdict="fail", reason=" ".join(str(exc).split()))
        return entry
    entry.update(result.to_dict())
    entry["time_s"] = time.perf_counter() - t0
    entry["summary"] = result.summary()
    if o.figures:
        rel = FIGURE.format(case=case.name)
        try:
            training_figure(plan.hub.path(rel), entry)
            plan.hub.record(rel)
            entry["figure"] = rel
        except Exception as exc:  # a figure never fails the run
            log.warning("training figure not drawn: %s", exc, exc_info=True)
    return entry


def _values(xs: Sequence[Any]) -> list:
    return [float(decode_float(x)) if x is not None else math.nan for x in xs]


def _log_limits(values: Sequence[float]) -> tuple:
    pos = [v for v in values if math.isfinite(v) and v > 0] or [1e-8, 1.0]
    return 10.0 ** math.floor(math.log10(min(pos))), 10.0 ** math.ceil(math.log10(max(pos)))


def training_figure(path: Path, entry: Mapping[str, Any]) -> None:
    """Both loss curves (left) and, per step, the candidate's worst weight error and the loss
    curves' difference against their tolerances (right, log scale)."""
    steps = list(range(1, int(entry["steps"]) + 1))
    order = ("reference", "reference_float32", "candidate")
    losses = {role: _values(entry["losses"][role]) for role in sorted(entry["losses"], key=lambda r: (
        order.index(r) if r in order else len(order), r))}
    rows = entry["per_step"]
    blue, orange, grey, red, green = (colour("tab:blue"), colour("tab:orange"), colour("tab:gray"), colour("crimson"),
                                      colour("tab:green"))
    c = Canvas(1280, 420, scale=2)
    xlim = (0.5, len(steps) + 0.5)
    ticks = [s for s in steps if len(steps) <= 10 or s == 1 or s % 5 == 0]
    every = [v for vs in losses.values() for v in vs if math.isfinite(v)] or [0.0, 1.0]
    lo, hi = min(every), max(every)
    pad = (hi - lo) * 0.08 or abs(hi) * 1e-6 or 1.0
    left = Plot(c, (96, 52, 520, 350), xlim, (lo - pad, hi + pad))
    left.yticks()
    names = {"reference": "reference", "reference_float32": "reference float32", "candidate": "candidate"}
    styles = {"reference": (blue, "o"), "reference_float32": (grey, "v"), "candidate": (orange, "^")}
    for role, ys in losses.items():
        col, shape = styles.get(role, (green, "s"))
        left.polyline(steps, ys, col, width=1.4)
        left.markers(steps, ys, shape, col, 6)
    left.xticks(ticks, [str(s) for s in ticks])
    left.frame(f"loss ({entry['loss']}) per step (batch k, before update k)", xlabel="step")
    c.text(20, 201, "loss", size=9, anchor="mm", rotate=90)
    ref = "reference float64" if entry.get("tolerance_mode") == "noise_floor" else "reference"
    left.legend([(ref if r == "reference" else names.get(r, r), styles.get(r, (green, "s"))[0],
                  styles.get(r, (green, "s"))[1]) for r in losses], 104, 60)

    err = [r["rel_update"] for r in rows]
    tol = [r["tolerance"] for r in rows]
    dloss = [r["loss_rel_diff"] for r in rows]
    floor = _values((entry.get("floor") or {}).get("worst_rel_update") or [])
    ylim = _log_limits(err + tol + dloss + floor)
    right = Plot(c, (700, 52, 1010, 350), xlim, ylim, ylog=True)
    right.yticks()
    right.polyline(steps, tol, red, width=1.2)
    right.polyline(steps, err, orange, width=1.5)
    right.markers(steps, err, "^", orange, 6)
    right.markers(steps, dloss, "o", blue, 5)
    if floor:
        right.polyline(steps, floor, grey, width=1.2)
    failed = [s for s, r in zip(steps, rows) if not (r["margin"] <= 1.0)]
    right.markers(failed, [err[s - 1] if err[s - 1] > 0 else ylim[1] for s in failed], "s", None, 14, edge=red, width=2)
    right.xticks(ticks, [str(s) for s in ticks])
    right.frame("weight error after each step", xlabel="step")
    c.text(624, 201, "error (log scale)", size=9, anchor="mm", rotate=90)
    entries = [("candidate: weight error of the layer\nnearest its tolerance (fraction of\nthe reference's update)",
                orange, "^"),
               ("its tolerance", red, "line"), ("loss curves' relative difference", blue, "o")]
    if floor:
        entries.append(("reference float32's own worst layer\n(the noise floor)", grey, "line"))
    if failed:
        entries.append(("failing step", red, "hollow-s"))
    right.legend(entries, 1024, 52)
    c.text(640, 18, f"Training steps {entry['case']} ({entry['dtype']}, K={entry['steps']}): "
                    f"{str(entry.get('verdict')).upper()}", size=12, anchor="mm")
    path.parent.mkdir(parents=True, exist_ok=True)
    c.save(path)


def section(entry: Optional[Mapping[str, Any]]) -> str:
    """The page section (empty without a training entry)."""
    if not entry:
        return ""
    e = html.escape
    head = f"<h2>Training steps ({e(str(entry['case']))}, {e(str(entry['dtype']))}, K={entry['steps']}): "
    if entry["status"] != "decided":
        return head + f"{e(entry['status'])}</h2><p>{e(str(entry.get('reason')))}</p>"
    adam = entry["settings"]["adam"]
    rows = "".join(f"<tr><td>{r['step']}</td><td>{e(fmt(r['loss_rel_diff']))}</td><td>{e(r['worst_layer'])}</td>"
                   f"<td>{e(fmt(r['rel_update']))}</td><td>{e(fmt(r['tolerance']))}</td><td>{e(fmt(r['rel_l2']))}</td>"
                   f"<td>{e(fmt(r['max_abs']))}</td><td>{e(fmt(r['margin']))}</td></tr>" for r in entry["per_step"])
    fig = (f'<p><a href="{e(entry["figure"])}"><img src="{e(entry["figure"])}" alt="training steps"></a></p>'
           if entry.get("figure") else "")
    problems = "".join(f"<li>{e(p)}</li>" for p in entry.get("problems", []))
    return (head + f"{e(str(entry['verdict']).upper())}</h2>"
            f"<p>Adam (lr {adam['learning_rate']:g}, beta_1 {adam['beta_1']:g}, beta_2 {adam['beta_2']:g}, epsilon "
            f"{adam['epsilon']:g}) on {e(entry['loss'])}, batches {e(entry['batches'])}, tolerances "
            f"{e(entry['tolerance_mode'])}; loss curves' largest relative difference "
            f"{e(fmt(entry['max_loss_rel_diff']))}; first divergent step {entry.get('first_divergent_step') or '-'}"
            f" ({e(str(entry.get('first_divergent_at') or '-'))}).</p><ul>{problems}</ul>{fig}"
            "<table><tr><th>step</th><th>loss rel. difference</th><th>worst layer</th><th>weight error "
            "(of the update)</th><th>tolerance</th><th>rel. L2 (of the weights)</th><th>max |d|</th>"
            f"<th>error/tolerance</th></tr>{rows}</table>")


def summary_line(entry: Optional[Mapping[str, Any]]) -> Optional[str]:
    if not entry:
        return None
    if entry["status"] != "decided":
        return f"training {entry['case']} {entry['dtype']} K={entry['steps']}: {entry['status']} ({entry.get('reason')})"
    return entry["summary"]
