"""Compact golden statistics of the reference's stages (pytest-regressions ndarrays_regression).

Per stage: a summary ``[mean, std, min, max]`` of the values (of the real part, imaginary
part and amplitude for complex stages) and, for patch-shaped stages, per-patch means and
zero-mean variances (B*C values). Phases are not stored: the phase of a near-zero value is
round-off noise and would make the goldens flaky across CPUs.

Tolerances per key (documented in tests/parity/README.md): rtol 1e-5 with an absolute floor
of 1e-6 x the stage's largest magnitude (its square for variances), so a relative change of
1e-4 anywhere in a stage fails while float32 kernel reordering (about 1e-7) passes.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from parity import stages

RTOL = 1e-5
ATOL_SCALED = 1e-6


def _parts(name: str, x: np.ndarray):
    x = np.asarray(x)
    if np.iscomplexobj(x):
        x = x.astype(np.complex128)
        return {"re": x.real, "im": x.imag, "abs": np.abs(x)}
    return {"value": x.astype(np.float64)}


def golden_arrays(capture_stages, stage_list=None) -> Tuple[Dict[str, np.ndarray], Dict[str, dict]]:
    """Golden statistics of every stage of ``stage_list`` (default: the built-in pair's)."""
    data: Dict[str, np.ndarray] = {}
    tolerances: Dict[str, dict] = {}
    for st in (stage_list if stage_list is not None else stages.STAGES):
        x = np.asarray(capture_stages[st.name])
        scale = float(np.max(np.abs(x))) if x.size else 0.0
        for part, v in _parts(st.name, x).items():
            key = f"{st.name}.{part}"
            data[f"{key}.summary"] = np.array([v.mean(), v.std(), v.min(), v.max()])
            tolerances[f"{key}.summary"] = dict(rtol=RTOL, atol=ATOL_SCALED * scale)
            if st.patch_shaped and part in ("value", "abs", "re"):
                flat = v.reshape(v.shape[0] * v.shape[1], -1)
                mean = flat.mean(axis=1)
                data[f"{key}.patch_mean"] = mean
                data[f"{key}.patch_var_zero_mean"] = ((flat - mean[:, None]) ** 2).mean(axis=1)
                tolerances[f"{key}.patch_mean"] = dict(rtol=RTOL, atol=ATOL_SCALED * scale)
                tolerances[f"{key}.patch_var_zero_mean"] = dict(rtol=RTOL, atol=ATOL_SCALED * scale**2)
    return data, tolerances
