"""Error statistics of one stage and per-patch statistics: pure NumPy functions, no I/O.

Glossary (forward-model.md): B batch, C patches per group (K in the decoder), N patch side,
M canvas side. Patch-shaped stages are (B, C|K, N, N), channels-first.

Conventions
-----------
* Everything is computed in float64 / complex128; ``d = cand - ref``.
* An element passes when ``|d| <= atol + atol_scaled * max|ref| + rtol * |ref|``; its *ratio* is
  ``|d| / threshold`` (0 where both are 0, inf where only the threshold is 0).
* ``margin`` is the factor by which the tolerance must be scaled for the stage to pass: the
  largest ratio when ``max_mismatch_fraction`` is 0, else the (allowed + 1)-th largest. The stage
  passes iff ``margin <= 1`` and no value is NaN/Inf (so, equivalently, iff at most
  ``floor(max_mismatch_fraction * n)`` elements fail).
* Relative differences ``|d| / |ref|`` are taken only where ``|ref| > tiny`` (``tiny =
  tiny_rel * max|ref|``); elements with ``|ref| == 0`` (``n_zero_ref``) or ``0 < |ref| <= tiny``
  (``n_tiny_ref``) are counted, not inflated with an epsilon.
* Non-finite values: NaN and Inf are counted on each side; any of them fails the stage (NaN ==
  NaN too); the statistics are then those of the elements finite on both sides, and the
  non-finite elements count as mismatches.
* Statistics are vectorised. Large stages are processed in chunks of ~64k elements (whole
  patches), so temporaries stay in cache; the Python loops run over chunks, quantiles or
  top-k entries, never over elements.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

TINY_REL = 1e-6
TOP_K = 5
_SMALL = 32768  # below this, order statistics use a plain np.partition
_CHUNK = 65536  # elements per chunk: temporaries stay in cache and fresh pages are few


# --------------------------------------------------------------------------- helpers
def _tol_fields(tol: Any) -> Tuple[float, float, float, float]:
    """(rtol, atol, atol_scaled, max_mismatch_fraction) from a Tolerance or a mapping."""
    get = tol.get if isinstance(tol, Mapping) else (lambda k, default=None: getattr(tol, k, default))
    try:
        vals = (float(get("rtol")), float(get("atol")), float(get("atol_scaled")),
                float(get("max_mismatch_fraction", 0.0) or 0.0))
    except TypeError:
        raise ValueError(f"tolerance must give rtol, atol and atol_scaled, got {tol!r}") from None
    if not all(math.isfinite(v) and v >= 0 for v in vals):
        raise ValueError(f"tolerance fields must be finite and >= 0, got {vals}")
    return vals


def allowed_mismatches(fraction: float, n: int) -> int:
    """Largest count k with k / n <= fraction (robust to floating-point rounding of fraction * n)."""
    if n <= 0:
        return 0
    k = min(int(math.floor(fraction * n)), n)
    while k < n and (k + 1) / n <= fraction:
        k += 1
    while k > 0 and k / n > fraction:
        k -= 1
    return k


def _unravel(flat: int, shape: Tuple[int, ...]) -> Tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(flat), shape)) if shape else ()


def _select(a: np.ndarray, ranks: Sequence[int]) -> np.ndarray:
    """Exact order statistics ``sort(a)[ranks]`` of a 1-d float array without a full sort.

    A strided sample brackets each group of nearby ranks; the bracket is verified by counting,
    and only the elements inside it are partitioned. Falls back to ``np.partition`` of the
    whole array when a bracket fails (e.g. on adversarially periodic data).
    """
    n = a.size
    ranks = sorted(int(r) for r in ranks)
    if n <= _SMALL:
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
    vals = dict(zip(ranks, _select(a, ranks)))
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


def _kth_largest(a: np.ndarray, k: int) -> float:
    """k-th largest element (k >= 1) of a 1-d array; 0 when k > a.size."""
    if k > a.size:
        return 0.0
    return float(_select(a, [a.size - k])[0])


def _ulps(absd: np.ndarray, absr: np.ndarray, grid: np.dtype, out: Optional[np.ndarray] = None) -> np.ndarray:
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


def _safe_div(a: float, b: float) -> float:
    if b > 0:
        return a / b
    return 0.0 if a == 0 else math.inf


class _ArgMax:
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


def _chunk_step(n_patch: Optional[int]) -> int:
    """Elements per chunk: about _CHUNK, a whole number of patches when n_patch is given."""
    if not n_patch:
        return _CHUNK
    return max(1, _CHUNK // n_patch) * n_patch


def min_passing_tolerance(tol: Tuple[float, float, float], margin: float, max_abs: float,
                          ref_max: float) -> Dict[str, float]:
    """The tolerance (rtol, atol, atol_scaled) scaled by ``margin``. When scaling cannot help (a
    zero tolerance against a nonzero difference), the smallest stage-relative tolerance
    ``atol_scaled = max_abs / max|ref|`` (or ``atol = max_abs`` for an all-zero reference)."""
    rtol, atol, atol_scaled = tol
    if math.isfinite(margin) and (rtol or atol or atol_scaled or margin == 0):
        return {"rtol": rtol * margin, "atol": atol * margin, "atol_scaled": atol_scaled * margin}
    if ref_max > 0 and math.isfinite(max_abs):
        return {"rtol": 0.0, "atol": 0.0, "atol_scaled": max_abs / ref_max}
    return {"rtol": 0.0, "atol": max_abs, "atol_scaled": 0.0}


def _empty_stats(shape, ref_dtype, cand_dtype, iscomplex) -> Dict[str, Any]:
    return {
        "verdict": "pass", "shape": tuple(shape), "n": int(np.prod(shape, dtype=np.int64)),
        "ref_dtype": ref_dtype, "cand_dtype": cand_dtype, "complex": iscomplex,
        "max_abs": 0.0, "worst_index": None, "ref_max_abs": 0.0,
        "max_rel": math.nan, "worst_rel_index": None, "rel_max": 0.0, "rel_l2": 0.0,
        "mismatch_count": 0, "mismatch_fraction": 0.0, "allowed_mismatches": 0,
        "quantiles": {"p50": 0.0, "p99": 0.0, "max": 0.0}, "margin": 0.0,
        "min_passing_tolerance": {"rtol": 0.0, "atol": 0.0, "atol_scaled": 0.0},
        "n_zero_ref": 0, "n_tiny_ref": 0, "tiny": 0.0,
        "nonfinite": {"ref_nan": 0, "ref_inf": 0, "cand_nan": 0, "cand_inf": 0, "elements": 0},
        "ulp": None, "complex_stats": None, "witness": None,
    }


# --------------------------------------------------------------------------- error statistics
def _angle(z: np.ndarray, re: np.ndarray, im: np.ndarray, out: np.ndarray) -> np.ndarray:
    """angle(z) in (-pi, pi] via contiguous copies (arctan2 on strided views is not vectorised)."""
    np.copyto(re, z.real)
    np.copyto(im, z.imag)
    return np.arctan2(im, re, out=out)


def _core(r_src: np.ndarray, c_src: np.ndarray, *, wide, tol, tiny_rel, k_fail, grid, n_patch, moments,
          out: Dict[str, Any], pos) -> Optional[Dict[str, Any]]:
    """Statistics of flat arrays r_src, c_src (any float/complex dtype, converted chunk by chunk).

    Two full-length float64 arrays are kept (|d|, later overwritten by ULPs, and |ref|);
    everything else works on cache-sized chunks. With ``n_patch`` (elements per patch) it also
    returns per-patch error reductions and, with ``moments``, the per-patch moments of both
    sides (the patch_stats inputs), sharing |x| and angle(x) with the error statistics. Returns
    None with ``out["max_abs"]`` non-finite when a value is NaN/Inf (the caller then filters
    and calls again).
    """
    rtol, atol, atol_scaled = tol
    iscomplex = wide is np.complex128
    n = r_src.size
    absd, absr = np.empty(n), np.empty(n)
    step = _chunk_step(n_patch)
    chunks = [slice(i, min(i + step, n)) for i in range(0, n, step)]
    best_d, ref_max, ss_d, ss_r = _ArgMax(), 0.0, 0.0, 0.0
    moments = bool(moments and n_patch)
    if iscomplex:
        best_amp, best_w, sum_w, sum_r = _ArgMax(), _ArgMax(), 0.0, 0.0
        tmp, re, im, ac_buf = (np.empty(step) for _ in range(4))
        if moments:
            pr_buf = np.empty(step)
    red: Dict[str, Any] = {}
    if n_patch:
        n_p = n // n_patch
        red = {"max_abs": np.empty(n_p), "ss_d": np.empty(n_p), "ss_r": np.empty(n_p)}
        if iscomplex:
            red.update(amp_max_abs=np.empty(n_p), w_max=np.empty(n_p), ref_max=np.empty(n_p))
    if moments:
        mom = {side: _PatchMoments(n_p, n_patch, iscomplex, step) for side in ("reference", "candidate")}

    # pass 1: |d|, |ref|, max, norms, complex amplitude / phase, per-patch reductions
    for sl in chunks:
        rc = r_src[sl].astype(wide, copy=False)
        cc = c_src[sl].astype(wide, copy=False)
        d = cc - rc
        ad, ar = np.abs(d, out=absd[sl]), np.abs(rc, out=absr[sl])
        best_d.update(ad, sl.start)
        if not math.isfinite(best_d.value):
            out["max_abs"] = best_d.value
            return None
        ref_max = max(ref_max, float(ar.max()))
        k = ad.size
        # sums of squares with einsum, not np.dot: OpenBLAS threads its dot above 10k elements,
        # which is slower than one core as soon as the machine is busy
        if n_patch:
            ps = slice(sl.start // n_patch, sl.stop // n_patch)
            ad2, ar2 = ad.reshape(-1, n_patch), ar.reshape(-1, n_patch)
            red["max_abs"][ps] = ad2.max(axis=1)
            red["ss_d"][ps] = np.einsum("ij,ij->i", ad2, ad2)
            red["ss_r"][ps] = np.einsum("ij,ij->i", ar2, ar2)
            ss_d += float(red["ss_d"][ps].sum())
            ss_r += float(red["ss_r"][ps].sum())
            if moments and not iscomplex:
                mom["reference"].add("value", rc, ps)
                mom["candidate"].add("value", cc, ps)
        else:
            ss_d += float(np.einsum("i,i->", ad, ad))
            ss_r += float(np.einsum("i,i->", ar, ar))
        if not iscomplex:
            continue
        sum_r += float(ar.sum())
        if moments:
            # |c|, angle(r), angle(c) serve both the patch moments and the differences;
            # |wrap(angle(c) - angle(r))| = min(a, 2 pi - a) with a = |angle(c) - angle(r)|
            ac = np.abs(cc, out=ac_buf[:k])
            pr = _angle(rc, re[:k], im[:k], pr_buf[:k])
            pc = _angle(cc, re[:k], im[:k], tmp[:k])
            mom["reference"].add("amplitude", ar, ps)
            mom["candidate"].add("amplitude", ac, ps)
            mom["reference"].add("phase", pr, ps)
            mom["candidate"].add("phase", pc, ps)
            amp = ac
            w = np.subtract(pc, pr, out=pc)
            np.abs(w, out=w)
            np.subtract(2 * np.pi, w, out=pr)
            np.minimum(w, pr, out=w)
        else:
            amp = np.abs(cc, out=ac_buf[:k])
            # wrapped phase difference angle(c conj(r)) in (-pi, pi]: exact for tiny differences
            np.conjugate(rc, out=d)
            d *= cc
            w = _angle(d, re[:k], im[:k], tmp[:k])
            np.abs(w, out=w)
        amp -= ar
        np.abs(amp, out=amp)
        best_amp.update(amp, sl.start)
        w *= ar  # |dphi| * |r|
        best_w.update(w, sl.start)
        sum_w += float(w.sum())
        if n_patch:
            red["amp_max_abs"][ps] = amp.reshape(-1, n_patch).max(axis=1)
            red["w_max"][ps] = w.reshape(-1, n_patch).max(axis=1)
            red["ref_max"][ps] = ar.reshape(-1, n_patch).max(axis=1)
    if moments:
        red["moments"] = mom

    max_abs, i_abs = best_d.value, best_d.index
    tiny = tiny_rel * ref_max
    base = atol + atol_scaled * ref_max
    out.update(max_abs=max_abs, worst_index=pos(i_abs), ref_max_abs=ref_max, tiny=tiny,
               rel_max=_safe_div(max_abs, ref_max), rel_l2=_safe_div(math.sqrt(ss_d), math.sqrt(ss_r)))
    q = quantiles(absd, (0.5, 0.99))
    out["quantiles"] = {"p50": float(q[0]), "p99": float(q[1]), "max": max_abs}
    if iscomplex:
        out["complex_stats"] = {
            "amp_max_abs": best_amp.value, "amp_worst_index": pos(best_amp.index),
            "amp_rel_max": _safe_div(best_amp.value, ref_max),
            "phase_max_weighted": _safe_div(best_w.value, ref_max), "phase_worst_index": pos(best_w.index),
            "phase_mean_weighted": _safe_div(sum_w, sum_r),
        }

    # tolerance: ratio = |d| / (atol + atol_scaled * max|ref| + rtol * |ref|); the stage passes
    # iff the k_fail-th largest ratio is <= 1
    ratio_full = None
    if rtol == 0.0:
        if base > 0:
            margin = max_abs / base
            mism = int(np.count_nonzero(absd > base)) if margin > 1 else 0
            if k_fail > 1:
                margin = _kth_largest(absd, k_fail) / base
        else:
            mism = int(np.count_nonzero(absd)) if max_abs > 0 else 0
            margin = math.inf if (max_abs > 0 and k_fail <= mism) else 0.0
        witness_ratio = [max_abs, float(absr[i_abs])]
    else:
        best_ratio, mism, witness_ratio = _ArgMax(), 0, None
        if k_fail > 1:
            ratio_full = np.empty(n)

    # pass 2: relative differences, ratios, ULPs (written over |d|)
    best_rel, best_ulp, n_small, n_zero, witness_rel = _ArgMax(), _ArgMax(), 0, 0, None
    scratch = np.empty(step)
    for sl in chunks:
        ad, ar = absd[sl], absr[sl]
        k = ad.size
        t = scratch[:k]
        big = ar > tiny
        nb = int(np.count_nonzero(big))
        if nb < k:
            n_small += k - nb
            n_zero += int(np.count_nonzero(ar == 0))
        if nb:
            with np.errstate(divide="ignore", invalid="ignore"):
                if nb < k:
                    t.fill(-1.0)  # excluded elements can never be the worst
                    np.divide(ad, ar, out=t, where=big)
                else:
                    np.divide(ad, ar, out=t)
            i = best_rel.update(t, sl.start)
            if i >= 0:
                witness_rel = [float(ad[i]), float(ar[i])]
        if rtol != 0.0:
            np.multiply(ar, rtol, out=t)
            t += base
            with np.errstate(divide="ignore", invalid="ignore"):
                np.divide(ad, t, out=t)
            if base == 0:  # zero threshold where |ref| == 0: 0/0 -> 0 (x/0 is already inf)
                np.nan_to_num(t, copy=False, nan=0.0, posinf=np.inf)
            i = best_ratio.update(t, sl.start)
            if i >= 0:
                witness_ratio = [float(ad[i]), float(ar[i])]
            if best_ratio.value > 1:
                mism += int(np.count_nonzero(t > 1))
            if ratio_full is not None:
                ratio_full[sl] = t
        if grid is not None:
            best_ulp.update(_ulps(ad, ar, grid, out=ad), sl.start)
    if rtol != 0.0:
        margin = best_ratio.value
        if k_fail > 1:
            margin = _kth_largest(ratio_full, k_fail)
    out.update(n_zero_ref=n_zero, n_tiny_ref=n_small - n_zero, margin=float(margin), mismatch_count=mism,
               witness={"abs": [max_abs, float(absr[i_abs])], "ratio": witness_ratio, "rel": witness_rel})
    if best_rel.index >= 0:
        out.update(max_rel=best_rel.value, worst_rel_index=pos(best_rel.index))
    if grid is not None:
        out["ulp"] = {"grid": grid.name, "max": best_ulp.value, "p99": float(quantiles(absd, (0.99,))[0])}
    return red


def compare_arrays(ref: Any, cand: Any, tol: Any, *, tiny_rel: float = TINY_REL, patches: bool = False,
                   top_k: int = TOP_K) -> Dict[str, Any]:
    """Everything compare() needs for one stage, sharing one chunked pass over the data.

    Returns ``{"errors": error_stats(...), "patch_errors": patch_errors(...) or None,
    "patch_stats": {"reference": patch_stats(ref), "candidate": patch_stats(cand)} or None}``;
    the patch entries are computed when ``patches`` (a (B, C, N, N) stage). Values equal those
    of the separate functions (up to float64 rounding: here the phase difference of complex
    patch stages is wrap(angle(c) - angle(r)), computed from the angles the patch statistics
    need, instead of angle(c conj(r)); both are accurate to ~1e-15 rad absolute).
    """
    ref, cand = np.asarray(ref), np.asarray(cand)
    if ref.shape != cand.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape} vs candidate {cand.shape}; "
                         f"arrays are never broadcast")
    if patches:
        _check_patch_shape(ref, "patch_errors")
    rtol, atol, atol_scaled, frac = _tol_fields(tol)
    iscomplex = ref.dtype.kind == "c" or cand.dtype.kind == "c"
    wide = np.complex128 if iscomplex else np.float64
    shape, n = ref.shape, ref.size
    out = _empty_stats(shape, ref.dtype.name, cand.dtype.name, iscomplex)
    out["allowed_mismatches"] = allowed = allowed_mismatches(frac, n)
    result: Dict[str, Any] = {"errors": out, "patch_errors": None, "patch_stats": None}
    if n == 0:
        if patches:
            result["patch_errors"] = patch_errors(ref, cand, top_k=top_k)
        return result
    grid = np.dtype(cand.dtype)
    grid = np.finfo(grid).dtype if grid.kind in "fc" else None
    grid = grid if grid is not None and grid.name in ("float32", "float64") else None
    kw = dict(wide=wide, tol=(rtol, atol, atol_scaled), tiny_rel=tiny_rel, grid=grid, out=out)
    n_patch = int(np.prod(shape[2:])) if patches else None

    with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf are detected and handled below
        red = _core(ref.reshape(-1), cand.reshape(-1), k_fail=allowed + 1, n_patch=n_patch, moments=patches,
                    pos=lambda i: _unravel(i, shape) if i >= 0 else None, **kw)
    nonfinite = out["nonfinite"]
    if red is None:
        # slow path: count NaN/Inf, then analyse the elements finite on both sides
        r, c = ref.reshape(-1).astype(wide), cand.reshape(-1).astype(wide)
        keep = np.isfinite(r) & np.isfinite(c)
        nonfinite.update(ref_nan=int(np.isnan(r).sum()), ref_inf=int(np.isinf(r).sum()),
                         cand_nan=int(np.isnan(c).sum()), cand_inf=int(np.isinf(c).sum()),
                         elements=int(n - np.count_nonzero(keep)))
        index = np.flatnonzero(keep)
        k_fail = max(allowed - nonfinite["elements"], 0) + 1
        pos = (lambda i: _unravel(index[i], shape) if i >= 0 else None)
        if index.size:
            with np.errstate(invalid="ignore", over="ignore"):
                again = _core(r[index], c[index], k_fail=k_fail, n_patch=None, moments=False, pos=pos, **kw)
            if again is None:  # finite inputs whose difference overflows float64
                out.update(margin=math.inf, rel_max=math.inf, rel_l2=math.inf,
                           quantiles={"p50": math.nan, "p99": math.nan, "max": math.inf})
        else:
            out.update(max_abs=math.nan, margin=math.inf, rel_max=math.nan, rel_l2=math.nan,
                       quantiles={"p50": math.nan, "p99": math.nan, "max": math.nan})
        if patches:
            result["patch_errors"] = patch_errors(ref, cand, top_k=top_k)
            result["patch_stats"] = {"reference": patch_stats(ref), "candidate": patch_stats(cand)}
    elif patches:
        bp = shape[:2]
        result["patch_errors"] = _finish_patch_errors(red, bp, top_k)
        result["patch_stats"] = {side: m.result(bp) for side, m in red["moments"].items()}

    out["mismatch_count"] += nonfinite["elements"]
    out["mismatch_fraction"] = out["mismatch_count"] / n
    passed = nonfinite["elements"] == 0 and out["margin"] <= 1.0
    out["verdict"] = "pass" if passed else "fail"
    out["min_passing_tolerance"] = min_passing_tolerance((rtol, atol, atol_scaled), out["margin"],
                                                         out["max_abs"], out["ref_max_abs"])
    return result


def error_stats(ref: Any, cand: Any, tol: Any, *, tiny_rel: float = TINY_REL) -> Dict[str, Any]:
    """Error statistics of one stage of any shape (``ref.shape == cand.shape``, else ValueError).

    Returns a dict: ``verdict`` ("pass"/"fail"), ``max_abs`` and ``worst_index`` (tuple),
    ``ref_max_abs``, ``max_rel`` and ``worst_rel_index`` (over ``|ref| > tiny``; NaN / None when no
    element qualifies), ``rel_max`` (max_abs / max|ref|), ``rel_l2``, ``mismatch_count``,
    ``mismatch_fraction``, ``allowed_mismatches``, ``quantiles`` {p50, p99, max} of |d|,
    ``margin``, ``min_passing_tolerance`` {rtol, atol, atol_scaled}, ``n_zero_ref``,
    ``n_tiny_ref``, ``tiny``, ``nonfinite`` {ref_nan, ref_inf, cand_nan, cand_inf, elements},
    ``ulp`` {grid, max, p99} (float32/float64/complex candidates, on the grid of the candidate's
    real dtype; |d| over the spacing of |ref|) or None, ``complex_stats`` {amp_max_abs,
    amp_worst_index, amp_rel_max, phase_max_weighted, phase_worst_index, phase_mean_weighted}
    or None, ``witness`` {abs, ratio, rel: [|d|, |ref|] at the worst |d|, the worst ratio and the
    worst relative difference (None when none)} (what :func:`parity.compare.recheck` needs to
    re-decide without the arrays, and what the message's "allowed" figures use), and
    ``shape``, ``n``, ``ref_dtype``, ``cand_dtype``, ``complex``.

    ``tol`` is a Tolerance or a mapping with rtol, atol, atol_scaled (and optionally
    max_mismatch_fraction).
    """
    return compare_arrays(ref, cand, tol, tiny_rel=tiny_rel)["errors"]


# --------------------------------------------------------------------------- per patch
def _check_patch_shape(x: np.ndarray, what: str) -> None:
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


def _finish_patch_errors(red: Dict[str, np.ndarray], bp: Tuple[int, int], top_k: int) -> Dict[str, Any]:
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
    _check_patch_shape(ref, "patch_errors")
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
    return _finish_patch_errors(red, (B, P), top_k)


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


class _PatchMoments:
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
    _check_patch_shape(x, "patch_stats")
    B, P = x.shape[:2]
    hw = x.shape[2] * x.shape[3]
    if B * P == 0 or hw == 0:
        raise ValueError(f"patch_stats needs a non-empty patch stage, got shape {x.shape}")
    flat = x.reshape(-1)
    iscomplex = x.dtype.kind == "c"
    step = _chunk_step(hw)
    acc = _PatchMoments(B * P, hw, iscomplex, step)
    if iscomplex:
        a_buf, p_buf, re, im = (np.empty(step) for _ in range(4))
    for i in range(0, flat.size, step):
        sl = slice(i, min(i + step, flat.size))
        ps = slice(sl.start // hw, sl.stop // hw)
        if iscomplex:
            k = sl.stop - sl.start
            xc = flat[sl].astype(np.complex128, copy=False)
            acc.add("amplitude", np.abs(xc, out=a_buf[:k]), ps)
            acc.add("phase", _angle(xc, re[:k], im[:k], p_buf[:k]), ps)
        else:
            acc.add("value", flat[sl].astype(np.float64, copy=False), ps)
    return acc.result((B, P))


# --------------------------------------------------------------------------- JSON
def encode_float(v: float) -> Any:
    """JSON form of a float: itself when finite, else the string "nan", "inf" or "-inf"."""
    v = float(v)
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def decode_float(v: Any) -> Any:
    """Inverse of :func:`encode_float` (None and other values pass through)."""
    if isinstance(v, str) and v in _NONFINITE:
        return _NONFINITE[v]
    return v


def to_json(obj: Any) -> Any:
    """Plain JSON types: arrays -> nested lists, NumPy scalars -> Python, tuples -> lists,
    non-finite floats -> "nan"/"inf"/"-inf" (strict JSON has no NaN)."""
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "fc":
            return to_json(obj.tolist())
        return obj.tolist()
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return encode_float(obj)
    if isinstance(obj, (complex, np.complexfloating)):
        return [encode_float(obj.real), encode_float(obj.imag)]
    return obj


def from_json(obj: Any) -> Any:
    """Inverse of :func:`to_json` for numeric containers: "nan"/"inf"/"-inf" -> floats."""
    if isinstance(obj, Mapping):
        return {k: from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_json(v) for v in obj]
    return decode_float(obj)
