"""Tolerances: a per-dtype default table, reviewed per-stage and per-device overrides, and
noise-floor calibration against a float64 oracle.

An element passes when ``|cand - ref| <= atol + atol_scaled * max|ref| + rtol * |ref|``
(``max|ref|`` is the largest magnitude of the whole reference stage). A stage passes when at
most ``max_mismatch_fraction`` of its elements fail and no value is NaN or Inf.

The table lives in ``parity/tolerances.toml`` (its header documents the layout). Every
override must carry a ``reason``; loading fails with a message naming the table otherwise.
NumPy and the standard library only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from parity.stages import STAGE_NAMES

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomli, the package tomllib came from
    import tomli as tomllib

DEFAULT_PATH = Path(__file__).with_name("tolerances.toml")

#: Precision keys of the table; complex dtypes map to the precision of their parts.
DTYPES = ("float32", "float64")
_NUMERIC_FIELDS = ("rtol", "atol", "atol_scaled", "max_mismatch_fraction")
_FIELDS = _NUMERIC_FIELDS + ("reason",)

#: Noise-floor defaults. K: dynamo's accuracy minifier accepts a candidate whose error against
#: fp64 is at most 2-3x the reference's own error; 3 leaves room for a port whose rounding is
#: merely different. FLOOR_ULPS: the smallest atol is FLOOR_ULPS * eps32 * max|oracle64|, a few
#: float32 round-offs at the stage's scale, so a stage on which the reference happens to be
#: exact (floor 0) does not demand bit-identity from the port.
NOISE_FLOOR_K = 3.0
NOISE_FLOOR_ULPS = 4.0


def _check_number(name: str, value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{where}: {name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: {name} must be finite and >= 0, got {value!r}")
    if name == "max_mismatch_fraction" and value > 1:
        raise ValueError(f"{where}: max_mismatch_fraction must be <= 1, got {value!r}")
    return value


@dataclass(frozen=True)
class Tolerance:
    """Elementwise tolerance ``atol + atol_scaled * max|ref| + rtol * |ref|``.

    ``source`` says where it came from (e.g. ``"defaults.float32 < stages.canvas.float32"``),
    ``reason`` why it has these values.
    """

    rtol: float
    atol: float
    atol_scaled: float
    max_mismatch_fraction: float = 0.0
    source: str = ""
    reason: str = ""

    def __post_init__(self) -> None:
        where = f"Tolerance({self.source or 'unnamed'})"
        for name in _NUMERIC_FIELDS:
            object.__setattr__(self, name, _check_number(name, getattr(self, name), where))

    def scaled(self, k: float) -> "Tolerance":
        """rtol, atol and atol_scaled multiplied by ``k`` (the mismatch fraction is kept)."""
        k = _check_number("k", k, "Tolerance.scaled")
        return replace(self, rtol=self.rtol * k, atol=self.atol * k, atol_scaled=self.atol_scaled * k,
                       source=f"{self.source} x{k:g}" if self.source else f"x{k:g}")

    def to_dict(self) -> Dict[str, Any]:
        return {"rtol": self.rtol, "atol": self.atol, "atol_scaled": self.atol_scaled,
                "max_mismatch_fraction": self.max_mismatch_fraction,
                "source": self.source, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Tolerance":
        return cls(**{k: d[k] for k in ("rtol", "atol", "atol_scaled")},
                   max_mismatch_fraction=d.get("max_mismatch_fraction", 0.0),
                   source=d.get("source", ""), reason=d.get("reason", ""))


def dtype_key(dtype: Any) -> str:
    """``"float32"`` or ``"float64"`` for a dtype, dtype name or array (complex -> its parts)."""
    if isinstance(dtype, str) and dtype in DTYPES:
        return dtype
    try:
        dt = dtype.dtype if isinstance(dtype, (np.ndarray, np.generic)) else np.dtype(dtype)
    except TypeError:
        raise ValueError(f"cannot read a dtype from {dtype!r}; expected one of {list(DTYPES)}") from None
    if dt.kind == "c":
        dt = np.finfo(dt).dtype
    if dt.name not in DTYPES:
        raise ValueError(f"no tolerances for dtype {dt.name}; the table has {list(DTYPES)}")
    return dt.name


def _device_key(device: str) -> str:
    """``"cuda:1"`` -> ``"cuda"``: overrides are per device type."""
    return str(device).split(":", 1)[0]


def _check_table(raw: Any, where: str, *, require_reason: bool, partial: bool) -> Dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a table of {list(_FIELDS)}, got {raw!r}")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; allowed fields are {list(_FIELDS)}")
    out: Dict[str, Any] = {}
    for name in _NUMERIC_FIELDS:
        if name in raw:
            out[name] = _check_number(name, raw[name], where)
        elif not partial and name != "max_mismatch_fraction":
            raise ValueError(f"{where}: missing field {name}")
    reason = raw.get("reason", "")
    if not isinstance(reason, str):
        raise ValueError(f"{where}: reason must be a string, got {reason!r}")
    if require_reason and not reason.strip():
        raise ValueError(f"{where}: an override needs a reason = \"...\" saying why it differs "
                         f"from the defaults (what was measured, by whom)")
    if len(out) == 0 and partial:
        raise ValueError(f"{where}: an override must set at least one of {list(_NUMERIC_FIELDS)}")
    out["reason"] = reason
    return out


#: Backward parity: ``grad:S`` names the gradient of a loss with respect to stage S (known when S
#: is), ``grad:weights`` every weight gradient; both resolve through ``[backward.<dtype>]`` and, for
#: the gradients of one loss, ``[backward.<loss>.<dtype>]`` (the loss is a stage name).
GRAD_PREFIX = "grad:"
WEIGHT_GRADIENTS = GRAD_PREFIX + "weights"


def is_gradient(name: str) -> bool:
    return name.startswith(GRAD_PREFIX)


def _check_stage(name: str, where: str, known: Sequence[str] = STAGE_NAMES) -> None:
    if is_gradient(name) and (name == WEIGHT_GRADIENTS or name[len(GRAD_PREFIX):] in known):
        return
    if name != "*" and name not in known:
        raise ValueError(f"{where}: unknown stage {name!r}; known stages are {list(known)}")


def _check_dtypes(raw: Any, where: str) -> Dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a table keyed by dtype {list(DTYPES)}")
    bad = sorted(set(raw) - set(DTYPES))
    if bad:
        raise ValueError(f"{where}: unknown dtype(s) {bad}; allowed are {list(DTYPES)}")
    return raw


def _check_backward(raw: Any, path: str, known: Sequence[str]) -> Dict[str, Any]:
    """``[backward.<dtype>]`` and ``[backward.<loss>.<dtype>]`` (every one needs a reason)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: [backward] must be a table keyed by dtype {list(DTYPES)} or by a loss stage")
    out: Dict[str, Any] = {}
    for k, t in raw.items():
        if k in DTYPES:
            out[k] = _check_table(t, f"{path}: [backward.{k}]", require_reason=True, partial=True)
        elif k in known:
            t = _check_dtypes(t, f"{path}: [backward.{k}]")
            out[k] = {d: _check_table(x, f"{path}: [backward.{k}.{d}]", require_reason=True, partial=True)
                      for d, x in t.items()}
        else:
            raise ValueError(f"{path}: [backward.{k}]: {k!r} is neither a dtype {list(DTYPES)} nor a stage; known "
                             f"stages are {list(known)}")
    return out


