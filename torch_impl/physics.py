"""Ptychography physics of the port (forward-model.md §4-§6): pure functions on tensors.

Layout: channels-first. Patch stacks are ``(B, C|K, N, N)``, canvases ``(B, M, M)``,
offsets ``(B, C, 2)`` as ``[dx, dy]`` in pixels (dx along columns, dy along rows), the
probe ``(N, N)``. Every function is dtype-generic (float32/complex64 or float64/complex128)
and creates its helper tensors (masks, kernels, indices) on the device and in the real
dtype of its input.
"""
from __future__ import annotations

import numpy as np
import torch

MERGE_EPSILON = 0.001  # forward-model.md §4, the +0.001 of the merge denominator


# ---- helpers --------------------------------------------------------------------------------
def _real_dtype(x: torch.Tensor) -> torch.dtype:
    return x.real.dtype if x.is_complex() else x.dtype


def _div_real(z: torch.Tensor, r) -> torch.Tensor:
    """Complex ``z`` divided by a real tensor/scalar, part by part (no complex division)."""
    if not z.is_complex():
        return z / r
    return torch.complex(z.real / r, z.imag / r)


def _mul_real(z: torch.Tensor, r) -> torch.Tensor:
    """Complex ``z`` times a real tensor/scalar, part by part."""
    if not z.is_complex():
        return z * r
    return torch.complex(z.real * r, z.imag * r)


def _as_real_parts(fn, x: torch.Tensor, *args) -> torch.Tensor:
    """Apply a real-linear ``fn`` to ``x``, or to its real and imaginary parts alike."""
    if x.is_complex():
        return torch.complex(fn(x.real, *args), fn(x.imag, *args))
    return fn(x, *args)


