"""Known divergences in the parity suite: the registry of the suite's pair (parity.divergences)
turned into strict xfails.

A (case, stage) test whose stage a registry entry names is marked ``xfail(strict=True,
raises=KnownDivergence)`` with the entry's reason: it xfails only by raising
:class:`KnownDivergence` (the stage diverges as registered); a stage that grew beyond the entry
or fails in another way fails; a stage that passes XPASSes, which strict turns into a failure
(fixed: remove the entry). A stage that fails only as propagated from a registered root cause
xfails imperatively (``pytest.xfail``): it is not registered, so it is not marked.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import pytest

from parity.divergences import DivergenceError, TOLERATED, judge_case, registry_for, stage_graph


class KnownDivergence(AssertionError):
    """Raised by a test of a registered divergence that diverges as registered."""


def registry(config, pair):
    """The suite's registry (``--divergences FILE`` on top of the shipped one; none with
    ``--no-divergences``), read once per session; a bad file is a usage error (one line)."""
    cached = getattr(config, "_parity_divergences", None)
    if cached is not None and cached.pair == pair.name:
        return cached
    try:
        reg = registry_for(pair, extra=config.getoption("--divergences"),
                           enabled=not config.getoption("--no-divergences"))
    except DivergenceError as exc:
        raise pytest.UsageError(f"known divergences: {exc}") from None
    config._parity_divergences = reg
    return reg


def marks(reg, case, stage: Optional[str] = None, dtype: Optional[str] = None):
    """The strict xfail of a registered (case, stage), or of a case one entry matches."""
    entries = [e for e in reg.for_case(case.name, dtype or case.dtype) if stage is None or e.stage == stage]
    if not entries:
        return []
    why = "; ".join(f"known divergence {e.id!r} at {e.stage}: {e.reason} (when this passes it is fixed: remove the "
                    f"entry, {e.source})" for e in entries)
    return [pytest.mark.xfail(strict=True, raises=KnownDivergence, reason=why)]


def judged(result, reg, pair, name: str, dtype: str) -> Dict[str, Any]:
    """The case's JSON with the registry applied (parity.divergences.judge_case), under the
    case's own name (a float64 variant's result is named ``<case>@dtype=float64``)."""
    case = result.to_dict()
    case["name"], case["dtype"] = name, dtype
    judge_case(case, reg, stage_graph(pair.stages))
    return case


def check_stage(case: Dict[str, Any], stage: str) -> None:
    """Raise for a judged stage: KnownDivergence (registered, as registered), xfail (known,
    propagated), fail (grown, fixed, new); return when it passes unregistered."""
    st = next(s for s in case["stages"] if s["name"] == stage)
    d = st.get("divergence")
    if d is None:
        return
    if d["status"] == "known":
        raise KnownDivergence(d["message"])
    if d["status"] in TOLERATED:
        pytest.xfail(d["message"])
    pytest.fail(f"{case['name']} {stage}: {d['message']}", pytrace=False)


def check_case(case: Dict[str, Any]) -> None:
    """Raise for a judged case a registry entry matched: KnownDivergence when its verdict is known."""
    if "divergences" not in case:
        return
    if case["verdict"] == "known":
        raise KnownDivergence("; ".join(a["message"] for a in case["divergences"]))
    bad = [f"{s['name']}: {s['divergence']['message']}" for s in case["stages"]
           if s.get("divergence") and s["divergence"]["status"] not in TOLERATED]
    bad += [f"{a['stage']}: {a['message']}" for a in case["divergences"] if a["status"] != "known"
            and not any(b.startswith(a["stage"] + ":") for b in bad)]
    pytest.fail(f"{case['name']}: {case['verdict']}: " + "; ".join(bad), pytrace=False)


def raise_case_error(reg, case, dtype, error: str) -> None:
    """A case that did not run: xfail when an entry registers its error (``measured.error``),
    else fail with the error (a crash is never silently known)."""
    hits = [e for e in (reg.for_case(case.name, dtype or case.dtype) if reg is not None else [])
            if e.kind == "error" and e.measured["error"] in error]
    if hits:
        pytest.xfail("; ".join(f"known divergence {e.id!r}: the case raises ({e.measured['error']}): {e.reason}"
                               for e in hits))
    pytest.fail(f"case {case.name} did not run: {error}", pytrace=False)

