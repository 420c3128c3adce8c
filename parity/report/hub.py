"""The hub folder: its layout, the refusal to overwrite, the RUNNING marker, atomic writes.

A hub is a folder that may also hold the user's own files (plans, logs); the report only ever
writes, replaces or removes the paths it owns, and lists every file it wrote in
``parity_report.json`` (``artifacts``), so ``--force`` removes exactly those.

Order of writing (what an interrupted run leaves): :meth:`Hub.claim` writes ``RUNNING``
(pid, host, start time, command) and, with ``force``, first deletes an earlier
``parity_report.json``; figures, captures and the other files follow; ``parity_report.json``
is written last (temporary file + rename) and only then is ``RUNNING`` removed. A hub without
``parity_report.json`` therefore never claims a verdict.

Taking ``RUNNING`` is atomic (parity.report.marker): of two runs claiming one hub at the same
moment exactly one gets it. A run that stops early calls :meth:`Hub.abandon`: what the run
created is removed (the whole folder when the claim created it), unless the run was interrupted
or had already removed an earlier report; then ``RUNNING`` stays, with a ``stopped`` note.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import socket
import time
from pathlib import Path, PurePosixPath
from typing import Any, Dict, Iterable, List, Optional, Sequence

log = logging.getLogger(__name__)


from parity.atomic import FILE_MODE, write_bytes_atomic  # re-exported for the report modules

from . import marker as marker_mod

REPORT_JSON = "parity_report.json"
SCHEMA_JSON = "parity_report.schema.json"
INDEX_HTML = "index.html"
SUMMARY_PNG = "summary.png"
CONFIG_JSON = "config.json"
RUNNING = "RUNNING"
ANALYSIS = "analysis"
CAPTURES = "captures"
#: Per-role files (the roles of a pair: "reference", "candidate"), whatever the sides are.
PATCH_STATS = {"reference": f"{ANALYSIS}/reference_patch_stats.json",
               "candidate": f"{ANALYSIS}/candidate_patch_stats.json"}
PATCH_GRIDS = {"reference": f"{ANALYSIS}/reference_patch_grid.png",
               "candidate": f"{ANALYSIS}/candidate_patch_grid.png"}
PATCH_ERRORS = f"{ANALYSIS}/patch_errors.json"
#: Files at fixed paths that every report writes (the per-case ones live under analysis/<case>/
#: and captures/<case>/).
FIXED_FILES = (REPORT_JSON, SCHEMA_JSON, INDEX_HTML, SUMMARY_PNG, CONFIG_JSON, *PATCH_STATS.values(),
               *PATCH_GRIDS.values(), PATCH_ERRORS)
#: Capture roles under captures/<case>/: the reference the candidate is compared against (the
#: float64 run under the noise floor), the candidate, its teacher-forced stages, and the
#: reference side's float32 run (noise floor only).
CAPTURE_ROLES = ("reference", "candidate", "local", "reference_float32")
#: File names of hubs written before captures were named after sides (recheck reads them).
LEGACY_CAPTURE_FILES = {"reference": "tf.npz", "candidate": "torch.npz", "local": "local.npz",
                        "reference_float32": "tf_float32.npz"}


def capture_name(role: str, side: str) -> str:
    """File name of a capture under captures/<case>/: ``<role>.<side>.npz``, e.g.
    ``candidate.torch_impl.npz`` (the local stages are the candidate side's)."""
    if role not in CAPTURE_ROLES:
        raise ValueError(f"unknown capture role {role!r}; expected one of {list(CAPTURE_ROLES)}")
    return f"{role}.{side}.npz"


class HubError(ValueError):
    """The hub cannot be used as asked (one sentence naming the path and what is allowed)."""


def case_key(name: str, device: str) -> str:
    """Folder name of a case on a device: the case name on cpu, ``name@cuda-1`` elsewhere."""
    return name if device == "cpu" else f"{name}@{device.replace(':', '-')}"


def timestamp(t: Optional[float] = None) -> str:
    """UTC stamp in the user's hub style, e.g. ``2025-11-13T000000Z``."""
    return time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime(t))