@dataclass(frozen=True)
class ToleranceTable:
    """Resolved tolerance table. Build with :func:`load_tolerances` or :meth:`from_dict`."""

    defaults: Mapping[str, Mapping[str, Any]]
    stages: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    device_overrides: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]] = field(default_factory=dict)
    path: str = "<dict>"
    known: Tuple[str, ...] = STAGE_NAMES  # the stage names this table accepts (its pair's)
    backward: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # [backward.<dtype>] / .<loss>.<dtype>

    def for_stages(self, names: Sequence[str]) -> "ToleranceTable":
        """The same table accepting ``names`` too (a pair with other stages: they get the
        defaults unless the table names them)."""
        extra = tuple(n for n in names if n not in self.known)
        return self if not extra else replace(self, known=self.known + extra)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "<dict>",
                  stages: Optional[Sequence[str]] = None) -> "ToleranceTable":
        """Validate a parsed TOML document against ``stages`` (default: the built-in pair's);
        raises ValueError naming the offending table."""
        known = tuple(stages) if stages is not None else STAGE_NAMES
        unknown = sorted(set(data) - {"defaults", "backward", "stages", "device_overrides"})
        if unknown:
            raise ValueError(f"{path}: unknown top-level table(s) {unknown}; "
                             f"allowed are ['defaults', 'backward', 'stages', 'device_overrides']")
        backward = _check_backward(data.get("backward", {}), path, known)
        raw_defaults = _check_dtypes(data.get("defaults", {}), f"{path}: [defaults]")
        missing = [d for d in DTYPES if d not in raw_defaults]
        if missing:
            raise ValueError(f"{path}: missing [defaults.{missing[0]}]; every dtype {list(DTYPES)} needs defaults")
        defaults = {d: _check_table(raw_defaults[d], f"{path}: [defaults.{d}]", require_reason=False, partial=False)
                    for d in DTYPES}
        stages: Dict[str, Dict[str, Any]] = {}
        for stage, per_dtype in data.get("stages", {}).items():
            _check_stage(stage, f"{path}: [stages.{stage}]", known)
            per_dtype = _check_dtypes(per_dtype, f"{path}: [stages.{stage}]")
            stages[stage] = {d: _check_table(t, f"{path}: [stages.{stage}.{d}] (stage {stage})",
                                             require_reason=True, partial=True)
                             for d, t in per_dtype.items()}
        devices: Dict[str, Dict[str, Dict[str, Any]]] = {}
        for device, per_dtype in data.get("device_overrides", {}).items():
            per_dtype = _check_dtypes(per_dtype, f"{path}: [device_overrides.{device}]")
            devices[device] = {}
            for d, per_stage in per_dtype.items():
                if not isinstance(per_stage, dict):
                    raise ValueError(f"{path}: [device_overrides.{device}.{d}] must be a table keyed by stage or \"*\"")
                devices[device][d] = {}
                for stage, t in per_stage.items():
                    where = f"{path}: [device_overrides.{device}.{d}.{stage}] (stage {stage})"
                    _check_stage(stage, where, known)
                    devices[device][d][stage] = _check_table(t, where, require_reason=True, partial=True)
        return cls(defaults=defaults, stages=stages, device_overrides=devices, path=path, known=known,
                   backward=backward)

    def for_stage(self, stage: str, dtype: Any, device: str = "cpu", loss: Optional[str] = None) -> Tolerance:
        """Tolerance of ``stage`` at precision ``dtype`` on ``device`` (``"cuda:0"`` -> ``"cuda"``);
        ``loss``: for a gradient (``grad:S``), the loss it is the gradient of."""
        _check_stage(stage, "for_stage", self.known)
        if stage == "*":
            raise ValueError("for_stage: give a stage name, not '*'")
        key = dtype_key(dtype)
        layers = [(f"defaults.{key}", self.defaults[key])]
        if is_gradient(stage) and key in self.backward:
            layers.append((f"backward.{key}", self.backward[key]))
        if is_gradient(stage) and loss is not None and key in self.backward.get(loss, {}):
            layers.append((f"backward.{loss}.{key}", self.backward[loss][key]))
        if key in self.stages.get(stage, {}):
            layers.append((f"stages.{stage}.{key}", self.stages[stage][key]))
        dev = _device_key(device)
        per_stage = self.device_overrides.get(dev, {}).get(key, {})
        for name in ("*", stage):
            if name in per_stage:
                layers.append((f"device_overrides.{dev}.{key}.{name}", per_stage[name]))
        values: Dict[str, float] = {"max_mismatch_fraction": 0.0}
        reasons = []
        for _, layer in layers:
            values.update({k: v for k, v in layer.items() if k != "reason"})
            if layer.get("reason"):
                reasons.append(layer["reason"])
        # The reason shown is that of the most specific layer that gave one.
        return Tolerance(**values, source=" < ".join(name for name, _ in layers),
                         reason=reasons[-1] if reasons else "")

    def stage_map(self, dtype: Any, device: str = "cpu", stages: Optional[Sequence[str]] = None
                  ) -> Dict[str, Tolerance]:
        """``{stage: Tolerance}`` for every stage (default: every stage the table knows) at one
        precision and device."""
        return {s: self.for_stage(s, dtype, device) for s in (self.known if stages is None else stages)}


