"""Ptychography physics of the reference (forward-model.md §4-§6), TensorFlow ops.

Layout: images channels-last, ``(B, H, W, channels)``; offsets ``(B, C, 2)`` as
``[dx, dy]`` in pixels; the probe ``(N, N)``. The one internal layout change is in
:func:`far_field_amplitude`, which moves channels in front for ``tf.signal.fft2d`` and back.
All functions are dtype-generic (float32/complex64 or float64/complex128).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

MERGE_EPSILON = 0.001  # forward-model.md §4, the +0.001 of the merge denominator


def _real_dtype(x):
    return x.dtype.real_dtype


def combine_complex(amp, phase):
    """O = A cos(phi) + i A sin(phi)."""
    return tf.complex(amp * tf.math.cos(phase), amp * tf.math.sin(phase))


def _shift_matrices(t, size: int, dtype):
    """Bilinear shift operator along one axis as a (..., size, size) matrix.

    Row y holds the weights of the source pixels of output y for a shift by ``t``
    (``out[y] = in[y - t]``): ``1 - w`` at ``y + a`` and ``w`` at ``y + a + 1`` with
    ``a = floor(-t)``, ``w = -t - a``. ``tf.one_hot`` gives an all-zero row for an index
    outside ``[0, size)``, which is exactly the zero fill of each outside corner.
    """
    a = tf.math.floor(-t)
    w = (-t - a)[..., None, None]
    y = tf.range(size, dtype=tf.int32)
    start = tf.cast(a, tf.int32)[..., None] + y  # (..., size)
    first = tf.one_hot(start, size, dtype=dtype)
    second = tf.one_hot(start + 1, size, dtype=dtype)
    return (1 - w) * first + w * second


def translate(images, shifts):
    """T_t[I](y, x) = I(y - t_y, x - t_x), bilinear, zero fill per corner.

    images: (B, H, W, C) real or complex; shifts: (B, C, 2) ``[t_x, t_y]``, one per
    channel. Positive t moves content toward +column / +row.
    """
    real = _real_dtype(images)
    shifts = tf.cast(shifts, real)
    h, w = images.shape[1], images.shape[2]
    rows = _shift_matrices(shifts[..., 1], h, real)  # (B, C, H, H)
    cols = _shift_matrices(shifts[..., 0], w, real)  # (B, C, W, W)

    def apply(x):
        return tf.einsum("bcyh,bhwc,bcxw->byxc", rows, x, cols)

    if images.dtype.is_complex:
        return tf.complex(apply(tf.math.real(images)), apply(tf.math.imag(images)))
    return apply(images)


def pad_to(x, size: int):
    """Zero-pad the two image axes of (B, N, N, ch) symmetrically to (B, M, M, ch)."""
    n = x.shape[1]
    before = (size - n) // 2
    after = size - n - before
    return tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]])


def center_crop(x, size: int):
    """The centre (B, size, size, ch) crop of (B, M, M, ch), matching :func:`pad_to`."""
    m = x.shape[1]
    start = (m - size) // 2
    return x[:, start : start + size, start : start + size, :]


def central_mask(n: int) -> np.ndarray:
    """1 on the central N/2 square [N/4, 3N/4)^2, else 0."""
    m = np.zeros((n, n))
    m[n // 4 : 3 * n // 4, n // 4 : 3 * n // 4] = 1.0
    return m


def border_mask(n: int) -> np.ndarray:
    return 1.0 - central_mask(n)


def disk_mask(n: int) -> np.ndarray:
    """Hard disk: 1 where sqrt(x^2 + y^2) < N // 4, x, y = arange(N) - N//2 + 0.5."""
    c = np.arange(n) - n // 2 + 0.5
    return (np.hypot(c[:, None], c[None, :]) < n // 4).astype(np.float64)


def merge_patches(patches, offsets, size: int):
    """object_big merge (§4): (B, N, N, C) complex, (B, C, 2) -> canvas (B, M, M, 1).

    Offsets are recentred over all B*C patches; numerator not masked.
    """
    real = _real_dtype(patches)
    offsets = tf.cast(offsets, real)
    centred = offsets - tf.reduce_mean(offsets, axis=[0, 1], keepdims=True)
    num = tf.reduce_sum(translate(pad_to(patches, size), -centred), axis=-1, keepdims=True)
    n = patches.shape[1]
    mask = tf.constant(central_mask(n)[None, :, :, None], dtype=real)
    mask = tf.broadcast_to(pad_to(mask, size), [tf.shape(patches)[0], size, size, patches.shape[-1]])
    den = tf.reduce_sum(translate(mask, -centred), axis=-1, keepdims=True) + MERGE_EPSILON
    return num / tf.cast(den, patches.dtype)


def pad_patches(patches, size: int):
    """object_big=False path: (B, N, N, 1) -> (B, M, M, 1)."""
    return pad_to(patches, size)


def extract_patches(canvas, offsets, n: int):
    """(B, M, M, 1) canvas, (B, C, 2) offsets -> (B, N, N, C): crop_N(T_{+o}[canvas])."""
    channels = offsets.shape[1]
    tiled = tf.repeat(canvas, channels, axis=-1)
    return center_crop(translate(tiled, offsets), n)


def normalize_probe(probe, probe_scale: float):
    """P = probe / (probe_scale * mean_{NxN} |D * probe|), D the hard disk (§5)."""
    real = _real_dtype(probe)
    d = tf.constant(disk_mask(probe.shape[0]), dtype=real)
    norm = probe_scale * tf.reduce_mean(tf.abs(probe) * d)
    return probe / tf.cast(norm, probe.dtype)


def gaussian_taps(sigma: float) -> np.ndarray:
    """1-D taps softmax(-[1, 0, 1] / (2 sigma^2)) (float64)."""
    logits = -np.array([1.0, 0.0, 1.0]) / (2.0 * sigma**2)
    e = np.exp(logits - logits.max())
    return e / e.sum()


def smooth_complex(psi, sigma: float):
    """3x3 Gaussian (outer product of :func:`gaussian_taps`) with reflect padding."""
    taps = gaussian_taps(sigma)
    kernel = np.outer(taps, taps)
    padded = tf.pad(psi, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
    h, w = psi.shape[1], psi.shape[2]
    out = tf.zeros_like(psi)
    for i in range(3):
        for j in range(3):
            out += tf.cast(kernel[i, j], psi.dtype) * padded[:, i : i + h, j : j + w, :]
    return out


def illuminate(patches, probe, sigma: float, probe_mask: bool):
    """psi = P * e, optionally smoothed, then optionally masked by the disk (§5)."""
    psi = probe[None, :, :, None] * patches
    if sigma > 0:
        psi = smooth_complex(psi, sigma)
    if probe_mask:
        d = tf.constant(disk_mask(probe.shape[0])[None, :, :, None], dtype=_real_dtype(psi))
        psi = psi * tf.cast(d, psi.dtype)
    return psi


def far_field_amplitude(psi):
    """fftshift(|FFT2(psi)|) / N over the image axes of (B, N, N, C)."""
    n = psi.shape[1]
    first = tf.transpose(psi, [0, 3, 1, 2])  # FFT acts on the two innermost axes
    amp = tf.signal.fftshift(tf.abs(tf.signal.fft2d(first)), axes=(-2, -1)) / n
    return tf.transpose(amp, [0, 2, 3, 1])


def poisson_nll(pred_intensity, xs):
    """mean(I - Xs^2 log I), log-Poisson without the Stirling term."""
    return tf.reduce_mean(pred_intensity - tf.square(xs) * tf.math.log(pred_intensity))


def mean_abs_error(pred_amp, xs):
    return tf.reduce_mean(tf.abs(pred_amp - xs))

