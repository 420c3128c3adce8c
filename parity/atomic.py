"""Atomic file writes: write a temporary file beside the target, then rename it into place.

A reader never sees a half-written file: either the old one (or none) or the new one.
Used for captures, hubs and self-test results.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, IO

#: Mode of written files: what open() would give (mkstemp alone makes them private, 0600).
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


def write_atomic(path, write: Callable[[IO[bytes]], None], *, sync: bool = True) -> Path:
    """Create ``path`` atomically; ``write`` receives the open binary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_bytes_atomic(path, data: bytes, sync: bool = True) -> Path:
    return write_atomic(path, lambda fh: fh.write(data), sync=sync)
