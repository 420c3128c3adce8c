"""The RUNNING marker of a hub: taken atomically, read, and judged live or stale.

:func:`take` creates the marker complete or not at all: its bytes go to a temporary file that
is hard-linked to the marker's name, and linking fails when a marker exists (where a file
system has no hard links, ``os.open(..., O_CREAT | O_EXCL)``), so of two runs claiming one hub
at the same moment exactly one gets it. A stale marker (its process is gone) is renamed aside
and compared with what was judged stale before it is deleted, so a marker that another run has
just created in its place is put back rather than removed.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional

from parity.atomic import FILE_MODE

log = logging.getLogger(__name__)


class MarkerBusy(Exception):
    """Another live run holds the marker (``pid``: its process id, when known)."""

    def __init__(self, pid: Any):
        super().__init__(pid)
        self.pid = pid


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_live(info: Dict[str, Any]) -> bool:
    """A marker written by another process on this host that is still running."""
    pid = info.get("pid")
    return isinstance(pid, int) and info.get("host") == socket.gethostname() and pid != os.getpid() \
        and pid_alive(pid)


def read(marker: Path) -> Optional[Dict[str, Any]]:
    """The marker as a dict (``{}`` when unreadable), or None when there is none."""
    try:
        info = json.loads(Path(marker).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def take(marker: Path, data: bytes, attempts: int = 5) -> None:
    """Create ``marker`` holding ``data`` if there is none (a stale one is set aside first).
    Raises MarkerBusy when another live run holds it, OSError when the folder is not writable."""
    marker = Path(marker)
    for _ in range(attempts):
        fd, tmp = tempfile.mkstemp(prefix=f".{marker.name}.", suffix=".tmp", dir=marker.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, FILE_MODE)
            if _link(tmp, marker, data):
                return
        finally:
            os.unlink(tmp)
        _set_aside_stale(marker)
    raise MarkerBusy((read(marker) or {}).get("pid"))


def _link(tmp: str, marker: Path, data: bytes) -> bool:
    """Put the marker in place unless one exists; True when this call created it."""
    try:
        os.link(tmp, marker)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links on this file system
        pass
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return True


def _set_aside_stale(marker: Path) -> None:
    try:
        seen = marker.read_bytes()
    except FileNotFoundError:
        return
    try:
        info = json.loads(seen)
    except ValueError:
        info = {}
    if isinstance(info, dict) and is_live(info):
        raise MarkerBusy(info.get("pid"))
    aside = marker.with_name(f".{marker.name}.stale.{os.getpid()}.{time.monotonic_ns()}")
    try:
        os.rename(marker, aside)
    except FileNotFoundError:  # another run set it aside first
        return
    moved = aside.read_bytes()
    if moved != seen:  # another run's new marker: put it back
        try:
            os.link(aside, marker)
        except OSError:
            pass
        aside.unlink()
        raise MarkerBusy((read(marker) or {}).get("pid"))
    aside.unlink()
    log.info("%s: stale marker of an earlier run set aside", marker)