def load_tolerances(path: Optional[Path | str] = None, stages: Optional[Sequence[str]] = None) -> ToleranceTable:
    """Read and validate a tolerance TOML file (default: ``parity/tolerances.toml``, the
    built-in pair's, which other pairs' stage names then join); ``stages``: the stage names of
    the pair the file was written for (default: the built-in pair's)."""
    path = Path(path) if path is not None else DEFAULT_PATH
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ValueError(f"tolerance file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"tolerance file {path} is not valid TOML: {exc}") from None
    if path == DEFAULT_PATH or stages is None:
        table = ToleranceTable.from_dict(data, path=str(path))
        return table.for_stages(stages) if stages is not None else table
    return ToleranceTable.from_dict(data, path=str(path), stages=stages)


def _stage_arrays(x: Any) -> Mapping[str, np.ndarray]:
    return getattr(x, "stages", x)


def noise_floor_tolerances(oracle64: Any, ref32: Any, k: float = NOISE_FLOOR_K,
                           floor_ulps: float = NOISE_FLOOR_ULPS,
                           stages: Optional[Sequence[str]] = None) -> Dict[str, Tolerance]:
    """Per-stage tolerances from the reference's own float32 error against its float64 run.

    ``oracle64`` and ``ref32`` are captures (or ``{stage: array}``) of the *reference* backend
    run in float64 and in float32 on the same inputs and weights. For each stage::

        floor = max|ref32 - oracle64|
        atol  = max(k * floor, floor_ulps * eps(float32) * max|oracle64|)

    with rtol = atol_scaled = 0. The port's float32 capture is then compared against the
    float64 oracle with these tolerances: it passes when its error is at most ``k`` times the
    reference's own. Stages are taken in parity.stages order; both inputs must hold the same
    stages with the same shapes and finite values (ValueError otherwise).
    """
    k = _check_number("k", k, "noise_floor_tolerances")
    floor_ulps = _check_number("floor_ulps", floor_ulps, "noise_floor_tolerances")
    o, r = _stage_arrays(oracle64), _stage_arrays(ref32)
    if set(o) != set(r):
        raise ValueError(f"noise_floor_tolerances: stage sets differ; only in oracle64: "
                         f"{sorted(set(o) - set(r))}, only in ref32: {sorted(set(r) - set(o))}")
    order = tuple(stages) if stages is not None else STAGE_NAMES  # the pair's stage names, in order
    unknown = sorted(set(o) - set(order))
    if unknown:
        raise ValueError(f"noise_floor_tolerances: unknown stage(s) {unknown}; known stages are {list(order)}")
    eps32 = float(np.finfo(np.float32).eps)
    out: Dict[str, Tolerance] = {}
    for stage in (s for s in order if s in o):
        a, b = np.asarray(o[stage]), np.asarray(r[stage])
        if a.shape != b.shape:
            raise ValueError(f"noise_floor_tolerances: stage {stage}: oracle64 shape {a.shape} "
                             f"!= ref32 shape {b.shape}")
        wide = np.complex128 if (a.dtype.kind == "c" or b.dtype.kind == "c") else np.float64
        a64, b64 = a.astype(wide, copy=False), b.astype(wide, copy=False)
        scale = float(np.abs(a64).max()) if a64.size else 0.0
        floor = float(np.abs(b64 - a64).max()) if a64.size else 0.0
        if not (math.isfinite(scale) and math.isfinite(floor)):
            raise ValueError(f"noise_floor_tolerances: stage {stage} holds NaN or Inf; "
                             f"a noise floor needs finite runs")
        abs_floor = floor_ulps * eps32 * scale
        atol = max(k * floor, abs_floor)
        reason = (f"noise floor: max|ref32 - oracle64| = {floor:.3g}; atol = max(k={k:g} x floor, "
                  f"{floor_ulps:g} x eps32 x max|oracle64| = {abs_floor:.3g})")
        out[stage] = Tolerance(rtol=0.0, atol=atol, atol_scaled=0.0, source=f"noise_floor.{stage}", reason=reason)
    return out
