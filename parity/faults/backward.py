"""Backward-only faults: port mistakes whose forward pass is bit for bit the clean port's on
every stage, but whose gradient is wrong (PyTorch imported lazily, inside the patches).

A forward comparison cannot see any of them; a gradient comparison must. Each entry's
``expected_stage`` is the adjoint stage where the gradient first goes wrong in reverse
pipeline order (loss -> ... -> input_scaled): a mistake in the backward of the computation
that produces stage X corrupts the gradient of X's *inputs*, so it shows at the latest of
those inputs. ``expected_weight`` names the neutral weight whose gradient goes wrong first in
:func:`parity.faults.gradprobe.adjoint_order` (each network stage's gradient followed by the
gradients of the weights that compute it) when a weight goes wrong before any stage does.

Why the forward stays exact: a detached tensor or a block run under ``torch.no_grad()`` holds
the same values; ``x + (r - x).detach()`` with ``r == x`` adds an exact zero; a custom
``torch.autograd.Function`` computes its forward with the clean port's operations; ``|A|``
equals ``A`` bit for bit where ``A >= 0``; an in-place ``mul_`` under ``no_grad`` computes
the same product as ``s * x``. ``tests/unit/test_backward_faults.py`` checks every stage of
every applicable default case.
"""
from __future__ import annotations

import math

from .core import GRID, Applies, Fault, config_is, stored
from .patches import _modules, _torch, compute_patch, physics_patch


# ---- network -------------------------------------------------------------------------------
def border_branch_no_grad_patches():
    """DecoderLast.forward with the probe_big border branch computed under ``torch.no_grad()``."""
    torch = _torch()
    network = _modules()[1]
    original = stored(network.DecoderLast, "forward")

    def forward(self, z):
        if not (self.pad_object and self.probe_big):
            return original(self, z)
        inner = z[:, : -self.OUTER_CHANNELS]
        outer = z[:, -self.OUTER_CHANNELS:]
        q = self.quarter
        x1 = torch.nn.functional.pad(self.activation(self.conv1(inner)), (q, q, q, q))
        with torch.no_grad():
            x2 = network.swish(self.conv2(self.up(outer))) * self.border
        return x1 + x2

    return [(network.DecoderLast, "forward", forward)]


# ---- object --------------------------------------------------------------------------------
def amp_detached(physics, original):
    return lambda amp, phase: original(amp.detach(), phase)


def amp_modulus(physics, original):
    """O = |A| cos(phi) + i |A| sin(phi): the amplitude as the modulus of a polar form."""
    torch = _torch()
    return lambda amp, phase: original(torch.abs(amp), phase)


def phase_wrap_straight_through(physics, original):
    """phi wrapped to [-pi, pi] as phi - 2 pi round(phi / 2 pi), the round straight-through."""
    torch = _torch()

    def combine_complex(amp, phase):
        turns = phase / (2 * math.pi)
        rounded = turns + (torch.round(turns) - turns).detach()
        return original(amp, phase - 2 * math.pi * rounded)

    return combine_complex


# ---- translation ---------------------------------------------------------------------------
def translate_backward_same_shift(physics, original):
    """_translate_real as a custom autograd Function whose backward translates the gradient by
    +t, like the forward, instead of applying the adjoint (a translation by -t)."""
    torch = _torch()

    class Translate(torch.autograd.Function):
        @staticmethod
        def forward(ctx, images, shifts):
            ctx.save_for_backward(shifts)
            ctx.shape = images.shape
            return original(images, shifts)

        @staticmethod
        def backward(ctx, grad):
            (shifts,) = ctx.saved_tensors
            return original(grad, shifts).sum_to_size(ctx.shape), None

    return Translate.apply


# ---- exit wave and far field ---------------------------------------------------------------
def object_detached_in_illumination(physics, original):
    return lambda patches, probe, sigma, probe_mask: original(patches.detach(), probe, sigma, probe_mask)


