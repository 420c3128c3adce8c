"""Chunk-wise building blocks of the error and per-patch statistics: pure NumPy, no I/O.

Exact order statistics without a full sort (:func:`select`, :func:`quantiles`,
:func:`kth_largest`), ULP distances, a running arg-max over chunks, the chunk size, and
angle(z) on contiguous copies. Large stages are processed in chunks of ~64k elements (whole
patches when a patch size is given), so temporaries stay in cache and fresh pages are few.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

SMALL = 32768  # below this, order statistics use a plain np.partition
CHUNK = 65536  # elements per chunk: temporaries stay in cache and fresh pages are few


def chunk_step(n_patch: Optional[int]) -> int:
    """Elements per chunk: about CHUNK, a whole number of patches when n_patch is given."""
    if not n_patch:
        return CHUNK
    return max(1, CHUNK // n_patch) * n_patch


def select(a: np.ndarray, ranks: Sequence[int]) -> np.ndarray:
    """Exact order statistics ``sort(a)[ranks]`` of a 1-d float array without a full sort.

    A strided sample brackets each group of nearby ranks; the bracket is verified by counting,
    and only the elements inside it are partitioned. Falls back to ``np.partition`` of the
    whole array when a bracket fails (e.g. on adversarially periodic data).
    """
    n = a.size
    ranks = sorted(int(r) for r in ranks)
    if n <= SMALL:
        return np.partition(a, ranks)[ranks]
    step = max(1, n // 16384)
    s = np.sort(a[::step])
    m = s.size
    groups = []  # [jl, ju, [ranks]] with overlapping sample brackets merged
    for rank in ranks:
        q = rank / (n - 1)
        j = q * (m - 1)
        delta = 5.0 * math.sqrt(m * max(q * (1 - q), 1.0 / m)) + 10.0
        jl, ju = int(math.floor(j - delta)), int(math.ceil(j + delta))
        if groups and jl <= groups[-1][1]:
            groups[-1][1] = max(groups[-1][1], ju)
            groups[-1][2].append(rank)
        else:
            groups.append([jl, ju, [rank]])
    vals = {}
    for jl, ju, group in groups:
        lo = s[jl] if jl >= 0 else -np.inf
        hi = s[ju] if ju < m else np.inf
        mask = None
        n_lt, n_le = 0, n
        if jl >= 0:
            mask = a >= lo
            n_lt = n - int(np.count_nonzero(mask))
        if ju < m:
            le = a <= hi
            n_le = int(np.count_nonzero(le))
            mask = le if mask is None else np.logical_and(mask, le, out=mask)
        if not (n_lt <= group[0] and group[-1] < n_le):
            vals.update(zip(group, np.partition(a, group)[group]))
        elif lo == hi:
            vals.update((r, lo) for r in group)
        else:
            band = a[mask] if mask is not None else a
            k = [r - n_lt for r in group]
            vals.update(zip(group, np.partition(band, k)[k]))
    return np.array([vals[r] for r in ranks], dtype=float)


def quantiles(a: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Same values as ``np.quantile(a, qs)`` (linear method) for a 1-d finite array, faster."""
    n = a.size
    if n == 0:
        return np.full(len(qs), np.nan)
    pos = [(n - 1) * q for q in qs]
    lo = [int(math.floor(p)) for p in pos]
    hi = [min(l + 1, n - 1) for l in lo]
    ranks = sorted(set(lo + hi))
    vals = dict(zip(ranks, select(a, ranks)))
    out = np.empty(len(qs))
    for i, (p, l, h) in enumerate(zip(pos, lo, hi)):
        a_, b_, t = vals[l], vals[h], p - l
        if a_ == b_ or t == 0:
            out[i] = a_
        elif not (math.isfinite(a_) and math.isfinite(b_)):
            out[i] = b_  # e.g. ULPs against a zero float64 reference are inf
        else:
            diff = b_ - a_
            out[i] = b_ - diff * (1 - t) if t >= 0.5 else a_ + diff * t  # as numpy's _lerp
    return out


def kth_largest(a: np.ndarray, k: int) -> float:
    """k-th largest element (k >= 1) of a 1-d array; 0 when k > a.size."""
    if k > a.size:
        return 0.0
    return float(select(a, [a.size - k])[0])


def ulps(absd: np.ndarray, absr: np.ndarray, grid: np.dtype, out: Optional[np.ndarray] = None) -> np.ndarray:
    """|d| in units of the spacing of |ref| rounded to ``grid`` (float32 or float64).

    spacing(x) = 2**max(e - p, emin) with x = m * 2**e (frexp), p the mantissa bits + 1 and
    2**emin the smallest subnormal; it equals np.spacing(x) for finite x >= 0.
    """
    fi = np.finfo(grid)
    p, emin = fi.nmant + 1, fi.minexp - fi.nmant
    with np.errstate(over="ignore", invalid="ignore"):
        mant, e = np.frexp(absr.astype(grid, copy=False))
    np.subtract(e, p, out=e)
    np.maximum(e, emin, out=e)
    zero = mant == 0
    if zero.any():
        e[zero] = emin
    np.negative(e, out=e)
    with np.errstate(over="ignore"):
        return np.ldexp(absd, e, out=out)


def safe_div(a: float, b: float) -> float:
    if b > 0:
        return a / b
    return 0.0 if a == 0 else math.inf


class ArgMax:
    """Running maximum over chunks with the flat index of its first occurrence (NaN wins)."""

    __slots__ = ("value", "index")

    def __init__(self) -> None:
        self.value, self.index = -math.inf, -1

    def update(self, x: np.ndarray, offset: int) -> int:
        """Fold in a chunk; returns the chunk-local index when it holds the new maximum, else -1."""
        if x.size == 0:
            return -1
        i = int(np.argmax(x))
        v = float(x[i])
        if v > self.value or (math.isnan(v) and not math.isnan(self.value)):
            self.value, self.index = v, offset + i
            return i
        return -1


def angle(z: np.ndarray, re: np.ndarray, im: np.ndarray, out: np.ndarray) -> np.ndarray:
    """angle(z) in (-pi, pi] via contiguous copies (arctan2 on strided views is not vectorised)."""
    np.copyto(re, z.real)
    np.copyto(im, z.imag)
    return np.arctan2(im, re, out=out)
