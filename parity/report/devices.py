"""Devices the report runs on: parse ``--devices``, decide which are available, and why not.

This is the seam for the device matrix: the report runs every case on every available device
and writes one entry per device (``devices`` in parity_report.json) plus one case entry per
(case, device). A device that is unavailable (e.g. ``cuda`` on a machine without a GPU) is
reported with the reason and does not fail the run.

``cpu`` is always available and never probed (probing would import both frameworks). Other
devices are probed through the adapters (parity.adapters; the only code that imports
TensorFlow or PyTorch): in this process for ``isolation="inprocess"``, otherwise in one child
process, so the frameworks stay out of the parent.
"""
from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

log = logging.getLogger(__name__)

_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")
ALLOWED = "cpu, cuda, cuda:<index>"


@dataclass
class DeviceStatus:
    """One requested device: ``available`` and, when not, ``reason``; ``names``: backend -> what
    the backend calls the device (when probed)."""

    device: str
    available: bool
    reason: Optional[str] = None
    names: Dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, object]:
        return {"device": self.device, "status": "available" if self.available else "unavailable",
                "reason": self.reason, "names": dict(self.names)}


def parse_devices(text: str) -> List[str]:
    """``"cpu,cuda"`` -> ``["cpu", "cuda"]``; ValueError naming a bad entry and what is allowed."""
    out: List[str] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if not _DEVICE.match(item):
            raise ValueError(f"unknown device {item!r} in --devices; allowed are {ALLOWED} (comma separated)")
        if item == "cuda:0":
            item = "cuda"
        if item not in out:
            out.append(item)
    if not out:
        raise ValueError(f"--devices is empty; allowed are {ALLOWED} (comma separated)")
    return out


_PROBE = """
import json, sys
from parity.adapters.base import get_adapter
out = {}
for b in ("tf", "torch"):
    try:
        out[b] = get_adapter(b).devices()
    except Exception as exc:
        out[b] = {"__error__": f"{type(exc).__name__}: {exc}"}
json.dump(out, sys.stdout)
"""


def _backend_devices(isolation: str) -> Dict[str, Dict[str, str]]:
    """backend -> {device: description} as the adapters see it."""
    if isolation == "inprocess":
        from parity.adapters.base import get_adapter

        out: Dict[str, Dict[str, str]] = {}
        for backend in ("tf", "torch"):
            try:
                out[backend] = get_adapter(backend).devices()
            except Exception as exc:  # a missing framework: the device is unavailable for it
                out[backend] = {"__error__": f"{type(exc).__name__}: {exc}"}
        return out
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {b: {"__error__": f"device probe failed: {tail}"} for b in ("tf", "torch")}
    return json.loads(proc.stdout)


def resolve_devices(devices: Sequence[str], isolation: str = "inprocess") -> List[DeviceStatus]:
    """Availability of each requested device (``cpu`` without probing)."""
    statuses: List[DeviceStatus] = []
    seen: Optional[Dict[str, Dict[str, str]]] = None
    for dev in devices:
        if dev == "cpu":
            statuses.append(DeviceStatus("cpu", True, names={"tf": "CPU", "torch": "CPU"}))
            continue
        if seen is None:
            seen = _backend_devices(isolation)
        missing, names = [], {}
        for backend, label in (("tf", "TensorFlow"), ("torch", "PyTorch")):
            found = seen.get(backend, {})
            if dev in found:
                names[backend] = found[dev]
            elif "__error__" in found:
                missing.append(f"{label} cannot be asked ({found['__error__']})")
            else:
                visible = sorted(k for k in found if k != "cpu")
                missing.append(f"{label} sees no {dev} device (it sees: {', '.join(visible) or 'cpu only'})")
        status = DeviceStatus(dev, not missing, "; ".join(missing) or None, names)
        if missing:
            log.warning("device %s unavailable: %s", dev, status.reason)
        statuses.append(status)
    return statuses
