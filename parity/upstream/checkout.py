"""Where the user's PtychoPINN checkout is, and what it is.

The checkout is the folder that holds the packages ``ptycho/`` and ``ptycho_torch/`` (a clone
of the PtychoPINN repository, or any copy of those two packages). It is named by
``--upstream PATH`` on the command line, which sets the environment variable
``PARITY_PTYCHOPINN`` for the worker processes, or by that variable directly. The sides put it
first on ``sys.path`` in their worker, so the user's code is imported as it is.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

ENV = "PARITY_PTYCHOPINN"
PACKAGES = ("ptycho", "ptycho_torch")


class CheckoutMissing(RuntimeError):
    """No usable checkout: the message says what was looked at and how to name one."""


def problem(path: Path) -> Optional[str]:
    """Why ``path`` is not a PtychoPINN checkout (None when it is one)."""
    if not path.is_dir():
        return f"{path} is not a folder"
    missing = [p for p in PACKAGES if not (path / p / "__init__.py").is_file()]
    if missing:
        return f"{path} holds no {' and no '.join(p + '/' for p in missing)} package (a PtychoPINN checkout holds ptycho/ and ptycho_torch/)"
    return None


def locate(path: Optional[str] = None) -> Path:
    """The checkout: ``path`` if given, else ``$PARITY_PTYCHOPINN``; CheckoutMissing otherwise."""
    given = path if path is not None else os.environ.get(ENV)
    if not given:
        raise CheckoutMissing(f"the PtychoPINN sides need a PtychoPINN checkout (the folder holding ptycho/ and "
                              f"ptycho_torch/): pass --upstream PATH or set {ENV}=PATH")
    root = Path(given).expanduser().resolve()
    why = problem(root)
    if why is not None:
        source = "--upstream" if path is not None else ENV
        raise CheckoutMissing(f"{source}: {why}")
    return root


def use(path: Optional[str] = None) -> Path:
    """Locate the checkout and put it first on ``sys.path`` (once); returns it."""
    root = locate(path)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root


def describe(root: Path) -> Dict[str, str]:
    """Path and commit of the checkout: ``git rev-parse HEAD`` (with ``dirty`` when it has
    changes), else the commit a SNAPSHOT.md beside the packages names, else unknown."""
    out = {"path": str(root), "commit": "unknown", "source": "none"}
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode == 0 and head.stdout.strip():
            top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True,
                                 text=True, timeout=10).stdout.strip()
            if top and Path(top).resolve() == root:
                status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", *PACKAGES],
                                        capture_output=True, text=True, timeout=30).stdout
                out.update(commit=head.stdout.strip(), source="git", dirty=str(bool(status.strip())).lower())
                return out
    except (OSError, subprocess.SubprocessError):
        pass
    snap = root / "SNAPSHOT.md"
    if snap.is_file():
        m = re.search(r"\b([0-9a-f]{40})\b", snap.read_text(errors="replace"))
        if m:
            out.update(commit=m.group(1), source="SNAPSHOT.md")
    return out