def far_field_function(*, adjoint_scale: bool = True, conjugate: bool = False):
    """far_field_amplitude as a custom autograd Function with a hand-written backward.

    Forward: the clean port's ``fftshift(|fft2(psi)|) / N``. Backward (PyTorch's convention,
    grad = dL/dRe + i dL/dIm): g_S = ifftshift(g) / N * S/|S| (with ``conjugate``: * conj(S)/|S|,
    the other convention's phase factor), g_psi = N^2 ifft2(g_S), the adjoint of the unnormalised
    fft2 (without ``adjoint_scale``: ifft2(g_S), its inverse). With the defaults it is the correct
    backward (a unit test checks it against autograd).
    """

    def make(physics, original):
        torch = _torch()

        class FarFieldAmplitude(torch.autograd.Function):
            @staticmethod
            def forward(ctx, psi):
                n = psi.shape[-1]
                spectrum = torch.fft.fft2(psi, dim=(-2, -1))
                ctx.save_for_backward(spectrum)
                return torch.fft.fftshift(torch.abs(spectrum), dim=(-2, -1)) / n

            @staticmethod
            def backward(ctx, grad):
                (spectrum,) = ctx.saved_tensors
                n = grad.shape[-1]
                unit = torch.sgn(spectrum)
                g_spec = torch.fft.ifftshift(grad, dim=(-2, -1)) / n * (unit.conj() if conjugate else unit)
                g_psi = torch.fft.ifft2(g_spec, dim=(-2, -1))
                return g_psi * (n * n) if adjoint_scale else g_psi

        return FarFieldAmplitude.apply

    return make


def pred_amp_scaled_in_place(self, e):
    """pred_amp = s * far_field_amp, the scale applied in place under ``torch.no_grad()``."""
    torch = _torch()
    out = e["far_field_amp"].clone()
    with torch.no_grad():
        out.mul_(self.scale)
    return out


def nll_log_detached(physics, original):
    """mean(I - Xs^2 log I) with log I taken of a detached I."""
    torch = _torch()
    return lambda pred, xs: torch.mean(pred - torch.square(xs) * torch.log(pred.detach()))


# ---- the catalogue -------------------------------------------------------------------------
PAD_OBJECT = config_is("pad_object", lambda c: c.pad_object)
PROBE_BIG = config_is("probe_big", lambda c: c.probe_big)
#: The amplitude is >= 0 everywhere (so |A| == A) and exactly 0 on the zero-padded border, and
#: another patch's probe covers that border (gridsize >= 2).
_AMP_NONNEGATIVE_PADDED = config_is(
    "pad_object and not probe_big and amp_activation in (sigmoid, softplus, relu)",
    lambda c: c.pad_object and not c.probe_big and c.amp_activation in ("sigmoid", "softplus", "relu")) & GRID


def _bw(name, description, expected_stage, patches, *, applies: Applies = None, weight="", network=False,
        losses=("loss_nll", "loss_mae"), upstream="", notes=""):
    kw = {} if applies is None else {"applies": applies}
    return Fault(name, description, expected_stage, patches, network=network, upstream=upstream, notes=notes,
                 kind="backward", expected_weight=weight, losses=tuple(losses), **kw)


