"""Independent float64 NumPy oracle of the physics (forward-model.md §4-§6).

Plain NumPy (and SciPy-free) code, written to be read rather than to be fast. Everything is
channels-first, in the canonical layout of :mod:`parity.stages`:

* patch stacks ``(B, C|K, N, N)``, canvases ``(B, M, M)``, probe ``(N, N)``;
* offsets ``(B, C, 2)`` holding ``[dx, dy]`` (dx along columns, dy along rows), in pixels.

Real inputs are computed in float64, complex ones in complex128, whatever dtype comes in.

This module is the oracle that the TensorFlow and PyTorch physics are tested against, so its
translation is deliberately written in a different style from a vectorised warp kernel: an
explicit loop over the four bilinear corners, each gathered with integer indices and an
in-bounds mask.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

#: Added to the merge denominator (forward-model.md §4).
MERGE_EPS = 0.001


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _as_float(x) -> np.ndarray:
    """float64 for real input, complex128 for complex input."""
    x = np.asarray(x)
    return x.astype(np.complex128 if np.iscomplexobj(x) else np.float64, copy=False)


def combine_complex(amp, phase) -> np.ndarray:
    """``A cos(phi) + i A sin(phi)`` (forward-model.md §4)."""
    amp = np.asarray(amp, dtype=np.float64)
    phase = np.asarray(phase, dtype=np.float64)
    return amp * np.cos(phase) + 1j * (amp * np.sin(phase))


# ---------------------------------------------------------------------------------------------
# translation
# ---------------------------------------------------------------------------------------------
def translate(images, shifts) -> np.ndarray:
    """Bilinear translation with zero fill: ``T_t[I](y, x) = I(y - t_y, x - t_x)``.

    ``images`` is ``(..., H, W)`` (real or complex), ``shifts`` is ``(..., 2)`` holding
    ``[t_x, t_y]``; the leading axes broadcast against each other. A positive shift moves the
    content toward +column / +row. Each of the four corner samples that falls outside the
    image contributes 0 (so half a pixel shift of an edge pixel keeps half of it).
    """
    images = _as_float(images)
    shifts = np.asarray(shifts, dtype=np.float64)
    if images.ndim < 2:
        raise ValueError(f"translate: images must have at least 2 axes, got shape {images.shape}")
    if shifts.ndim < 1 or shifts.shape[-1] != 2:
        raise ValueError(f"translate: shifts must end in an axis of 2 ([t_x, t_y]), got shape {shifts.shape}")
    H, W = images.shape[-2:]
    lead = np.broadcast_shapes(images.shape[:-2], shifts.shape[:-1])
    stack = np.broadcast_to(images, lead + (H, W)).reshape((-1, H, W))
    t = np.broadcast_to(shifts, lead + (2,)).reshape((-1, 2))
    L = stack.shape[0]

    # Source coordinates sampled by every output row / column, one row of them per image.
    src_y = np.arange(H, dtype=np.float64)[None, :] - t[:, 1:2]  # (L, H)
    src_x = np.arange(W, dtype=np.float64)[None, :] - t[:, 0:1]  # (L, W)
    y0 = np.floor(src_y)
    x0 = np.floor(src_x)
    fy = src_y - y0
    fx = src_x - x0
    y0 = y0.astype(np.int64)
    x0 = x0.astype(np.int64)

    image_index = np.arange(L)[:, None, None]
    out = np.zeros((L, H, W), dtype=stack.dtype)
    corners = (
        (0, 0, (1.0 - fy), (1.0 - fx)),
        (0, 1, (1.0 - fy), fx),
        (1, 0, fy, (1.0 - fx)),
        (1, 1, fy, fx),
    )
    for dy, dx, weight_y, weight_x in corners:
        rows = y0 + dy  # (L, H)
        cols = x0 + dx  # (L, W)
        row_ok = (rows >= 0) & (rows < H)
        col_ok = (cols >= 0) & (cols < W)
        inside = row_ok[:, :, None] & col_ok[:, None, :]  # (L, H, W)
        safe_rows = np.clip(rows, 0, H - 1)
        safe_cols = np.clip(cols, 0, W - 1)
        sample = stack[image_index, safe_rows[:, :, None], safe_cols[:, None, :]]
        weight = weight_y[:, :, None] * weight_x[:, None, :]
        out += np.where(inside, weight * sample, 0.0)
    return out.reshape(lead + (H, W))


# ---------------------------------------------------------------------------------------------
# padding, cropping, masks
# ---------------------------------------------------------------------------------------------
def pad_to(x, M: int) -> np.ndarray:
    """Zero-pad the last two axes from N to M: ``(M - N) // 2`` before, the rest after."""
    x = _as_float(x)
    N_h, N_w = x.shape[-2:]
    if M < N_h or M < N_w:
        raise ValueError(f"pad_to: cannot pad {x.shape[-2:]} down to {M}")
    bh, bw = (M - N_h) // 2, (M - N_w) // 2
    width = [(0, 0)] * (x.ndim - 2) + [(bh, M - N_h - bh), (bw, M - N_w - bw)]
    return np.pad(x, width, mode="constant")


