"""Small helpers shared by the benchmark sections: summaries, fits, load, /proc memory, tables."""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
GIB = 1024 ** 3


# --------------------------------------------------------------------------- statistics
def summarize(values: Iterable[float]) -> Dict[str, Any]:
    """``{"median", "min", "max", "n", "values"}`` of a list of numbers (NaN-free); empty -> None fields."""
    vals = [float(v) for v in values]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0, "values": []}
    return {"median": float(np.median(vals)), "min": min(vals), "max": max(vals), "n": len(vals), "values": vals}


def ratio_summary(num: Sequence[float], den: Sequence[float]) -> Dict[str, Any]:
    """Summary of the element-wise ratios num[i] / den[i] (pairs measured together)."""
    return summarize(a / b for a, b in zip(num, den) if b > 0)


def fit_exponent(x: Sequence[float], y: Sequence[float]) -> Dict[str, Optional[float]]:
    """Least-squares fit ``log y = k log x + c``; returns ``{"exponent": k, "r2": ...}``.

    Needs at least two distinct positive x; otherwise the fields are None.
    """
    pts = [(math.log(a), math.log(b)) for a, b in zip(x, y) if a > 0 and b > 0]
    if len(pts) < 2 or len({p[0] for p in pts}) < 2:
        return {"exponent": None, "intercept": None, "r2": None, "n": len(pts)}
    lx = np.array([p[0] for p in pts])
    ly = np.array([p[1] for p in pts])
    k, c = np.polyfit(lx, ly, 1)
    resid = ly - (k * lx + c)
    ss_tot = float(np.sum((ly - ly.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid ** 2)) / ss_tot if ss_tot > 0 else 1.0
    return {"exponent": float(k), "intercept": float(c), "r2": r2, "n": len(pts)}


# --------------------------------------------------------------------------- machine
def loadavg() -> List[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux
        return []


def machine_info() -> Dict[str, Any]:
    from importlib import metadata

    versions = {}
    for pkg in ("numpy", "scipy", "matplotlib", "tensorflow-cpu", "tensorflow", "torch"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else None, "mem_total_bytes": mem_total, "versions": versions,
            "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_ENABLE_ONEDNN_OPTS")}}


class Section:
    """Context manager recording a section's wall time and the load average before and after."""

    def __init__(self, name: str):
        self.name = name
        self.record: Dict[str, Any] = {}

    def __enter__(self) -> "Section":
        self._t0 = time.perf_counter()
        self.record = {"load_before": loadavg(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        return self

    def __exit__(self, *exc) -> None:
        self.record["load_after"] = loadavg()
        self.record["section_wall_s"] = time.perf_counter() - self._t0


# --------------------------------------------------------------------------- memory via /proc
def _status_kib(pid: int, key: str) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def rss_bytes(pid: int) -> Optional[int]:
    kib = _status_kib(pid, "VmRSS")
    return None if kib is None else kib * 1024


def peak_rss_bytes(pid: Optional[int] = None) -> Optional[int]:
    """VmHWM (peak resident set size) of a live process (default: this one)."""
    kib = _status_kib(os.getpid() if pid is None else pid, "VmHWM")
    if kib is None and pid is None:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return None if kib is None else kib * 1024


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (``echo 5 > /proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def descendants(pid: int) -> List[int]:
    """pid and every live descendant (from /proc/*/stat parent links)."""
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_rss_bytes(pid: int) -> int:
    return sum(r for r in (rss_bytes(p) for p in descendants(pid)) if r)


# --------------------------------------------------------------------------- output
def fmt_s(v: Optional[float]) -> str:
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:.0f}s"
    if v >= 1:
        return f"{v:.2f}s"
    if v >= 1e-3:
        return f"{v * 1e3:.1f}ms"
    return f"{v * 1e6:.0f}us"


def fmt_summary(s: Optional[Dict[str, Any]], unit: str = "s") -> str:
    """``median [min-max]`` in seconds, a plain number (unit "x"), percent ("%") or GiB ("GiB")."""
    if not s or s.get("median") is None:
        return "-"
    f = {"s": fmt_s, "x": lambda v: f"{v:.2f}", "%": lambda v: f"{100 * v:.1f}%",
         "GiB": lambda v: f"{v / GIB:.2f}", "MiB": lambda v: f"{v / 2 ** 20:.0f}"}[unit]
    if s["n"] == 1:
        return f(s["median"])
    return f"{f(s['median'])} [{f(s['min'])}-{f(s['max'])}]"


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(header)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line([str(h) for h in header]), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else str(v)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=1) + "\n")
    tmp.replace(path)


def child_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment for child processes: the repository on PYTHONPATH, TF's C++ logging quiet."""
    env = dict(os.environ)
    pp = env.get("PYTHONPATH", "")
    if str(ROOT) not in pp.split(os.pathsep):
        env["PYTHONPATH"] = str(ROOT) + (os.pathsep + pp if pp else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra or {})
    return env
