"""The faulty implementations the catalogue patches into ``torch_impl`` (PyTorch imported lazily).

Each ``*_patches`` function (or the factories :func:`merge_fault`, :func:`compute_patch`,
:func:`physics_patch`) returns the ``(owner, attribute, new value)`` triples of one fault; they
are called on entry to :func:`parity.faults.inject`, so a patch may wrap whatever the attribute
holds then. Patches go where the lookup happens: ``torch_impl.model`` calls the physics as
``physics.merge_patches(...)`` (module attribute), and the physics functions call each other
through their module globals (``translate``, ``_reflect_pad1``, ...).
"""
from __future__ import annotations

import math
from typing import List

from .core import stored


def _torch():
    import torch

    return torch


def _modules():
    from torch_impl import config, model, network, physics, weights

    return physics, network, model, weights, config


def _real_dtype(x):
    return x.real.dtype if x.is_complex() else x.dtype


def _div_real(z, r):
    """Complex ``z`` divided by a real tensor/scalar part by part (as the port does)."""
    torch = _torch()
    if not z.is_complex():
        return z / r
    return torch.complex(z.real / r, z.imag / r)


def _mul_real(z, r):
    torch = _torch()
    if not z.is_complex():
        return z * r
    return torch.complex(z.real * r, z.imag * r)


def _real_parts(fn, x, *args):
    torch = _torch()
    if x.is_complex():
        return torch.complex(fn(x.real, *args), fn(x.imag, *args))
    return fn(x, *args)


def _merge(patches, offsets, size, *, sign=-1.0, eps=None, recentre=True, comask=False, order=None):
    """The object_big merge with one thing changed (the knobs default to the reference's merge).

    sign: -1 translates by -o~ (reference), +1 by +o~. eps: denominator epsilon (default 0.001).
    recentre: subtract the batch mean of the offsets. comask: upstream torch's form
    ``num = sum_c T[p] * T[m]``, ``canvas = num * 1[cnt > 1e-6] / (cnt + eps)``.
    order: channel permutation applied to the offsets.
    """
    physics = _modules()[0]
    eps = physics.MERGE_EPSILON if eps is None else eps
    b, c, n, _ = patches.shape
    real = _real_dtype(patches)
    offsets = offsets.to(dtype=real, device=patches.device)
    if order is not None:
        offsets = offsets[:, list(order)]
    if recentre:
        offsets = offsets - offsets.mean(dim=(0, 1), keepdim=True)
    shifts = sign * offsets
    mask = physics.pad_to(physics.central_mask(n, dtype=real, device=patches.device), size).expand(b, c, size, size)
    tmask = physics.translate(mask, shifts)
    tpatch = physics.translate(physics.pad_to(patches, size), shifts)
    count = tmask.sum(dim=1)
    if comask:
        num = _mul_real(tpatch, tmask).sum(dim=1)
        return _div_real(_mul_real(num, (count > 1e-6).to(real)), count + eps)
    return _div_real(tpatch.sum(dim=1), count + eps)


def merge_fault(**knobs):
    def patches():
        physics = _modules()[0]

        def merge_patches(patches, offsets, size):
            return _merge(patches, offsets, size, **knobs)

        return [(physics, "merge_patches", merge_patches)]

    return patches


