"""The reviewed registry of known divergences of a pair: TOML files, checked when read.

One file per pair, ``parity/data/divergences/<pair>.toml`` (package data; ``:`` in a pair name
becomes ``-``: ``ptycho:ptycho_torch`` -> ``ptycho-ptycho_torch.toml``), naming its pair once and
holding one ``[[divergence]]`` table per entry::

    pair = "sqrt"

    [[divergence]]
    id = "sqrt-factor"                  # optional; default "<stage>@<cases>"
    cases = "n64_*"                     # a glob over the pair's case names
    stage = "pred_sqrt"                 # the ROOT-CAUSE stage
    dtype = "float32"                   # optional: only cases run in this precision
    reason = "the port scales its square root by 1.001"
    where = "tests/helpers/sides.py:88 (BuggySqrtSide.factor)"
    pitfall = "docs/divergences.md#..."  # optional: where the documentation explains it
    grow_factor = 10                    # optional (default 10): err/tol beyond this x measured fails
    measured = { err_over_tol = 96.5, max_abs = 2.1e-4, command = "python -m parity.report ...",
                 date = "2026-12-01" }

``measured.err_over_tol`` is the stage's ``margin`` in ``parity_report.json`` (error over
tolerance, end to end) when the entry was written. Two divergences have no margin and are
registered by what the report says instead: a stage whose shapes differ (``measured.shape``:
the ``reference (...) vs candidate (...)`` of the stage's ``problem``), and a side that raises
on the case (``measured.error``: a piece of the case's ``error`` text; ``stage`` is where it
raises); ``command`` (a command of the harness) and
``date`` (YYYY-MM-DD) say where it came from. Everything is checked when the file is read (unknown or missing keys, wrong types, a
stage the pair does not have, a pattern that matches none of the pair's cases, two entries
for the same stage of one case): :class:`DivergenceError`, one line naming the file and the
entry.
"""
from __future__ import annotations

import fnmatch
import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

#: Where the shipped registry files live (package data).
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "divergences"
DEFAULT_GROW_FACTOR = 10.0
DTYPES = ("float32", "float64")

_FILE_KEYS = {"pair", "divergence"}
_REQUIRED = ("cases", "stage", "reason", "where", "measured")
_OPTIONAL = ("id", "dtype", "pitfall", "grow_factor")
_MEASURED_REQUIRED = ("command", "date")
#: what was measured: exactly one of these (the margin; a shape mismatch; an error)
_MEASURED_KINDS = ("err_over_tol", "shape", "error")
_MEASURED_NUMBERS = ("err_over_tol", "max_abs", "rel_l2", "local_error")
_MEASURED_OPTIONAL = ("err_over_tol", "shape", "error", "max_abs", "rel_l2", "local_error")


class DivergenceError(ValueError):
    """A registry file that cannot be used: one line naming the file, the entry and what is allowed."""


def file_name(pair_name: str) -> str:
    """The registry file name of a pair: ``ptycho:ptycho_torch`` -> ``ptycho-ptycho_torch.toml``."""
    return pair_name.replace(":", "-").replace("/", "-") + ".toml"


def shipped_path(pair_name: str) -> Path:
    return SHIPPED_DIR / file_name(pair_name)


@dataclass(frozen=True)
class Divergence:
    """One reviewed entry: a stage of the cases matching ``cases`` (and ``dtype``) that is known
    to diverge, why, where, and by how much it was measured."""

    id: str
    pair: str
    cases: str
    stage: str
    reason: str
    where: str
    measured: Mapping[str, Any]
    grow_factor: float = DEFAULT_GROW_FACTOR
    dtype: Optional[str] = None
    pitfall: Optional[str] = None
    source: str = ""  # "<file>#<n>" (1 = the file's first entry)

    @property
    def err_over_tol(self) -> Optional[float]:
        v = self.measured.get("err_over_tol")
        return None if v is None else float(v)

    @property
    def kind(self) -> str:
        """"size" (a margin), "shape" (a shape mismatch) or "error" (the case raises)."""
        return "shape" if "shape" in self.measured else "error" if "error" in self.measured else "size"

    @property
    def key(self) -> Tuple[str, str, Optional[str]]:
        return self.cases, self.stage, self.dtype

    def matches(self, case: str, dtype: Optional[str] = None) -> bool:
        return fnmatch.fnmatchcase(case, self.cases) and (self.dtype is None or dtype is None or dtype == self.dtype)

    def to_dict(self) -> Dict[str, Any]:
        out = {"id": self.id, "pair": self.pair, "cases": self.cases, "stage": self.stage, "dtype": self.dtype,
               "reason": self.reason, "where": self.where, "pitfall": self.pitfall,
               "grow_factor": self.grow_factor, "measured": dict(self.measured), "source": self.source}
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Divergence":
        return cls(id=d["id"], pair=d["pair"], cases=d["cases"], stage=d["stage"], reason=d["reason"],
                   where=d["where"], measured=dict(d["measured"]), grow_factor=float(d.get("grow_factor", 10.0)),
                   dtype=d.get("dtype"), pitfall=d.get("pitfall"), source=d.get("source", ""))


