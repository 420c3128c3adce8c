"""Provenance of a report: versions, devices, determinism flags, threads, inputs, git, command.

Framework versions and determinism flags come from the captures' metadata (what the backends
reported while running, parity.sides), so nothing here imports TensorFlow or PyTorch; when
no case produced a capture, the installed distributions' versions are used instead.
"""
from __future__ import annotations

import importlib.metadata as md
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from parity import cases as case_registry
from parity import fixtures as fixture_store

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_VARS = ("TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL", "TF_DETERMINISTIC_OPS", "TF_XLA_FLAGS",
            "CUDA_VISIBLE_DEVICES", "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PYTHONHASHSEED")


def _dist_version(*names: str) -> Optional[str]:
    for name in names:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            continue
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_info(root: Path = REPO_ROOT) -> Optional[Dict[str, Any]]:
    """Commit and dirty flag of the working tree (read-only git calls); None outside a repository."""
    def git(*args: str) -> Optional[str]:
        try:
            proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(status) if status is not None else None}


def _first(metas: Iterable[Mapping[str, Any]], framework: str) -> Optional[Mapping[str, Any]]:
    for m in metas:
        if m and m.get("framework") == framework:
            return m
    return None


def collect(*, backend_metas: Sequence[Mapping[str, Any]], devices: Sequence[Mapping[str, Any]],
            cases: Sequence[case_registry.Case], tolerance_mode: str, isolation: str,
            command: Sequence[str]) -> Dict[str, Any]:
    """The provenance block of parity_report.json (see parity.report.schema)."""
    tf_meta = _first(backend_metas, "tensorflow") or {}
    pt_meta = _first(backend_metas, "torch") or {}
    tf_versions = dict(tf_meta.get("versions") or {})
    pt_versions = dict(pt_meta.get("versions") or {})
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    tf_det = dict(tf_meta.get("determinism") or {})
    pt_det = dict(pt_meta.get("determinism") or {})
    seeds: Dict[str, Any] = {}
    for c in cases:
        try:
            fixture_seed = fixture_store.get_spec(c.fixture).seed
        except KeyError:
            fixture_seed = None
        seeds[c.name] = {"fixture": c.fixture, "fixture_seed": fixture_seed, "input_seed": c.input_seed,
                         "weights": c.weights}
    try:
        hashes = case_registry.fixture_hashes(cases)
    except Exception as exc:  # provenance must not fail a report
        hashes = {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "numpy": np.__version__,
        "scipy": _dist_version("scipy"),
        "matplotlib": _dist_version("matplotlib"),
        "tensorflow": tf_versions.get("tensorflow") or _dist_version("tensorflow", "tensorflow-cpu", "tf-nightly"),
        "keras": tf_versions.get("keras") or _dist_version("keras"),
        "torch": pt_versions.get("torch") or _dist_version("torch"),
        "cuda": {"tensorflow": tf_versions.get("cuda"), "torch": pt_versions.get("cuda")},
        "cudnn": {"tensorflow": tf_versions.get("cudnn"), "torch": pt_versions.get("cudnn")},
        "versions_from": "captures" if (tf_versions or pt_versions) else "installed distributions",
        "devices": list(devices),
        "determinism": _determinism(backend_metas),
        "threads": {
            "cpu_count": os.cpu_count(), "affinity": affinity,
            "tf_intra_op": tf_det.get("tf_intra_op_threads"), "tf_inter_op": tf_det.get("tf_inter_op_threads"),
            "torch_num_threads": pt_det.get("num_threads"), "torch_interop_threads": pt_det.get("num_interop_threads"),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        },
        "environment": {k: os.environ.get(k) for k in ENV_VARS},
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "hostname": platform.node(),
        "fixture_hashes": hashes,
        "seeds": seeds,
        "git": git_info(),
        "tolerance_mode": tolerance_mode,
        "isolation": isolation,
        "command": shlex.join(command) if command else None,
        "argv": list(command),
        "cwd": os.getcwd(),
    }


def _determinism(metas: Iterable[Mapping[str, Any]]) -> Dict[str, Any]:
    """side -> its determinism flags (from the first capture of each side)."""
    out: Dict[str, Any] = {}
    for m in metas:
        if m and m.get("side") and m["side"] not in out:
            out[m["side"]] = dict(m.get("determinism") or {})
    return out


def backend_metas(records: Sequence[Any]) -> List[Mapping[str, Any]]:
    """Capture metadata of every case (reference and port), for :func:`collect`."""
    out: List[Mapping[str, Any]] = []
    for r in records:
        for meta in (r.backends or {}).values():
            out.append(meta)
    return out
