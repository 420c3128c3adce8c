"""Error statistics of one stage: pure NumPy functions, no I/O.

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
  non-finite elements count as mismatches. No tolerance passes such a stage, so its
  ``min_passing_tolerance`` is None (its ``margin`` is still that of the finite elements).
* Statistics are vectorised. Large stages are processed in chunks of ~64k elements (whole
  patches), so temporaries stay in cache; the Python loops run over chunks, quantiles or
  top-k entries, never over elements.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from .patches import TOP_K, PatchMoments, check_patch_shape, finish_patch_errors, patch_errors, patch_stats
from .reductions import ArgMax, angle, chunk_step, kth_largest, quantiles, safe_div, ulps

TINY_REL = 1e-6


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
    step = chunk_step(n_patch)
    chunks = [slice(i, min(i + step, n)) for i in range(0, n, step)]
    best_d, ref_max, ss_d, ss_r = ArgMax(), 0.0, 0.0, 0.0
    moments = bool(moments and n_patch)
    if iscomplex:
        best_amp, best_w, sum_w, sum_r = ArgMax(), ArgMax(), 0.0, 0.0
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
        mom = {side: PatchMoments(n_p, n_patch, iscomplex, step) for side in ("reference", "candidate")}

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
            pr = angle(rc, re[:k], im[:k], pr_buf[:k])
            pc = angle(cc, re[:k], im[:k], tmp[:k])
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
            w = angle(d, re[:k], im[:k], tmp[:k])
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
               rel_max=safe_div(max_abs, ref_max), rel_l2=safe_div(math.sqrt(ss_d), math.sqrt(ss_r)))
    q = quantiles(absd, (0.5, 0.99))
    out["quantiles"] = {"p50": float(q[0]), "p99": float(q[1]), "max": max_abs}
    if iscomplex:
        out["complex_stats"] = {
            "amp_max_abs": best_amp.value, "amp_worst_index": pos(best_amp.index),
            "amp_rel_max": safe_div(best_amp.value, ref_max),
            "phase_max_weighted": safe_div(best_w.value, ref_max), "phase_worst_index": pos(best_w.index),
            "phase_mean_weighted": safe_div(sum_w, sum_r),
        }

    # tolerance: ratio = |d| / (atol + atol_scaled * max|ref| + rtol * |ref|); the stage passes
    # iff the k_fail-th largest ratio is <= 1
    ratio_full = None
    if rtol == 0.0:
        if base > 0:
            margin = max_abs / base
            mism = int(np.count_nonzero(absd > base)) if margin > 1 else 0
            if k_fail > 1:
                margin = kth_largest(absd, k_fail) / base
        else:
            mism = int(np.count_nonzero(absd)) if max_abs > 0 else 0
            margin = math.inf if (max_abs > 0 and k_fail <= mism) else 0.0
        witness_ratio = [max_abs, float(absr[i_abs])]
    else:
        best_ratio, mism, witness_ratio = ArgMax(), 0, None
        if k_fail > 1:
            ratio_full = np.empty(n)

    # pass 2: relative differences, ratios, ULPs (written over |d|)
    best_rel, best_ulp, n_small, n_zero, witness_rel = ArgMax(), ArgMax(), 0, 0, None
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
            best_ulp.update(ulps(ad, ar, grid, out=ad), sl.start)
    if rtol != 0.0:
        margin = best_ratio.value
        if k_fail > 1:
            margin = kth_largest(ratio_full, k_fail)
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
        check_patch_shape(ref, "patch_errors")
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
        result["patch_errors"] = finish_patch_errors(red, bp, top_k)
        result["patch_stats"] = {side: m.result(bp) for side, m in red["moments"].items()}

    out["mismatch_count"] += nonfinite["elements"]
    out["mismatch_fraction"] = out["mismatch_count"] / n
    passed = nonfinite["elements"] == 0 and out["margin"] <= 1.0
    out["verdict"] = "pass" if passed else "fail"
    if nonfinite["elements"] == 0:  # no tolerance passes a NaN or Inf
        out["min_passing_tolerance"] = min_passing_tolerance((rtol, atol, atol_scaled), out["margin"],
                                                             out["max_abs"], out["ref_max_abs"])
    else:
        out["min_passing_tolerance"] = None
    return result


def error_stats(ref: Any, cand: Any, tol: Any, *, tiny_rel: float = TINY_REL) -> Dict[str, Any]:
    """Error statistics of one stage of any shape (``ref.shape == cand.shape``, else ValueError).

    Returns a dict: ``verdict`` ("pass"/"fail"), ``max_abs`` and ``worst_index`` (tuple),
    ``ref_max_abs``, ``max_rel`` and ``worst_rel_index`` (over ``|ref| > tiny``; NaN / None when no
    element qualifies), ``rel_max`` (max_abs / max|ref|), ``rel_l2``, ``mismatch_count``,
    ``mismatch_fraction``, ``allowed_mismatches``, ``quantiles`` {p50, p99, max} of |d|,
    ``margin``, ``min_passing_tolerance`` {rtol, atol, atol_scaled} (None when a value is NaN/Inf:
    no tolerance passes), ``n_zero_ref``,
    ``n_tiny_ref``, ``tiny``, ``nonfinite`` {ref_nan, ref_inf, cand_nan, cand_inf, elements},
    ``ulp`` {grid, max, p99} (float32/float64/complex candidates, on the grid of the candidate's
    real dtype; |d| over the spacing of |ref|) or None, ``complex_stats`` {amp_max_abs,
    amp_worst_index, amp_rel_max, phase_max_weighted, phase_worst_index, phase_mean_weighted}
    or None, ``witness`` {abs, ratio, rel: [|d|, |ref|] at the worst |d|, the worst ratio and the
    worst relative difference (None when none)} (what the message's "allowed" figures use), and
    ``shape``, ``n``, ``ref_dtype``, ``cand_dtype``, ``complex``.

    ``tol`` is a Tolerance or a mapping with rtol, atol, atol_scaled (and optionally
    max_mismatch_fraction).
    """
    return compare_arrays(ref, cand, tol, tiny_rel=tiny_rel)["errors"]
