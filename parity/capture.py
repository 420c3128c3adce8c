"""Captures: the ordered stage arrays of one run plus its metadata, saved as ``.npz``.

A capture file is a compressed ``.npz`` holding one array per stage (canonical channels-first
layout, parity.stages names), optionally the batch inputs (``diffraction``, ``offsets``,
``probe_raw``) for replay and teacher forcing, and the metadata as a JSON string in a 0-d
unicode array under the reserved key ``__meta__``. Nothing is pickled: files are read with
``allow_pickle=False`` and object arrays are refused on save and load. NumPy and stdlib only.
"""
from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from .atomic import write_atomic

from parity.stages import BATCH_INPUTS, BY_NAME, STAGE_NAMES

META_KEY = "__meta__"
FORMAT_VERSION = 1


class CaptureError(ValueError):
    """A capture file or object that cannot be used; the message names the file."""


def _ordered(arrays: Mapping[str, Any], order) -> Dict[str, np.ndarray]:
    """Arrays in ``order`` first (parity.stages order), then any others in their given order."""
    known = [k for k in order if k in arrays]
    rest = [k for k in arrays if k not in order]
    return {k: np.asarray(arrays[k]) for k in known + rest}


@dataclass
class Capture:
    """Stage arrays of one run (``{stage: array}``, canonical layout, parity.stages order),
    optional batch ``inputs`` (``{"diffraction"|"offsets"|"probe_raw": array}``) and ``meta``
    (JSON-able: backend, versions, device, dtype, wall_time_s, case, config, ...)."""

    stages: Dict[str, np.ndarray]
    meta: Dict[str, Any] = field(default_factory=dict)
    inputs: Dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stages = _ordered(self.stages, tuple(self.meta.get("stage_names") or STAGE_NAMES))
        self.inputs = _ordered(self.inputs, BATCH_INPUTS)
        self.meta = dict(self.meta)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, np.dtype)):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"metadata value {obj!r} of type {type(obj).__name__} is not JSON-serialisable")


def save_capture(path: os.PathLike | str, capture: Capture, *, compress: bool = True) -> Path:
    """Write ``capture`` to ``path`` (used as given; ``.npz`` is conventional) atomically:
    a temporary file in the same folder is renamed over ``path`` once complete."""
    path = Path(path)
    arrays: Dict[str, np.ndarray] = {}
    for group in (capture.stages, capture.inputs):
        for name, arr in group.items():
            arr = np.asarray(arr)
            if arr.dtype.hasobject:
                raise CaptureError(f"{path}: array {name!r} has dtype object; captures hold numeric arrays only")
            if name == META_KEY or name in arrays:
                raise CaptureError(f"{path}: duplicate or reserved array name {name!r}")
            arrays[name] = arr
    meta = dict(capture.meta)
    meta.setdefault("format_version", FORMAT_VERSION)
    try:
        meta_json = json.dumps(meta, default=_json_default, allow_nan=True, sort_keys=False)
    except (TypeError, ValueError) as exc:
        raise CaptureError(f"{path}: metadata cannot be written as JSON: {exc}") from None
    arrays[META_KEY] = np.array(meta_json)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda fh: (np.savez_compressed if compress else np.savez)(fh, **arrays))
    return path