# ---- object ---------------------------------------------------------------------------------
def combine_complex(amp: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """O = A cos(phi) + i A sin(phi)."""
    return torch.complex(amp * torch.cos(phase), amp * torch.sin(phase))


def _interp_axis(img: torch.Tensor, start: torch.Tensor, w: torch.Tensor, axis: int) -> torch.Tensor:
    """Linear interpolation along one image axis (``-1`` columns, ``-2`` rows), zero fill.

    ``start`` (..., L) holds the first source index of every output index along the axis,
    ``w`` (...) the weight of the second sample (``start + 1``); a source index outside
    ``[0, L)`` contributes 0.
    """
    size = img.shape[axis]
    w = w[..., None, None]
    out = None
    for idx, weight in ((start, 1 - w), (start + 1, w)):
        valid = (idx >= 0) & (idx < size)
        idx = idx.clamp(0, size - 1)
        if axis == -1:
            idx, valid = idx[..., None, :], valid[..., None, :]
        else:
            idx, valid = idx[..., :, None], valid[..., :, None]
        sample = torch.gather(img, axis % img.ndim, idx.expand(img.shape))
        term = weight * torch.where(valid, sample, torch.zeros((), dtype=img.dtype, device=img.device))
        out = term if out is None else out + term
    return out


def _translate_real(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    h, w = images.shape[-2:]
    batch = torch.broadcast_shapes(images.shape[:-2], shifts.shape[:-1])
    images = images.expand(*batch, h, w)
    shifts = shifts.to(dtype=images.dtype, device=images.device).expand(*batch, 2)
    # out(y, x) = in(y - t_y, x - t_x): source = pixel + s with s = -t = a + f, a integer, f in [0, 1)
    source = -shifts
    a = torch.floor(source)
    frac = source - a
    a = a.to(torch.int64)
    cols = torch.arange(w, device=images.device) + a[..., 0:1]  # (..., W)
    rows = torch.arange(h, device=images.device) + a[..., 1:2]  # (..., H)
    along_cols = _interp_axis(images, cols, frac[..., 0], axis=-1)
    return _interp_axis(along_cols, rows, frac[..., 1], axis=-2)


def translate(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """T_t[I](y, x) = I(y - t_y, x - t_x): bilinear on the pixel grid, zero fill per corner.

    images: ``(..., H, W)`` real or complex; shifts: ``(..., 2)`` as ``[t_x, t_y]``, whose
    leading axes broadcast against the images' leading axes. Positive t moves content
    toward +column / +row; real and imaginary parts are translated alike. Each corner
    sample outside the image contributes 0. Separable: columns, then rows.
    """
    if shifts.shape[-1] != 2:
        raise ValueError(f"translate: shifts must end in an axis of 2 ([t_x, t_y]), got shape {tuple(shifts.shape)}")
    return _as_real_parts(_translate_real, images, shifts)


def pad_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad the last two axes symmetrically to ``size``: before (M-N)//2, after the rest."""
    h, w = x.shape[-2:]
    if size < h or size < w:
        raise ValueError(f"pad_to: cannot pad {(h, w)} down to {size}")
    top, left = (size - h) // 2, (size - w) // 2
    out = torch.zeros(*x.shape[:-2], size, size, dtype=x.dtype, device=x.device)
    out[..., top : top + h, left : left + w] = x
    return out


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The ``size`` x ``size`` crop of the last two axes starting at (M-N)//2 (inverse of :func:`pad_to`)."""
    h, w = x.shape[-2:]
    if size > h or size > w:
        raise ValueError(f"center_crop: cannot crop {(h, w)} to {size}")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


# ---- masks ----------------------------------------------------------------------------------
def central_mask(n: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """1 on the central N/2 square [N/4, 3N/4)^2, else 0."""
    m = torch.zeros(n, n, dtype=dtype, device=device)
    m[n // 4 : 3 * n // 4, n // 4 : 3 * n // 4] = 1
    return m


def border_mask(n: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """1 - :func:`central_mask`."""
    return 1 - central_mask(n, dtype=dtype, device=device)


def disk_mask(n: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Hard disk: 1 where sqrt(x^2 + y^2) < N // 4, with x, y = arange(N) - N//2 + 0.5."""
    c = torch.arange(n, dtype=torch.float64) - n // 2 + 0.5
    inside = torch.hypot(c[:, None], c[None, :]) < n // 4
    return inside.to(dtype=dtype, device=device)


# ---- merge / pad / extract ------------------------------------------------------------------
def merge_patches(patches: torch.Tensor, offsets: torch.Tensor, size: int) -> torch.Tensor:
    """object_big merge (§4): (B, C, N, N) complex, (B, C, 2) -> canvas (B, M, M).

    Offsets are recentred over ALL B*C patches; every sample gets its own canvas
    ``sum_c T_{-o~}[pad_M(p)] / (sum_c T_{-o~}[pad_M(m)] + 0.001)`` (numerator not masked).
    """
    if patches.ndim != 4 or offsets.shape != (*patches.shape[:2], 2):
        raise ValueError(
            f"merge_patches: expected patches (B, C, N, N) and offsets (B, C, 2), "
            f"got {tuple(patches.shape)} and {tuple(offsets.shape)}"
        )
    b, c, n, _ = patches.shape
    real = _real_dtype(patches)
    offsets = offsets.to(dtype=real, device=patches.device)
    centred = offsets - offsets.mean(dim=(0, 1), keepdim=True)
    num = translate(pad_to(patches, size), -centred).sum(dim=1)
    mask = pad_to(central_mask(n, dtype=real, device=patches.device), size).expand(b, c, size, size)
    den = translate(mask, -centred).sum(dim=1) + MERGE_EPSILON
    return _div_real(num, den)


def pad_patches(patches: torch.Tensor, size: int) -> torch.Tensor:
    """object_big=False path: (B, 1, N, N) -> (B, M, M)."""
    if patches.ndim != 4 or patches.shape[1] != 1:
        raise ValueError(f"pad_patches: expected patches (B, 1, N, N), got {tuple(patches.shape)}")
    return pad_to(patches[:, 0], size)


def extract_patches(canvas: torch.Tensor, offsets: torch.Tensor, n: int) -> torch.Tensor:
    """(B, M, M) canvas, (B, C, 2) offsets -> (B, C, N, N): crop_N(T_{+o_bc}[canvas_b]).

    The offsets are used as given (not recentred).
    """
    if canvas.ndim != 3 or offsets.ndim != 3 or offsets.shape[0] != canvas.shape[0] or offsets.shape[2] != 2:
        raise ValueError(
            f"extract_patches: expected canvas (B, M, M) and offsets (B, C, 2), "
            f"got {tuple(canvas.shape)} and {tuple(offsets.shape)}"
        )
    b, m, _ = canvas.shape
    tiled = canvas[:, None].expand(b, offsets.shape[1], m, m)
    return center_crop(translate(tiled, offsets), n)


# ---- probe and exit wave --------------------------------------------------------------------
def normalize_probe(probe: torch.Tensor, probe_scale: float) -> torch.Tensor:
    """P = probe / (probe_scale * mean_{NxN} |D * probe|), D the hard disk (always)."""
    d = disk_mask(probe.shape[-1], dtype=_real_dtype(probe), device=probe.device)
    norm = probe_scale * torch.mean(torch.abs(probe) * d)
    return _div_real(probe, norm)


def gaussian_taps(sigma: float, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """1-D taps softmax(-[1, 0, 1] / (2 sigma^2)), evaluated in float64, returned in ``dtype``."""
    if not sigma > 0:
        raise ValueError(f"gaussian_taps: sigma must be > 0, got {sigma!r}")
    logits = -np.array([1.0, 0.0, 1.0]) / (2.0 * float(sigma) ** 2)
    e = np.exp(logits - logits.max())
    return torch.tensor(e / e.sum(), dtype=dtype, device=device)


def _reflect_pad1(x: torch.Tensor) -> torch.Tensor:
    """Pad the last two axes by 1 with mirror padding that does not repeat the edge."""
    x = torch.cat((x[..., 1:2, :], x, x[..., -2:-1, :]), dim=-2)
    return torch.cat((x[..., :, 1:2], x, x[..., :, -2:-1]), dim=-1)


def _smooth_real(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    padded = _reflect_pad1(x)
    out = torch.zeros_like(x)
    for i in range(3):
        for j in range(3):
            out = out + kernel[i, j] * padded[..., i : i + h, j : j + w]
    return out


def smooth_complex(psi: torch.Tensor, sigma: float) -> torch.Tensor:
    """3x3 Gaussian (outer product of :func:`gaussian_taps`), reflect padding, over the last two axes.

    Real and imaginary parts are filtered alike.
    """
    taps = gaussian_taps(sigma)  # float64
    kernel = torch.outer(taps, taps).to(dtype=_real_dtype(psi), device=psi.device)
    return _as_real_parts(_smooth_real, psi, kernel)


def illuminate(patches: torch.Tensor, probe: torch.Tensor, sigma: float, probe_mask: bool) -> torch.Tensor:
    """psi = P * e; if sigma > 0 smooth; then if probe_mask multiply by the disk D (§5)."""
    psi = probe * patches
    if sigma > 0:
        psi = smooth_complex(psi, sigma)
    if probe_mask:
        psi = _mul_real(psi, disk_mask(probe.shape[-1], dtype=_real_dtype(psi), device=psi.device))
    return psi


# ---- far field and losses -------------------------------------------------------------------
def far_field_amplitude(psi: torch.Tensor) -> torch.Tensor:
    """fftshift(|FFT2(psi)|) / N over the last two axes (no input shift, no padding, no epsilon)."""
    n = psi.shape[-1]
    spectrum = torch.fft.fft2(psi, dim=(-2, -1))
    return torch.fft.fftshift(torch.abs(spectrum), dim=(-2, -1)) / n


def poisson_nll(pred_intensity: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """mean(I - Xs^2 log I) over all elements (log-Poisson without the Stirling term)."""
    return torch.mean(pred_intensity - torch.square(xs) * torch.log(pred_intensity))


def mean_abs_error(pred_amp: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """mean(|pred_amp - Xs|)."""
    return torch.mean(torch.abs(pred_amp - xs))


__all__ = [
    "MERGE_EPSILON",
    "combine_complex",
    "translate",
    "pad_to",
    "center_crop",
    "central_mask",
    "border_mask",
    "disk_mask",
    "merge_patches",
    "pad_patches",
    "extract_patches",
    "normalize_probe",
    "gaussian_taps",
    "smooth_complex",
    "illuminate",
    "far_field_amplitude",
    "poisson_nll",
    "mean_abs_error",
]
