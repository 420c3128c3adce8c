"""Devices the report runs on: parse ``--devices``, decide which are available, and why not.

This is the seam for the device matrix: the report runs every case on every available device
and writes one entry per device (``devices`` in parity_report.json) plus one case entry per
(case, device). A device that is unavailable (e.g. ``cuda`` on a machine without a GPU) is
reported with the reason and does not fail the run.

``cpu`` is always available and never probed (probing would import both frameworks). Other
devices are asked of the pair's sides where they run: in this process for
``isolation="inprocess"``, otherwise of their worker processes (parity.pool), which then serve
the report, so the frameworks stay out of the parent.
"""
from __future__ import annotations

import logging
import re
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


def resolve_devices(devices: Sequence[str], engine) -> List[DeviceStatus]:
    """Availability of each requested device (``cpu`` without probing); other devices are
    asked of both sides of the engine's pair, where they run (parity.engine.Engine.devices)."""
    statuses: List[DeviceStatus] = []
    seen: Optional[Dict[str, Dict[str, str]]] = None
    sides = list(dict.fromkeys((engine.pair.reference, engine.pair.candidate)))
    for dev in devices:
        if dev == "cpu":
            statuses.append(DeviceStatus("cpu", True, names={s: "CPU" for s in sides}))
            continue
        if seen is None:
            seen = engine.devices()
        missing, names = [], {}
        for side in sides:
            found = seen.get(side, {})
            if dev in found:
                names[side] = found[dev]
            elif "__error__" in found:
                missing.append(f"{side} cannot be asked ({found['__error__']})")
            else:
                visible = sorted(k for k in found if k != "cpu")
                missing.append(f"{side} sees no {dev} device (it sees: {', '.join(visible) or 'cpu only'})")
        status = DeviceStatus(dev, not missing, "; ".join(missing) or None, names)
        if missing:
            log.warning("device %s unavailable: %s", dev, status.reason)
        statuses.append(status)
    return statuses