BACKWARD_FAULTS = (
    _bw("nll_log_detached",
        "Poisson NLL computed with log(I) of a detached I: dL/dI = 1/n instead of (1 - Xs^2/I)/n",
        "pred_intensity", physics_patch("poisson_nll", nll_log_detached), losses=("loss_nll",),
        notes="the loss's own backward is wrong, so the first wrong adjoint is its input pred_intensity; "
              "loss_mae does not use it"),
    _bw("intensity_scale_no_grad",
        "intensity scale applied to pred_amp in place under torch.no_grad(): dL/d far_field_amp misses the factor s",
        "far_field_amp", compute_patch("pred_amp", pred_amp_scaled_in_place),
        upstream="pitfall: the intensity scale outside the graph (a stop-gradient on the scale)",
        notes="pred_amp's own gradient is right; the VJP of pred_amp = s * far_field_amp is the identity"),
    _bw("far_field_backward_inverse_fft",
        "hand-written |FFT| backward applies ifft2 (the inverse) instead of N^2 ifft2 (the adjoint of fft2)",
        "exit_wave", physics_patch("far_field_amplitude", far_field_function(adjoint_scale=False)),
        notes="far_field_amp's gradient is right; the VJP of |FFT| hands exit_wave (and so everything before it) "
              "1/N^2 of the right gradient"),
    _bw("far_field_backward_conjugate",
        "hand-written |FFT| backward uses conj(S)/|S| (the other framework's complex-gradient convention) "
        "instead of S/|S|",
        "exit_wave", physics_patch("far_field_amplitude", far_field_function(conjugate=True)),
        upstream="complex gradient conventions: PyTorch's grad is dL/dRe + i dL/dIm, TensorFlow's its conjugate",
        notes="far_field_amp's gradient is right; the VJP of |FFT| hands exit_wave a gradient with its phase "
              "mirrored (conj(S)/|S|), so exit_wave is the first wrong adjoint"),
    _bw("object_detached_in_illumination",
        "exit wave built from a detached object patch: psi = P * stop_gradient(e)",
        "extracted_patches", physics_patch("illuminate", object_detached_in_illumination),
        notes="the probe's gradient stays right; every gradient upstream of extracted_patches is zero"),
    _bw("translate_backward_same_shift",
        "translation as a custom autograd Function whose backward shifts the gradient by +t (the forward's "
        "shift) instead of -t (its adjoint)",
        "canvas", physics_patch("_translate_real", translate_backward_same_shift), applies=GRID,
        notes="extraction (canvas -> extracted_patches) is the last translation in the pipeline, so the canvas "
              "gradient goes wrong first; at gridsize 1 every offset is 0 and the shift does nothing"),
    _bw("amp_detached_before_combine",
        "amplitude detached before the object is combined: O = stop_gradient(A) cos(phi) + i ...",
        "amp", physics_patch("combine_complex", amp_detached),
        upstream="pitfalls 10/15: the amplitude decoder gets no gradient (a flat amplitude never learns)",
        notes="the phase's gradient stays right; amp's is zero"),
    _bw("amp_modulus_grad_at_zero",
        "object combined from |A| instead of A: equal where A >= 0, but torch's d|A|/dA at A = 0 is 0, "
        "so dL/dA vanishes where the amplitude is exactly 0",
        "amp", physics_patch("combine_complex", amp_modulus), applies=_AMP_NONNEGATIVE_PADDED,
        losses=("loss_nll",), upstream="subgradient of |z| at 0 differs between formulations",
        notes="A is exactly 0 on the zero-padded border (pad_object), where the clean dL/dA is "
              "Re(conj(g) e^(i phi)), not 0; the network's weights never receive that part of the gradient (the "
              "padding's backward drops it), so only the adjoint stage amp can see it. Swish and probe_big make A "
              "negative somewhere (|A| would change the forward); at gridsize 1 the border lies where the probe is "
              "~1e-8 of its peak; loss_mae's float32 floor (sign flips of pred_amp - Xs) hides it on n128_g2"),
    _bw("phase_wrap_straight_through",
        "phase wrapped to [-pi, pi] as phi - 2 pi round(phi / 2 pi) with a straight-through round: the wrap is "
        "a no-op forward, but cancels dL/dphi",
        "phase", physics_patch("combine_complex", phase_wrap_straight_through),
        notes="|pi tanh| <= pi, so round(phi / 2 pi) is 0 and the forward is exact; the straight-through "
              "estimator gives d/dphi (phi - 2 pi * phi / 2 pi) = 0"),
    _bw("border_branch_no_grad",
        "probe_big border branch computed under torch.no_grad(): amp = x1 + stop_gradient(x2)",
        "latent", border_branch_no_grad_patches, applies=PAD_OBJECT & PROBE_BIG,
        weight="decoder_phase.last.conv2.kernel", network=True,
        notes="both heads share DecoderLast; in reverse order the phase head's border convolution (its last "
              "layer) is the first weight whose gradient goes wrong (zero), and latent the first stage "
              "(its gradient misses the border branch's share through the 4 outer channels)"),
)