@dataclass(frozen=True)
class Registry:
    """The entries that apply to one pair's run, and the files they came from.

    ``enabled`` False (``--no-divergences``): nothing is applied, the raw verdicts stand.
    ``files``: ``{"path", "sha256", "origin": "shipped" | "given" | "recorded", "entries"}`` each.
    """

    pair: str
    entries: Tuple[Divergence, ...] = ()
    files: Tuple[Mapping[str, Any], ...] = ()
    enabled: bool = True
    note: str = ""

    def for_case(self, case: str, dtype: Optional[str] = None) -> List[Divergence]:
        if not self.enabled:
            return []
        return [e for e in self.entries if e.matches(case, dtype)]

    def to_dict(self) -> Dict[str, Any]:
        return {"pair": self.pair, "enabled": self.enabled, "note": self.note,
                "files": [dict(f) for f in self.files], "entries": [e.to_dict() for e in self.entries]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Registry":
        """The registry a hub recorded (``--recheck`` applies the same entries again)."""
        files = tuple(dict(f) for f in d.get("files") or [])
        return cls(pair=d["pair"], entries=tuple(Divergence.from_dict(e) for e in d.get("entries") or []),
                   files=files, enabled=bool(d.get("enabled", True)),
                   note="the entries recorded in the rechecked hub" + (f" ({d['note']})" if d.get("note") else ""))


def _fail(where: str, msg: str) -> DivergenceError:
    return DivergenceError(f"{where}: {msg}")


def _string(where: str, d: Mapping[str, Any], key: str) -> str:
    v = d[key]
    if not isinstance(v, str) or not v.strip():
        raise _fail(where, f"'{key}' must be a non-empty string, got {v!r}")
    return v.strip()


def _number(where: str, v: Any, what: str, minimum: float = 0.0) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= minimum:
        raise _fail(where, f"{what} must be a finite number > {minimum:g}, got {v!r}")
    return float(v)


def _entry(where: str, d: Any, pair_name: str, stages: Sequence[str], cases: Sequence[str],
           source: str) -> Divergence:
    if not isinstance(d, dict):
        raise _fail(where, f"each [[divergence]] must be a table, got {type(d).__name__}")
    unknown = sorted(set(d) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise _fail(where, f"unknown key(s) {', '.join(unknown)}; allowed are "
                           f"{', '.join(_REQUIRED + _OPTIONAL)}")
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise _fail(where, f"missing {', '.join(missing)} (every entry needs {', '.join(_REQUIRED)})")
    pattern, stage = _string(where, d, "cases"), _string(where, d, "stage")
    if stage not in stages:
        raise _fail(where, f"stage {stage!r} is not a stage of pair {pair_name}; its stages are {', '.join(stages)}")
    if not any(fnmatch.fnmatchcase(c, pattern) for c in cases):
        raise _fail(where, f"cases pattern {pattern!r} matches no case of pair {pair_name}; its cases are "
                           f"{', '.join(cases)}")
    dtype = d.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise _fail(where, f"dtype {dtype!r}; allowed are {', '.join(DTYPES)} (or no dtype: every precision)")
    m = d["measured"]
    if not isinstance(m, dict):
        raise _fail(where, "'measured' must be a table {err_over_tol = ..., command = \"...\", date = \"...\"}")
    bad = sorted(set(m) - set(_MEASURED_REQUIRED) - set(_MEASURED_OPTIONAL))
    if bad:
        raise _fail(where, f"unknown key(s) {', '.join(bad)} in measured; allowed are "
                           f"{', '.join(_MEASURED_REQUIRED + _MEASURED_OPTIONAL)}")
    lacking = [k for k in _MEASURED_REQUIRED if k not in m]
    kinds = [k for k in _MEASURED_KINDS if k in m]
    if lacking or len(kinds) != 1:
        what = f"lacks {', '.join(lacking)}" if lacking else (f"gives {' and '.join(kinds)}" if kinds else
                                                              "gives no size")
        raise _fail(where, f"measured {what}: it needs the command and the date, and exactly one of err_over_tol "
                           f"(the stage's margin from the report that measured it), shape (the stage's shape "
                           f"mismatch) or error (a piece of the case's error)")
    measured: Dict[str, Any] = {}
    for k, v in m.items():
        if k in _MEASURED_NUMBERS:
            measured[k] = _number(where, v, f"measured.{k}", minimum=1.0 if k == "err_over_tol" else 0.0)
        else:
            measured[k] = _string(where, m, k) if not hasattr(v, "isoformat") else v.isoformat()
    if "parity" not in measured["command"]:
        raise _fail(where, f"measured.command {measured['command']!r} is not a command of the harness; give the "
                           f"parity report (or pytest tests/parity) command whose report the size was copied from")
    if not re.fullmatch(r"\d{4}-\d\d-\d\d", measured["date"]):
        raise _fail(where, f"measured.date {measured['date']!r} must be a date YYYY-MM-DD")
    grow = _number(where, d.get("grow_factor", DEFAULT_GROW_FACTOR), "grow_factor", minimum=1.0)
    pitfall = _string(where, d, "pitfall") if "pitfall" in d else None
    ident = _string(where, d, "id") if "id" in d else f"{stage}@{pattern}" + (f"@{dtype}" if dtype else "")
    return Divergence(id=ident, pair=pair_name, cases=pattern, stage=stage, reason=_string(where, d, "reason"),
                      where=_string(where, d, "where"), measured=measured, grow_factor=grow, dtype=dtype,
                      pitfall=pitfall, source=source)


def load_file(path: Path, pair_name: str, stages: Sequence[str], cases: Sequence[str],
              origin: str = "given") -> Tuple[List[Divergence], Dict[str, Any]]:
    """The entries of one registry file and its record (path, sha256, origin, entry ids)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DivergenceError(f"{path}: cannot be read ({exc.strerror or exc}); give a TOML registry file") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DivergenceError(f"{path}: not valid TOML: {' '.join(str(exc).split())}") from None
    unknown = sorted(set(doc) - _FILE_KEYS)
    if unknown:
        raise DivergenceError(f"{path}: unknown top-level key(s) {', '.join(unknown)}; allowed are pair and "
                              f"[[divergence]] tables")
    if doc.get("pair") != pair_name:
        raise DivergenceError(f"{path}: the file is for pair {doc.get('pair')!r} but this run's pair is "
                              f"{pair_name!r}; set pair = {pair_name!r} or give that pair's file")
    items = doc.get("divergence", [])
    if not isinstance(items, list):
        raise DivergenceError(f"{path}: 'divergence' must be an array of tables ([[divergence]])")
    entries: List[Divergence] = []
    for i, item in enumerate(items, 1):
        label = f"{path}: divergence #{i}" + (f" ({item['id']})" if isinstance(item, dict) and "id" in item else "")
        entries.append(_entry(label, item, pair_name, stages, cases, f"{path}#{i}"))
    _check_overlaps(entries, cases, str(path))
    record = {"path": str(path), "sha256": hashlib.sha256(raw).hexdigest(), "origin": origin,
              "entries": [e.id for e in entries]}
    return entries, record


def _check_overlaps(entries: Sequence[Divergence], cases: Sequence[str], where: str) -> None:
    """No two entries may claim the same stage of one case (in one precision), nor share an id."""
    ids: Dict[str, Divergence] = {}
    for e in entries:
        if e.id in ids:
            raise DivergenceError(f"{where}: two entries have the id {e.id!r} ({ids[e.id].source} and {e.source}); "
                                  f"ids must be unique")
        ids[e.id] = e
    for case in cases:
        for dtype in DTYPES:
            seen: Dict[str, Divergence] = {}
            for e in entries:
                if e.matches(case, dtype):
                    if e.stage in seen:
                        raise DivergenceError(
                            f"{where}: entries {seen[e.stage].id!r} and {e.id!r} both claim stage {e.stage} of case "
                            f"{case} ({dtype}); give each (case, stage) one entry")
                    seen[e.stage] = e


def load_registry(pair_name: str, stages: Sequence[str], cases: Sequence[str], *, extra: Optional[Path] = None,
                  enabled: bool = True, shipped_dir: Optional[Path] = None) -> Registry:
    """The shipped registry of ``pair_name`` (if it has a file), with ``extra`` (``--divergences``)
    on top: an entry of ``extra`` replaces a shipped one with the same id or the same (cases,
    stage, dtype); the others are added. ``enabled`` False: an empty, disabled registry."""
    if not enabled:
        return Registry(pair=pair_name, enabled=False, note="--no-divergences: the raw verdicts, no entry applied")
    folder = Path(shipped_dir) if shipped_dir is not None else SHIPPED_DIR
    path = folder / file_name(pair_name)
    entries: List[Divergence] = []
    files: List[Dict[str, Any]] = []
    notes = []
    if path.is_file():
        got, record = load_file(path, pair_name, stages, cases, origin="shipped")
        entries, files = got, [record]
    else:
        notes.append(f"no shipped registry for pair {pair_name} ({path} does not exist)")
    if extra is not None:
        got, record = load_file(Path(extra), pair_name, stages, cases, origin="given")
        replaced = {e.id for e in got} | {e.key for e in got}
        kept = [e for e in entries if e.id not in replaced and e.key not in replaced]
        entries = kept + got
        files.append(record)
        _check_overlaps(entries, cases, f"{extra} (with the shipped {path.name})")
    return Registry(pair=pair_name, entries=tuple(entries), files=tuple(files), note="; ".join(notes))