def _read_members(path: Path, fh, known) -> Dict[str, np.ndarray]:
    magic = fh.read(6)
    if not magic.startswith(b"PK\x03\x04"):
        if not magic:
            what = "is empty"
        elif magic[:1] == b"\x80":
            what = "holds pickled data (refusing to load; captures never contain pickles)"
        elif magic == b"\x93NUMPY":
            what = "holds a single .npy array"
        else:
            what = "is not a zip archive"
        raise CaptureError(f"capture file {path} {what}; expected an .npz written by save_capture")
    fh.seek(0)
    try:
        npz = np.load(fh, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CaptureError(f"capture file {path} is not a readable .npz archive "
                           f"(corrupt or truncated): {exc}") from None
    arrays: Dict[str, np.ndarray] = {}
    with npz:
        names = list(npz.files)
        if META_KEY not in names:
            raise CaptureError(f"capture file {path} has no {META_KEY!r} entry; it was not written by save_capture")
        declared = _declared_stages(npz, path)  # a capture of another pair names its stages in its metadata
        known = set(known) | set(declared)
        unknown = [n for n in names if n != META_KEY and n not in known]
        if unknown:
            raise CaptureError(f"capture file {path} holds unknown stage name(s) {unknown}; known stages are "
                               f"{list(declared or STAGE_NAMES)} and batch inputs {list(BATCH_INPUTS)}")
        for name in names:
            try:
                arrays[name] = npz[name]
            except ValueError as exc:
                if "pickle" in str(exc).lower() or "object" in str(exc).lower():
                    raise CaptureError(f"capture file {path}: array {name!r} holds Python objects (pickle); "
                                       f"captures hold numeric arrays only (refusing to load)") from None
                raise CaptureError(f"capture file {path}: array {name!r} cannot be read: {exc}") from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise CaptureError(f"capture file {path}: array {name!r} is corrupt or truncated: {exc}") from None
    return arrays


def _declared_stages(npz, path: Path) -> List[str]:
    """``meta["stage_names"]`` of an open capture ([] when absent or unreadable: the full
    metadata checks come later and name the problem)."""
    try:
        meta = json.loads(str(npz[META_KEY]))
    except Exception:  # noqa: BLE001 - reported by load_capture's own checks
        return []
    names = meta.get("stage_names") if isinstance(meta, dict) else None
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def load_capture(path: os.PathLike | str) -> Capture:
    """Read a capture written by :func:`save_capture`. Raises :class:`CaptureError` naming the
    file for a missing, corrupt or truncated file, pickled or object arrays, a missing or
    unreadable ``__meta__``, and array names that are neither stages nor batch inputs."""
    path = Path(path)
    if not path.is_file():
        raise CaptureError(f"capture file {path} does not exist")
    known = set(STAGE_NAMES) | set(BATCH_INPUTS)
    with open(path, "rb") as fh:  # we own the handle, so it is closed whatever goes wrong
        arrays = _read_members(path, fh, known)
    meta_arr = arrays.pop(META_KEY)
    if meta_arr.shape != () or meta_arr.dtype.kind != "U":
        raise CaptureError(f"capture file {path}: {META_KEY!r} must be a 0-d unicode string, "
                           f"got dtype {meta_arr.dtype} shape {meta_arr.shape}")
    try:
        meta = json.loads(str(meta_arr))
    except json.JSONDecodeError as exc:
        raise CaptureError(f"capture file {path}: {META_KEY!r} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise CaptureError(f"capture file {path}: {META_KEY!r} must hold a JSON object, got {type(meta).__name__}")
    for name, arr in arrays.items():
        if arr.dtype.hasobject:  # unreachable with allow_pickle=False; kept as a guard
            raise CaptureError(f"capture file {path}: array {name!r} has dtype object")
    declared = set(meta.get("stage_names") or ())
    stages = {k: v for k, v in arrays.items() if (k in BY_NAME or k in declared) and k not in BATCH_INPUTS}
    inputs = {k: v for k, v in arrays.items() if k in BATCH_INPUTS}
    return Capture(stages=stages, meta=meta, inputs=inputs)


def validate_capture(capture: Capture, expected_shapes: Optional[Mapping[str, Tuple[int, ...]]] = None,
                     *, stages=STAGE_NAMES) -> List[str]:
    """Problems with a capture, as sentences (empty when fine).

    Checks that exactly ``stages`` (default: every stage) are present, that each array has
    the shape given in ``expected_shapes`` (when given, for the stages it lists), that
    complex stages are complex and real stages real floating point, and that no array has
    dtype object. When ``meta["dtype"]`` is ``"float32"`` or ``"float64"``, the precision of
    every stage must match it (complex64 for float32 complex stages, and so on).
    """
    problems: List[str] = []
    present = list(capture.stages)
    missing = [s for s in stages if s not in capture.stages]
    if missing:
        problems.append(f"missing stage(s) {missing}")
    unknown = [s for s in present if s not in BY_NAME]
    if unknown:
        problems.append(f"unknown stage(s) {unknown}; known stages are {list(STAGE_NAMES)}")
    extra = [s for s in present if s in BY_NAME and s not in stages]
    if extra:
        problems.append(f"unexpected stage(s) {extra}")
    want = capture.meta.get("dtype")
    want = want if want in ("float32", "float64") else None
    for name, arr in capture.stages.items():
        if name not in BY_NAME:
            continue
        arr = np.asarray(arr)
        stage = BY_NAME[name]
        if expected_shapes is not None and name in expected_shapes:
            exp = tuple(expected_shapes[name])
            if arr.shape != exp:
                problems.append(f"stage {name}: shape {arr.shape}, expected {exp} {stage.shape}")
        kind = arr.dtype.kind
        if arr.dtype.hasobject:
            problems.append(f"stage {name}: dtype object; captures hold numeric arrays only")
        elif stage.complex and kind != "c":
            problems.append(f"stage {name}: dtype {arr.dtype} but the stage is complex")
        elif not stage.complex and kind != "f":
            problems.append(f"stage {name}: dtype {arr.dtype} but the stage is real floating point")
        elif want is not None and np.finfo(arr.dtype).dtype.name != want:
            problems.append(f"stage {name}: dtype {arr.dtype} but the capture's dtype is {want}")
    return problems