def _column_major(c: int) -> List[int]:
    g = int(round(math.sqrt(c)))
    return [(k % g) * g + k // g for k in range(c)]


def channel_order_patches():
    physics = _modules()[0]
    extract = physics.extract_patches

    def merge_patches(patches, offsets, size):
        return _merge(patches, offsets, size, order=_column_major(offsets.shape[1]))

    def extract_patches(canvas, offsets, n):
        return extract(canvas, offsets[:, _column_major(offsets.shape[1])], n)

    return [(physics, "merge_patches", merge_patches), (physics, "extract_patches", extract_patches)]


def extract_recentred_patches():
    physics = _modules()[0]
    extract = physics.extract_patches

    def extract_patches(canvas, offsets, n):
        return extract(canvas, offsets - offsets.mean(dim=(0, 1), keepdim=True), n)

    return [(physics, "extract_patches", extract_patches)]


def _sample_axis(img, pos, axis: int):
    """Linear interpolation of ``img`` (..., H, W) along ``axis`` (-1 or -2) at source positions
    ``pos`` (..., L) (one per output index, varying along the axis); zero fill per sample."""
    torch = _torch()
    size = img.shape[axis]
    start = torch.floor(pos)
    frac = pos - start
    start = start.to(torch.int64)
    out = None
    for idx, weight in ((start, 1 - frac), (start + 1, frac)):
        valid = (idx >= 0) & (idx < size)
        idx = idx.clamp(0, size - 1)
        if axis == -1:
            idx, valid, weight = idx[..., None, :], valid[..., None, :], weight[..., None, :]
        else:
            idx, valid, weight = idx[..., :, None], valid[..., :, None], weight[..., :, None]
        sample = torch.gather(img, img.ndim + axis, idx.expand(img.shape))
        term = weight * torch.where(valid, sample, torch.zeros((), dtype=img.dtype, device=img.device))
        out = term if out is None else out + term
    return out


def _translate_align_corners_flipped(images, shifts):
    """translate() as grid_sample computes it when the grid is normalised for
    ``align_corners=True`` but sampled with ``align_corners=False``: the source position of
    output pixel x is ``(x - t_x) * W / (W - 1) - 1/2`` (rows alike), i.e. a half-pixel offset
    plus a stretch by W/(W-1), instead of ``x - t_x``."""
    torch = _torch()
    if shifts.shape[-1] != 2:
        raise ValueError(f"translate: shifts must end in an axis of 2 ([t_x, t_y]), got shape {tuple(shifts.shape)}")

    def real(img, t):
        h, w = img.shape[-2:]
        batch = torch.broadcast_shapes(img.shape[:-2], t.shape[:-1])
        img = img.expand(*batch, h, w)
        t = t.to(dtype=img.dtype, device=img.device).expand(*batch, 2)
        xs = torch.arange(w, dtype=img.dtype, device=img.device)
        ys = torch.arange(h, dtype=img.dtype, device=img.device)
        pos_x = (xs - t[..., 0:1]) * (w / (w - 1)) - 0.5
        pos_y = (ys - t[..., 1:2]) * (h / (h - 1)) - 0.5
        return _sample_axis(_sample_axis(img, pos_x, -1), pos_y, -2)

    return _real_parts(real, images, shifts)


# ---- network -------------------------------------------------------------------------------
def kernel_transposed_patches():
    weights = _modules()[3]
    # neutral (kh, kw, in, out) -> (out, in, kw, kh) instead of (out, in, kh, kw)
    return [(weights, "KERNEL_TO_TORCH", (3, 2, 1, 0))]


def padding_off_by_one_patches():
    torch = _torch()
    from torch import nn

    network = _modules()[1]

    class OffByOnePadConv(nn.Conv2d):
        """3x3 conv whose 'same' padding is (0 before, 2 after) instead of (1, 1) on both axes."""

        def __init__(self, cin, cout):
            super().__init__(cin, cout, kernel_size=3, stride=1, padding=0, bias=True)

        def forward(self, x):
            return super().forward(torch.nn.functional.pad(x, (0, 2, 0, 2)))

    return [(network, "_conv3x3", lambda cin, cout: OffByOnePadConv(cin, cout))]


def upsample_bilinear_patches():
    torch = _torch()
    network = _modules()[1]

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    return [(network.ConvUp, "forward", forward)]


def amp_silu_patches():
    torch = _torch()
    network = _modules()[1]
    return [(network, "amplitude_activation", lambda name: torch.nn.functional.silu)]


def phase_no_pi_patches():
    torch = _torch()
    network = _modules()[1]
    return [(network, "phase_activation", torch.tanh)]


def _fit_channels(x, want: int):
    """Keep the first ``want`` channels, or zero-pad at the end up to ``want``."""
    torch = _torch()
    have = x.shape[1]
    if have >= want:
        return x[:, :want]
    pad = torch.zeros(x.shape[0], want - have, *x.shape[2:], dtype=x.dtype, device=x.device)
    return torch.cat((x, pad), dim=1)


def outer_slice_k_patches():
    """DecoderLast.forward with upstream's c_out = K split: outer = the last K channels, inner =
    all but the last K. The weights here are shaped for the reference's split (conv1 takes
    32n - 4 channels, the border ConvUp 4), so each slice is cut to its first channels or
    zero-padded at the end to fit (upstream needed its legacy channel override for the same
    reason). K = 4 changes nothing; K = 1 leaves the inner slice as it was (cut back to
    32n - 4) and feeds the border branch [z_last, 0, 0, 0]; K > 4 also shortens the inner slice."""
    torch = _torch()
    network = _modules()[1]
    original = stored(network.DecoderLast, "forward")

    def forward(self, z):
        if not self.pad_object:
            return original(self, z)
        k = self.conv1.out_channels  # K object channels
        inner = _fit_channels(z[:, :-k], self.conv1.in_channels)
        q = self.quarter
        x1 = torch.nn.functional.pad(self.activation(self.conv1(inner)), (q, q, q, q))
        if not self.probe_big:
            return x1
        outer = _fit_channels(z[:, -k:], self.up.conv1.in_channels)
        x2 = network.swish(self.conv2(self.up(outer))) * self.border
        return x1 + x2

    return [(network.DecoderLast, "forward", forward)]


def compute_patch(stage: str, replacement):
    """Patch ForwardModel._compute for one stage; the others go to the original."""

    def patches():
        model = _modules()[2]
        original = stored(model.ForwardModel, "_compute")

        def _compute(self, name, e):
            if name == stage:
                return replacement(self, e)
            return original(self, name, e)

        return [(model.ForwardModel, "_compute", _compute)]

    return patches


def input_scale_multiplied(self, e):
    return e["diffraction"] * self.scale


def canvas_no_buffer_patches():
    config = _modules()[4]
    # M = N + (g-1)*offset: upstream torch's canvas (buffer 0). The port's shape checks use the
    # same property, so the port stays self-consistent at the smaller size.
    return [(config.ModelConfig, "M", property(lambda self: self.N + (self.gridsize - 1) * self.offset))]


# ---- physics -------------------------------------------------------------------------------
def physics_patch(attr: str, make):
    def patches():
        physics = _modules()[0]
        return [(physics, attr, make(physics, stored(physics, attr)))]

    return patches


def combine_a_plus_i_phi(physics, original):
    torch = _torch()
    return lambda amp, phase: torch.complex(amp, phase)


def probe_norm_ones(physics, original):
    torch = _torch()
    return lambda probe, probe_scale: _div_real(probe, probe_scale * torch.mean(torch.abs(probe)))


def probe_double_scale(physics, original):
    return lambda probe, probe_scale: _div_real(original(probe, probe_scale), probe_scale)


def probe_mask_missing(physics, original):
    return lambda patches, probe, sigma, probe_mask: original(patches, probe, sigma, False)


def zero_pad1(physics, original):
    torch = _torch()
    return lambda x: torch.nn.functional.pad(x, (1, 1, 1, 1))


def no_fftshift(physics, original):
    torch = _torch()
    return lambda psi: torch.abs(torch.fft.fft2(psi, dim=(-2, -1))) / psi.shape[-1]


def fft_norm_n2(physics, original):
    return lambda psi: original(psi) / psi.shape[-1]


def far_field_float32(physics, original):
    torch = _torch()

    def far_field_amplitude(psi):
        low = psi.to(torch.complex64) if psi.is_complex() else psi.to(torch.float32)
        return original(low).to(_real_dtype(psi))

    return far_field_amplitude


def translate_flipped(physics, original):
    return _translate_align_corners_flipped
