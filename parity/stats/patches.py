"""Per-patch statistics of a (B, C, N, N) stage: per-patch errors and per-patch moments.

Pure NumPy, no I/O; everything in float64 / complex128. Glossary (forward-model.md): B batch,
C patches per group (K in the decoder), N patch side; patch stages are channels-first.
:class:`PatchMoments` is the one implementation of the per-patch moments, shared by
:func:`patch_stats` and the fused pass of :func:`parity.stats.errors.compare_arrays`.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Tuple

import numpy as np

from .reductions import angle, chunk_step

TOP_K = 5


def check_patch_shape(x: np.ndarray, what: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{what} needs a (B, C, N, N) patch stage, got shape {x.shape}")


def _top_k(values: np.ndarray, k: int) -> list:
    flat = values.ravel()
    k = min(k, flat.size)
    if k == 0:
        return []
    key = np.where(np.isnan(flat), np.inf, flat)  # a NaN patch ranks first
    idx = np.argpartition(-key, k - 1)[:k]
    idx = idx[np.argsort(-key[idx], kind="stable")]
    P = values.shape[1]
    return [(int(i // P), int(i % P), float(flat[i])) for i in idx]


def finish_patch_errors(red: Dict[str, np.ndarray], bp: Tuple[int, int], top_k: int) -> Dict[str, Any]:
    """Per-patch reductions (flat over B*C) -> the patch_errors dict."""
    ss_d, ss_r = red["ss_d"].reshape(bp), red["ss_r"].reshape(bp)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        rel_l2 = np.sqrt(ss_d) / np.sqrt(ss_r)
    rel_l2 = np.where(ss_r > 0, rel_l2, np.where(ss_d > 0, np.inf, 0.0))
    max_abs = red["max_abs"].reshape(bp)
    out = {"shape": list(bp), "max_abs": max_abs, "rel_l2": rel_l2, "worst": _top_k(max_abs, top_k)}
    if "amp_max_abs" in red:
        out["amp_max_abs"] = red["amp_max_abs"].reshape(bp)
        pmax, wmax = red["ref_max"].reshape(bp), red["w_max"].reshape(bp)
        out["phase_max_weighted"] = np.divide(wmax, pmax, out=np.zeros_like(wmax), where=pmax > 0)
    return out


def patch_errors(ref: Any, cand: Any, *, top_k: int = TOP_K) -> Dict[str, Any]:
    """Per-patch errors of a (B, C, N, N) stage.

    Returns ``max_abs`` and ``rel_l2`` (``||d|| / ||ref||`` per patch; inf for a zero reference
    patch with a nonzero difference), arrays of shape (B, C) on the complex difference for complex
    stages, which also get ``amp_max_abs`` and ``phase_max_weighted`` (as in error_stats) per
    patch; ``worst``: the top-k patches by max_abs as ``(b, c, value)``. A non-finite value
    (either side) makes its patch's errors inf, so such patches come first.
    """
    ref, cand = np.asarray(ref), np.asarray(cand)
    if ref.shape != cand.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape} vs candidate {cand.shape}; "
                         f"arrays are never broadcast")
    check_patch_shape(ref, "patch_errors")
    iscomplex = ref.dtype.kind == "c" or cand.dtype.kind == "c"
    wide = np.complex128 if iscomplex else np.float64
    B, P = ref.shape[:2]
    r = ref.astype(wide).reshape(B * P, -1)
    c = cand.astype(wide).reshape(B * P, -1)
    with np.errstate(invalid="ignore", over="ignore"):
        absd = np.abs(c - r)
        absd[~np.isfinite(absd)] = np.inf
        absr = np.abs(r)
        absr[~np.isfinite(absr)] = 0.0
        hw = absd.shape[1]
        red = {"max_abs": absd.max(axis=1) if hw else np.zeros(B * P),
               "ss_d": np.einsum("ij,ij->i", absd, absd), "ss_r": np.einsum("ij,ij->i", absr, absr)}
        if iscomplex:
            amp = np.abs(np.abs(c) - absr)
            amp[~np.isfinite(amp)] = np.inf
            w = np.abs(np.angle(c * np.conj(r))) * absr
            w[~np.isfinite(w)] = np.inf
            red.update(amp_max_abs=amp.max(axis=1) if hw else np.zeros(B * P),
                       w_max=w.max(axis=1) if hw else np.zeros(B * P),
                       ref_max=absr.max(axis=1) if hw else np.zeros(B * P))
    return finish_patch_errors(red, (B, P), top_k)


def _moments(x: np.ndarray, dev: np.ndarray) -> Tuple[np.ndarray, ...]:
    """Per-row mean, population variance, min, max of a float64 (rows, hw) chunk."""
    mean = x.mean(axis=1)
    np.subtract(x, mean[:, None], out=dev)
    var = np.einsum("ij,ij->i", dev, dev) / x.shape[1]
    return mean, var, x.min(axis=1), x.max(axis=1)


def _stats_from_moments(mean, var, mn, mx, hw: int, bp) -> Dict[str, Any]:
    n = mean.size * hw
    g_mean = float(mean.mean())
    # total sum of squares from per-patch moments (law of total variance)
    dm = mean - g_mean
    ss = float(hw * var.sum() + hw * np.einsum("i,i->", dm, dm))
    return {
        "per_patch": {"mean": mean.reshape(bp), "std": np.sqrt(var).reshape(bp), "min": mn.reshape(bp),
                      "max": mx.reshape(bp), "var_zero_mean": var.reshape(bp)},
        "global_mean": g_mean,
        "global_std": math.sqrt(ss / (n - 1)) if n > 1 else math.nan,
        "var_zero_mean": float(var.mean()),
    }


class PatchMoments:
    """Per-patch moments of one side of a (B, C, N, N) stage, filled chunk by chunk.

    The one implementation of the per-patch statistics: :func:`patch_stats` feeds it alone,
    the fused pass of :func:`compare_arrays` feeds one per side with the |x| and angle(x) it
    also needs for the differences. A chunk is a flat float64 run of whole patches (``ps`` the
    slice of patch indices it covers); the components are "value" (real stages) or
    "amplitude" and "phase" (complex stages).
    """

    def __init__(self, n_patches: int, hw: int, iscomplex: bool, step: int):
        self.hw = hw
        comps = ("amplitude", "phase") if iscomplex else ("value",)
        self.acc = {c: [np.empty(n_patches) for _ in range(4)] for c in comps}
        self.dev = np.empty(step)

    def add(self, comp: str, x: np.ndarray, ps: slice) -> None:
        x2 = x.reshape(-1, self.hw)
        for dst, src in zip(self.acc[comp], _moments(x2, self.dev[:x.size].reshape(x2.shape))):
            dst[ps] = src

    def result(self, bp: Tuple[int, int]) -> Dict[str, Any]:
        """The patch_stats dict for (B, C) = ``bp``."""
        st = {k: _stats_from_moments(*v, self.hw, bp) for k, v in self.acc.items()}
        st = st["value"] if "value" in st else st
        st["shape"] = [bp[0], bp[1], self.hw]
        return st


def patch_stats(x: Any) -> Dict[str, Any]:
    """Per-patch statistics of a (B, C, N, N) stage, in float64.

    Real stages: ``{"shape", "per_patch": {mean, std, min, max, var_zero_mean}, "global_mean",
    "global_std", "var_zero_mean"}`` where per-patch arrays are (B, C), std is the population
    std over the patch, ``var_zero_mean`` = mean((x - patch mean)^2) (per patch equal to std**2,
    globally the mean of the per-patch values), and ``global_std`` is unbiased (ddof=1, as
    torch.std). Complex stages: ``{"shape", "amplitude": {...}, "phase": {...}}`` with the same
    fields computed on |x| and on angle(x) in (-pi, pi].
    """
    x = np.asarray(x)
    check_patch_shape(x, "patch_stats")
    B, P = x.shape[:2]
    hw = x.shape[2] * x.shape[3]
    if B * P == 0 or hw == 0:
        raise ValueError(f"patch_stats needs a non-empty patch stage, got shape {x.shape}")
    flat = x.reshape(-1)
    iscomplex = x.dtype.kind == "c"
    step = chunk_step(hw)
    acc = PatchMoments(B * P, hw, iscomplex, step)
    if iscomplex:
        a_buf, p_buf, re, im = (np.empty(step) for _ in range(4))
    for i in range(0, flat.size, step):
        sl = slice(i, min(i + step, flat.size))
        ps = slice(sl.start // hw, sl.stop // hw)
        if iscomplex:
            k = sl.stop - sl.start
            xc = flat[sl].astype(np.complex128, copy=False)
            acc.add("amplitude", np.abs(xc, out=a_buf[:k]), ps)
            acc.add("phase", angle(xc, re[:k], im[:k], p_buf[:k]), ps)
        else:
            acc.add("value", flat[sl].astype(np.float64, copy=False), ps)
    return acc.result((B, P))