def center_crop(x, N: int) -> np.ndarray:
    """Centre N x N crop of the last two axes, starting at ``(M - N) // 2``."""
    x = _as_float(x)
    M_h, M_w = x.shape[-2:]
    if N > M_h or N > M_w:
        raise ValueError(f"center_crop: cannot crop {x.shape[-2:]} to {N}")
    sh, sw = (M_h - N) // 2, (M_w - N) // 2
    return x[..., sh:sh + N, sw:sw + N].copy()


def central_mask(N: int) -> np.ndarray:
    """1 on the central N/2 square ``[N/4, 3N/4)^2``, 0 elsewhere (float64 (N, N))."""
    m = np.zeros((N, N), dtype=np.float64)
    lo, hi = N // 4, N // 4 + N // 2
    m[lo:hi, lo:hi] = 1.0
    return m


def border_mask(N: int) -> np.ndarray:
    """0 on the central N/2 square, 1 outside it."""
    return 1.0 - central_mask(N)


def disk_mask(N: int) -> np.ndarray:
    """Hard disk D: 1 where ``sqrt(x^2 + y^2) < N // 4``, ``x, y = arange(N) - N//2 + 0.5``."""
    c = np.arange(N, dtype=np.float64) - N // 2 + 0.5
    r = np.sqrt(c[None, :] ** 2 + c[:, None] ** 2)
    return (r < N // 4).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# object: merge, pad, extract (§4)
# ---------------------------------------------------------------------------------------------
def _check_offsets(offsets, B: int, C: int) -> np.ndarray:
    offsets = np.asarray(offsets, dtype=np.float64)
    if offsets.shape != (B, C, 2):
        raise ValueError(f"offsets must have shape (B, C, 2) = {(B, C, 2)}, got {offsets.shape}")
    return offsets


def merge_patches(patches, offsets, M: int) -> np.ndarray:
    """Merge ``(B, C, N, N)`` complex patches into one ``(B, M, M)`` canvas per sample.

    The offsets are recentred over all ``B*C`` patches; each patch is padded to M and
    translated by ``-o~``; the sum is divided by the summed translated central masks + 0.001.
    The numerator is not masked.
    """
    patches = _as_float(patches)
    if patches.ndim != 4 or patches.shape[-1] != patches.shape[-2]:
        raise ValueError(f"merge_patches: patches must be (B, C, N, N), got {patches.shape}")
    B, C, N, _ = patches.shape
    offsets = _check_offsets(offsets, B, C)
    centred = offsets - offsets.reshape(-1, 2).mean(axis=0)
    numerator = translate(pad_to(patches, M), -centred).sum(axis=1)
    mask = np.broadcast_to(pad_to(central_mask(N), M), (B, C, M, M))
    denominator = translate(mask, -centred).sum(axis=1) + MERGE_EPS
    return numerator / denominator


def pad_patches(patches, M: int) -> np.ndarray:
    """Pad path (``object_big=False``): ``(B, 1, N, N)`` -> ``(B, M, M)``."""
    patches = _as_float(patches)
    if patches.ndim != 4 or patches.shape[1] != 1:
        raise ValueError(f"pad_patches: patches must be (B, 1, N, N), got {patches.shape}")
    return pad_to(patches[:, 0], M)


def extract_patches(canvas, offsets, N: int) -> np.ndarray:
    """``e_bc = crop_N(T_{+o_bc}[canvas_b])`` with the offsets as given (not recentred)."""
    canvas = _as_float(canvas)
    if canvas.ndim != 3:
        raise ValueError(f"extract_patches: canvas must be (B, M, M), got {canvas.shape}")
    B = canvas.shape[0]
    offsets = np.asarray(offsets, dtype=np.float64)
    if offsets.ndim != 3 or offsets.shape[0] != B or offsets.shape[2] != 2:
        raise ValueError(f"extract_patches: offsets must be (B={B}, C, 2), got {offsets.shape}")
    shifted = translate(canvas[:, None, :, :], offsets)  # (B, C, M, M)
    return center_crop(shifted, N)


# ---------------------------------------------------------------------------------------------
# probe and exit wave (§5)
# ---------------------------------------------------------------------------------------------
def normalize_probe(probe, probe_scale: float) -> np.ndarray:
    """``P = probe / (probe_scale * mean_{N x N} |D * probe|)``; D is always the hard disk."""
    probe = np.asarray(probe, dtype=np.complex128)
    N = probe.shape[-1]
    norm = np.mean(np.abs(disk_mask(N) * probe))
    return probe / (float(probe_scale) * norm)


def gaussian_taps(sigma: float) -> np.ndarray:
    """1-D taps ``softmax(-[1, 0, 1] / (2 sigma^2))`` (sum to 1). sigma = 0 gives [0, 1, 0]."""
    sigma = float(sigma)
    if sigma < 0 or not np.isfinite(sigma):
        raise ValueError(f"gaussian_taps: sigma must be finite and >= 0, got {sigma}")
    if sigma == 0.0:
        return np.array([0.0, 1.0, 0.0])
    logits = -np.array([1.0, 0.0, 1.0]) / (2.0 * sigma * sigma)
    e = np.exp(logits - logits.max())
    return e / e.sum()


def smooth_complex(psi, sigma: float) -> np.ndarray:
    """3x3 Gaussian smoothing of the last two axes, kernel ``outer(taps, taps)``.

    Reflect padding in the NumPy / TensorFlow sense (the edge pixel is not repeated; SciPy
    calls this mode ``'mirror'``). Real and imaginary parts are smoothed alike.
    """
    psi = _as_float(psi)
    taps = gaussian_taps(sigma)
    kernel = np.outer(taps, taps)
    H, W = psi.shape[-2:]
    width = [(0, 0)] * (psi.ndim - 2) + [(1, 1), (1, 1)]
    padded = np.pad(psi, width, mode="reflect")
    out = np.zeros_like(psi)
    for i in range(3):
        for j in range(3):
            out = out + kernel[i, j] * padded[..., i:i + H, j:j + W]
    return out


def illuminate(patches, probe, sigma: float = 0.0, probe_mask: bool = False) -> np.ndarray:
    """Exit wave ``psi = P * e``; smoothed if ``sigma > 0``; then times D if ``probe_mask``.

    ``probe`` is the *normalised* probe (see :func:`normalize_probe`).
    """
    patches = np.asarray(patches, dtype=np.complex128)
    probe = np.asarray(probe, dtype=np.complex128)
    psi = probe * patches
    if sigma > 0:
        psi = smooth_complex(psi, sigma)
    if probe_mask:
        psi = psi * disk_mask(probe.shape[-1])
    return psi


# ---------------------------------------------------------------------------------------------
# far field and losses (§6)
# ---------------------------------------------------------------------------------------------
def far_field_amplitude(psi) -> np.ndarray:
    """``fftshift(|FFT2(psi)|) / N`` over the last two axes (no input shift, no padding)."""
    psi = np.asarray(psi, dtype=np.complex128)
    N = psi.shape[-1]
    spectrum = np.fft.fft2(psi, axes=(-2, -1))
    return np.fft.fftshift(np.abs(spectrum), axes=(-2, -1)) / N


def poisson_nll(pred_intensity, diffraction) -> float:
    """``mean(I - Xs^2 log I)`` over all elements (no Stirling term)."""
    intensity = np.asarray(pred_intensity, dtype=np.float64)
    xs = np.asarray(diffraction, dtype=np.float64)
    return float(np.mean(intensity - xs ** 2 * np.log(intensity)))


def mean_abs_error(pred_amp, diffraction) -> float:
    """``mean(|pred_amp - Xs|)``."""
    return float(np.mean(np.abs(np.asarray(pred_amp, np.float64) - np.asarray(diffraction, np.float64))))


# ---------------------------------------------------------------------------------------------
# the physics chain
# ---------------------------------------------------------------------------------------------
def physics_forward(
    object_patches,
    offsets,
    probe_raw,
    *,
    N: int,
    M: int,
    object_big: bool,
    probe_scale: float,
    sigma: float,
    probe_mask: bool,
    scale: float,
    diffraction: Optional[np.ndarray] = None,
) -> Dict[str, object]:
    """Physics stages from ``object_patches`` to ``pred_intensity`` (stages.py names).

    ``object_patches`` is ``(B, K, N, N)`` complex (K = C when ``object_big``, else 1),
    ``offsets`` ``(B, C, 2)``, ``probe_raw`` ``(N, N)``. ``scale`` is the intensity scale s.
    When ``diffraction`` (the scaled ``Xs``, ``(B, C, N, N)``) is given, ``loss_nll`` and
    ``loss_mae`` are added.
    """
    object_patches = np.asarray(object_patches, dtype=np.complex128)
    offsets = np.asarray(offsets, dtype=np.float64)
    if object_patches.shape[-2:] != (N, N):
        raise ValueError(f"object_patches must end in ({N}, {N}), got {object_patches.shape}")
    if object_big:
        canvas = merge_patches(object_patches, offsets, M)
    else:
        canvas = pad_patches(object_patches, M)
    out: Dict[str, object] = {}
    out["canvas"] = canvas
    out["trimmed_object"] = center_crop(canvas, N)
    out["extracted_patches"] = extract_patches(canvas, offsets, N)
    out["probe"] = normalize_probe(probe_raw, probe_scale)
    out["exit_wave"] = illuminate(out["extracted_patches"], out["probe"], sigma, probe_mask)
    out["far_field_amp"] = far_field_amplitude(out["exit_wave"])
    out["pred_amp"] = float(scale) * out["far_field_amp"]
    out["pred_intensity"] = out["pred_amp"] ** 2
    if diffraction is not None:
        out["loss_nll"] = poisson_nll(out["pred_intensity"], diffraction)
        out["loss_mae"] = mean_abs_error(out["pred_amp"], diffraction)
    return out