def new_hub_path(root: Path) -> Path:
    """A fresh ``root/<timestamp>`` (suffixed ``-2``, ``-3`` ... when taken)."""
    base = root / timestamp()
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def write_json_atomic(path: Path, obj: Any, indent: Optional[int] = 1) -> None:
    """Strict JSON (NaN/Inf must already be encoded as strings; ``allow_nan=False`` checks it)."""
    write_bytes_atomic(path, (json.dumps(obj, indent=indent, allow_nan=False) + "\n").encode())


def _safe_relative(rel: str) -> bool:
    p = PurePosixPath(rel)
    return bool(rel) and not p.is_absolute() and ".." not in p.parts


def read_report(hub: Path) -> Dict[str, Any]:
    """``parity_report.json`` of a hub (or the file itself); HubError naming what is wrong."""
    path = hub / REPORT_JSON if hub.is_dir() else hub
    if not hub.exists():
        raise HubError(f"{hub} does not exist; give a hub folder written by python -m parity.report")
    if not path.is_file():
        raise HubError(f"{hub} holds no {REPORT_JSON}; give a hub folder written by python -m parity.report "
                       f"(an interrupted run leaves none)")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HubError(f"{path} is not a readable JSON report: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("cases"), list) or doc.get("verdict") not in ("pass", "fail"):
        raise HubError(f"{path} is not a parity report (needs a verdict and a list of cases)")
    return doc


class Hub:
    """One hub folder. ``check`` only looks; ``claim`` makes the changes."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.written: List[str] = []  # relative paths of the files this run wrote
        self._claimed = False
        self._replaced = False  # the claim removed an earlier report
        self._created: Optional[Path] = None  # the topmost folder the claim created
        self._before: set = set()  # paths in the hub before the claim

    def path(self, rel: str) -> Path:
        return self.root / rel

    # ---------------------------------------------------------------- checks (no changes)
    def check(self, *, force: bool, planned: Iterable[str] = ()) -> Optional[Dict[str, Any]]:
        """Raise HubError when the hub cannot be written as asked; return the earlier report (or None).

        Refuses: a path that is a file; a folder that is not writable (or whose nearest existing
        parent is not); a hub another live process is writing (RUNNING with a live pid); a hub
        holding a parity report, or files at the report's own paths that no report of ours
        wrote, unless ``force``.
        """
        root = self.root
        if root.exists() and not root.is_dir():
            raise HubError(f"hub {root} exists and is not a folder; give a folder path for --hub")
        probe = root
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
            raise HubError(f"hub {root} is not writable ({probe} does not allow creating files); "
                           f"give a --hub in a writable folder")
        if not root.exists():
            return None
        marker = root / RUNNING
        stale_ours = False
        if marker.exists():
            info = self._marker_info()
            pid = info.get("pid")
            same_host = info.get("host") == socket.gethostname()
            if isinstance(pid, int) and same_host and pid != os.getpid() and marker_mod.pid_alive(pid):
                raise HubError(f"hub {root} is being written by another run (pid {pid}, see {marker}); "
                               f"wait for it or choose another --hub")
            stale_ours = True
            log.info("hub %s: stale %s marker from an interrupted run; its files will be replaced", root, RUNNING)
        earlier = None
        if (root / REPORT_JSON).exists():
            if not force:
                raise HubError(f"hub {root} already holds a parity report ({REPORT_JSON}); it is never overwritten: "
                               f"choose another --hub or pass --force")
            try:
                earlier = read_report(root)
            except HubError:
                earlier = {}
        elif not stale_ours and not force:
            clash = [p for p in planned if (root / p).exists()]
            if clash:
                shown = ", ".join(clash[:3]) + (" ..." if len(clash) > 3 else "")
                raise HubError(f"hub {root} already holds files at the report's paths ({shown}) that no parity "
                               f"report wrote; choose another --hub or pass --force to replace them")
        return earlier

    def _marker_info(self) -> Dict[str, Any]:
        try:
            info = json.loads((self.root / RUNNING).read_text())
            return info if isinstance(info, dict) else {}
        except (OSError, ValueError):
            return {}

    # ---------------------------------------------------------------- changes
    def claim(self, *, command: Sequence[str], earlier: Optional[Dict[str, Any]], keep: Sequence[str] = ()) -> None:
        """Create the hub, take RUNNING (HubError when another run holds it), then (with an earlier
        report) delete that report first and every other file it listed, except those under the
        prefixes in ``keep``."""
        top = self.root
        while not top.parent.exists() and top.parent != top:
            top = top.parent
        self._created = None if self.root.exists() else top
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._before = set() if self._created else set(self.root.rglob("*"))
            marker = {"pid": os.getpid(), "host": socket.gethostname(), "started": timestamp(),
                      "command": list(command), "python": platform.python_version(),
                      "note": "a parity report is being written here; without parity_report.json beside this file "
                              "the run did not finish"}
            marker_mod.take(self.root / RUNNING, (json.dumps(marker, indent=1) + "\n").encode())
        except marker_mod.MarkerBusy as busy:
            raise HubError(f"hub {self.root} is being written by another run (pid {busy.pid}, see "
                           f"{self.root / RUNNING}); wait for it or choose another --hub") from None
        except OSError as exc:
            raise HubError(f"hub {self.root} is not writable: {exc.strerror or exc}") from None
        self._claimed = True
        self._replaced = earlier is not None
        if earlier is None:
            return
        (self.root / REPORT_JSON).unlink(missing_ok=True)  # first: no stale verdict beside new files
        removed = 0
        for rel in earlier.get("artifacts", []) or []:
            if not isinstance(rel, str) or not _safe_relative(rel) or rel == REPORT_JSON:
                continue
            if any(rel == k or rel.startswith(k.rstrip("/") + "/") for k in keep):
                continue
            p = self.root / rel
            if p.is_file():
                p.unlink()
                removed += 1
                self._prune(p.parent)
        log.info("hub %s: removed %d files of the earlier report", self.root, removed)

    def abandon(self, reason: str, *, interrupted: bool = False) -> str:
        """Give the hub back after the run stopped early; returns what became of it, in words.

        Removes every file and folder the run created at the report's own paths (the whole folder
        when the claim created it) and RUNNING, so the hub is as it was; but after an interruption, once the claim removed an
        earlier report, or where an interrupted run had left files before, they stay and RUNNING
        records ``stopped: reason`` (incomplete)."""
        if not self._claimed:
            return f"hub {self.root} was not touched"
        self._claimed = False
        if self._replaced or interrupted or (self.root / RUNNING) in self._before:
            info = marker_mod.read(self.root / RUNNING) or {}
            info["stopped"] = f"{reason} ({timestamp()})"
            try:
                write_bytes_atomic(self.root / RUNNING, (json.dumps(info, indent=1) + "\n").encode())
            except OSError:
                pass
            return f"hub {self.root} is incomplete (its {RUNNING} marker says why)"
        if self._created is not None:
            shutil.rmtree(self._created, ignore_errors=True)
            return f"hub {self.root} was removed"
        top = {rel.split("/")[0] for rel in FIXED_FILES} | {CAPTURES, RUNNING}  # the report's own paths

        def ours(p: Path) -> bool:
            first = p.relative_to(self.root).parts[0]
            return first in top or any(first.startswith(f".{name}.") for name in top)  # or a temporary file

        new = [p for p in set(self.root.rglob("*")) - self._before if ours(p)]
        for p in sorted(new, key=lambda q: len(q.parts), reverse=True):
            try:
                p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
            except OSError:
                pass
        return f"hub {self.root} is left as it was"

    def _prune(self, folder: Path) -> None:
        """Remove folders emptied by the removal of the earlier report's files (never the hub)."""
        root = self.root.resolve()
        folder = folder.resolve()
        while folder != root and root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def record(self, rel: str) -> None:
        if rel not in self.written:
            self.written.append(rel)

    def write_json(self, rel: str, obj: Any, indent: Optional[int] = 1) -> None:
        write_json_atomic(self.path(rel), obj, indent)
        self.record(rel)

    def write_text(self, rel: str, text: str) -> None:
        write_bytes_atomic(self.path(rel), text.encode())
        self.record(rel)

    def release(self) -> None:
        """Remove RUNNING (after the report is in place)."""
        if self._claimed:
            (self.root / RUNNING).unlink(missing_ok=True)
            self._claimed = False
