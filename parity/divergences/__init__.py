"""Known divergences: a reviewed registry per pair, applied to a case's comparison.

A *known divergence* is a stage of some cases of a pair that the harness measured to diverge
for a documented reason (an upstream bug or design difference that is not fixed yet). The
registry (:mod:`.registry`: reviewed TOML files shipped under ``parity/data/divergences/``,
``--divergences FILE`` on top) says which; :mod:`.judge` turns a case's comparison and the
registry into per-stage labels (known, known_propagated, new, propagated, grown, fixed) and a
case verdict (pass, known, fixed, fail) that the report, ``parity show``, the nightly gate and
the pytest parity suite share. See docs/divergences.md.
"""
from __future__ import annotations

from .judge import (CASE_VERDICTS, OK_VERDICTS, STATUSES, TOLERATED, judge_case, judge_cases, stage_graph,
                    stage_note, verdict_ok)
from .registry import (DEFAULT_GROW_FACTOR, SHIPPED_DIR, Divergence, DivergenceError, Registry, file_name,
                       load_file, load_registry, shipped_path)

__all__ = ["CASE_VERDICTS", "DEFAULT_GROW_FACTOR", "Divergence", "DivergenceError", "OK_VERDICTS", "Registry",
           "SHIPPED_DIR", "STATUSES", "TOLERATED", "file_name", "judge_case", "judge_cases", "load_file",
           "load_registry", "registry_for", "shipped_path", "stage_graph", "stage_note", "verdict_ok"]


def registry_for(pair, *, extra=None, enabled: bool = True, shipped_dir=None) -> Registry:
    """The registry of a :class:`parity.pairs.Pair` (its stages and case names checked)."""
    return load_registry(pair.name, pair.stage_names, list(pair.cases.CASES), extra=extra, enabled=enabled,
                         shipped_dir=shipped_dir)
