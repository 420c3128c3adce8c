"""Model configuration of the PyTorch port (forward-model.md §1).

One frozen dataclass with the same fields, defaults, derived sizes and validation as the
reference's ``ModelConfig``; ``tests/unit/test_torch_model.py`` keeps the two identical.

Glossary (forward-model.md): B batch of groups, g gridsize, C = g*g patches per group,
N patch side, M canvas side, n = n_filters_scale, K object channels (C if object_big else 1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Optional

ALLOWED_N = (64, 128, 256)
ALLOWED_GRIDSIZE = (1, 2, 3)
ALLOWED_ACTIVATIONS = ("sigmoid", "swish", "softplus", "relu")

#: Encoder ConvPool and decoder-base ConvUp filter ladders at n = 1 (§3.2).
_ENCODER_LADDER = {64: (32, 64, 128), 128: (16, 32, 64, 128), 256: (8, 16, 32, 64, 128)}
_DECODER_LADDER = {64: (64, 32), 128: (128, 64, 32), 256: (256, 128, 64, 32)}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite_positive(value) -> bool:
    return _is_number(value) and math.isfinite(value) and value > 0


@dataclass(frozen=True)
class ModelConfig:
    """Every field of forward-model.md §1.

    ``intensity_scale=None`` means the default ``sqrt(nphotons) / (N / 2)``; read the
    effective value from :attr:`scale`.
    """

    N: int = 64
    gridsize: int = 2
    n_filters_scale: int = 2
    object_big: bool = True
    probe_big: bool = False
    pad_object: bool = True
    amp_activation: str = "sigmoid"
    probe_mask: bool = False
    probe_scale: float = 4.0
    gaussian_smoothing_sigma: float = 0.0
    offset: int = 4
    max_position_jitter: int = 10
    intensity_scale: Optional[float] = None
    nphotons: float = 1e9

    def __post_init__(self) -> None:
        def reject(name, value, allowed):
            raise ValueError(f"ModelConfig.{name}={value!r} is not allowed; expected {allowed}")

        if not (_is_int(self.N) and self.N in ALLOWED_N):
            reject("N", self.N, f"one of {ALLOWED_N}")
        if not (_is_int(self.gridsize) and self.gridsize in ALLOWED_GRIDSIZE):
            reject("gridsize", self.gridsize, f"one of {ALLOWED_GRIDSIZE}")
        if not (_is_int(self.n_filters_scale) and self.n_filters_scale >= 1):
            reject("n_filters_scale", self.n_filters_scale, "an integer >= 1")
        for name in ("object_big", "probe_big", "pad_object", "probe_mask"):
            if not isinstance(getattr(self, name), bool):
                reject(name, getattr(self, name), "a bool")
        if self.amp_activation not in ALLOWED_ACTIVATIONS:
            reject("amp_activation", self.amp_activation, f"one of {ALLOWED_ACTIVATIONS}")
        if not _finite_positive(self.probe_scale):
            reject("probe_scale", self.probe_scale, "a finite number > 0")
        sigma = self.gaussian_smoothing_sigma
        if not (_is_number(sigma) and math.isfinite(sigma) and sigma >= 0):
            reject("gaussian_smoothing_sigma", sigma, "a finite number >= 0")
        for name in ("offset", "max_position_jitter"):
            value = getattr(self, name)
            if not (_is_int(value) and value >= 0):
                reject(name, value, "an integer >= 0")
        if not _finite_positive(self.nphotons):
            reject("nphotons", self.nphotons, "a finite number > 0")
        if self.intensity_scale is not None and not _finite_positive(self.intensity_scale):
            reject("intensity_scale", self.intensity_scale, "None (derived from nphotons) or a finite number > 0")
        if self.probe_big and not self.pad_object:
            # §3.3: the border branch exists only on the pad_object path.
            reject("probe_big", self.probe_big, "False when pad_object=False (the border branch needs pad_object)")
        if self.pad_object and self.n_filters_scale * 32 <= 4:
            reject("n_filters_scale", self.n_filters_scale, "large enough that 32n > 4")

    # ---- derived sizes -------------------------------------------------------------
    @property
    def C(self) -> int:
        """Patches per group, gridsize**2."""
        return self.gridsize**2

    @property
    def K(self) -> int:
        """Object channels the network emits: C if object_big else 1."""
        return self.C if self.object_big else 1

    @property
    def M(self) -> int:
        """Canvas side: N + (g - 1) * offset + max_position_jitter."""
        return self.N + (self.gridsize - 1) * self.offset + self.max_position_jitter

    @property
    def scale(self) -> float:
        """The effective intensity scale s (§2)."""
        if self.intensity_scale is None:
            return math.sqrt(self.nphotons) / (self.N / 2)
        return float(self.intensity_scale)

    @property
    def encoder_filters(self) -> tuple:
        return tuple(self.n_filters_scale * f for f in _ENCODER_LADDER[self.N])

    @property
    def decoder_filters(self) -> tuple:
        return tuple(self.n_filters_scale * f for f in _DECODER_LADDER[self.N])

    @property
    def border_filters(self) -> int:
        """Width of the ConvUp in the last decoder stage's full-size branch: n * 2048 / N."""
        return self.n_filters_scale * 2048 // self.N

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"ModelConfig got unknown field(s) {unknown}; allowed fields are {sorted(known)}")
        return cls(**data)
