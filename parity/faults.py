"""The fault catalogue of the self-test: named, documented, reversible bugs of the port.

Each :class:`Fault` models one mistake that a PyTorch port of the reference can make (most are
the real ones of upstream PtychoPINN's port, ``upstream-ptychopinn.md`` §5). It is applied at
run time by monkeypatching attributes of the ``torch_impl`` modules and classes, never by a
switch inside ``torch_impl``::

    from parity.faults import inject
    with inject("merge_offset_sign"):
        ...  # torch_impl computes the merge with the wrong sign here
    # everything restored here, also after an exception

``inject_all(names)`` applies several at once; ``Job(faults=...)`` and ``run_case(faults=...)``
use it, so ``execute`` runs the port under faults in-process and in workers alike (a job's
build happens inside the block, so build-time faults apply there too).

Patches go where the lookup happens: ``torch_impl.model`` calls the physics as
``physics.merge_patches(...)`` (module attribute, so patching ``torch_impl.physics`` works),
and the physics functions call each other through their module globals (``translate``,
``_reflect_pad1``, ...). Two kinds of patch exist:

* run-time patches (a physics function, a module's ``forward``, ``ForwardModel._compute``, the
  ``ModelConfig.M`` property): they change models that already exist;
* build-time patches (``network._conv3x3``, ``network.amplitude_activation``,
  ``network.phase_activation``, ``weights.KERNEL_TO_TORCH``): they only change models built
  inside the ``with`` block. The self-test builds the port inside the block whenever
  ``fault.network`` is True.

Each fault declares the stage where the harness must first see it (``expected_stage``), the
cases where it can show at all (``applies``, a predicate over :class:`parity.cases.Case`;
e.g. the smoothing fault needs sigma > 0) and ``network``: whether it can change the network
stages (latent, amp, phase). Faults with ``network=False`` leave those stages bitwise unchanged
(``tests/unit/test_faults.py`` checks it), which lets the self-test reuse the clean port's
network stages.

This module imports PyTorch lazily (inside the patches), so ``parity.faults`` can be imported
to list the catalogue without a framework.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from . import fixtures as fixture_store
from .stages import BY_NAME, STAGE_NAMES

#: Stages computed by the generator network; a fault with ``network=False`` leaves them alone.
NETWORK_STAGES = ("latent", "amp", "phase")

_MISSING = object()


class UnknownFault(KeyError):
    """An unknown fault name; ``str()`` is the one-line message (names every known fault)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


# ---------------------------------------------------------------------------------------------
# applicability predicates
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Applies:
    """A predicate over a case, with the text that says what it requires."""

    text: str
    test: Callable[[object], bool]

    def __call__(self, case) -> bool:
        return bool(self.test(case))

    def __and__(self, other: "Applies") -> "Applies":
        return Applies(f"{self.text} and {other.text}", lambda c: self(c) and other(c))

    def __or__(self, other: "Applies") -> "Applies":
        return Applies(f"({self.text} or {other.text})", lambda c: self(c) or other(c))


def _cfg(text: str, fn: Callable[[object], bool]) -> Applies:
    """Predicate on the case's model config (reference_tf ModelConfig: same fields as the port's)."""
    return Applies(text, lambda case: fn(case.config))


#: Input variants (parity.cases.VARIANTS) that replace the fixture's offsets, and the kind they give.
_VARIANT_OFFSETS = {"half_pixel": "subpixel", "canvas_edge": "subpixel"}


def offsets_kind(case) -> str:
    """The kind of offsets a case feeds (its fixture's, unless an input variant replaces them)."""
    variant = getattr(case, "variant", None)
    if variant in _VARIANT_OFFSETS:
        return _VARIANT_OFFSETS[variant]
    return fixture_store.get_spec(case.fixture).offsets_kind


def _offsets_kind(*kinds: str) -> Applies:
    return Applies(f"offsets {'/'.join(kinds)}", lambda case: offsets_kind(case) in kinds)


ANY = Applies("every case", lambda case: True)
OBJECT_BIG = _cfg("object_big", lambda c: c.object_big)
GRID = _cfg("gridsize >= 2", lambda c: c.gridsize >= 2)
FLOAT64 = Applies("float64", lambda case: case.dtype == "float64")


# ---------------------------------------------------------------------------------------------
# the fault record and the context manager
# ---------------------------------------------------------------------------------------------
Patch = Tuple[object, str, object]  # (module or class, attribute name, new value)


@dataclass(frozen=True)
class Fault:
    """One named, documented, reversible bug of the port.

    ``patches()`` returns the ``(owner, attribute, new value)`` triples to apply; it is called
    on entry to :func:`inject`, so a patch may wrap whatever the attribute holds then.
    ``must_show``: case names where the fault must be caught (checked when those cases run).
    """

    name: str
    description: str
    expected_stage: str
    patches: Callable[[], List[Patch]]
    applies: Applies = ANY
    network: bool = True
    upstream: str = ""
    must_show: Tuple[str, ...] = ()
    notes: str = ""

    def __post_init__(self) -> None:
        if self.expected_stage not in BY_NAME:
            raise ValueError(f"fault {self.name}: unknown expected stage {self.expected_stage!r}; "
                             f"known stages are {list(STAGE_NAMES)}")

    def applicable(self, case) -> bool:
        return self.applies(case)

    def to_dict(self) -> Dict[str, object]:
        return {"name": self.name, "description": self.description, "expected_stage": self.expected_stage,
                "applies_to": self.applies.text, "network": self.network, "upstream": self.upstream,
                "must_show": list(self.must_show), "notes": self.notes}


def _current(owner, attr: str):
    """The attribute as stored on ``owner`` itself (raw function/property for a class)."""
    return vars(owner).get(attr, _MISSING)


@contextlib.contextmanager
def inject(fault) -> Iterator["Fault"]:
    """Apply a fault (a :class:`Fault` or its name) for the duration of the ``with`` block.

    Every patched attribute is restored on exit, in reverse order, also when the block raises
    (and when applying a later patch of the same fault fails half way).
    """
    fault = get_fault(fault) if isinstance(fault, str) else fault
    saved: List[Tuple[object, str, object]] = []
    try:
        for owner, attr, new in fault.patches():
            old = _current(owner, attr)
            if old is _MISSING:
                raise AttributeError(f"fault {fault.name}: {getattr(owner, '__name__', owner)!s} has no attribute "
                                     f"{attr!r} to patch")
            saved.append((owner, attr, old))
            setattr(owner, attr, new)
        yield fault
    finally:
        for owner, attr, old in reversed(saved):
            setattr(owner, attr, old)


@contextlib.contextmanager
def inject_all(names: Sequence) -> Iterator[List["Fault"]]:
    """Apply several faults (names or :class:`Fault`) at once; every name is checked before any
    patch is applied, and all are undone on exit (in reverse order)."""
    resolved = [get_fault(f) if isinstance(f, str) else f for f in names]
    with contextlib.ExitStack() as stack:
        for fault in resolved:
            stack.enter_context(inject(fault))
        yield resolved


def snapshot() -> Dict[Tuple[str, str], object]:
    """Identity of every attribute of the torch_impl modules and of their classes' namespaces.

    Two snapshots are equal (``a[k] is b[k]`` for every key) when nothing was left patched.
    """
    import importlib

    out: Dict[Tuple[str, str], object] = {}
    for modname in ("torch_impl.physics", "torch_impl.network", "torch_impl.model", "torch_impl.weights",
                    "torch_impl.config", "torch_impl"):
        mod = importlib.import_module(modname)
        for attr, value in list(vars(mod).items()):
            out[(modname, attr)] = value
            if isinstance(value, type) and value.__module__.startswith("torch_impl"):
                for cattr, cvalue in list(vars(value).items()):
                    out[(f"{value.__module__}.{value.__qualname__}", cattr)] = cvalue
    return out


# ---------------------------------------------------------------------------------------------
# helpers of the faulty implementations (torch imported lazily)
# ---------------------------------------------------------------------------------------------
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


def _merge_fault(**knobs):
    def patches():
        physics = _modules()[0]

        def merge_patches(patches, offsets, size):
            return _merge(patches, offsets, size, **knobs)

        return [(physics, "merge_patches", merge_patches)]

    return patches


def _column_major(c: int) -> List[int]:
    g = int(round(math.sqrt(c)))
    return [(k % g) * g + k // g for k in range(c)]


def _channel_order_patches():
    physics = _modules()[0]
    extract = physics.extract_patches

    def merge_patches(patches, offsets, size):
        return _merge(patches, offsets, size, order=_column_major(offsets.shape[1]))

    def extract_patches(canvas, offsets, n):
        return extract(canvas, offsets[:, _column_major(offsets.shape[1])], n)

    return [(physics, "merge_patches", merge_patches), (physics, "extract_patches", extract_patches)]


def _extract_recentred_patches():
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
def _kernel_transposed_patches():
    weights = _modules()[3]
    # neutral (kh, kw, in, out) -> (out, in, kw, kh) instead of (out, in, kh, kw)
    return [(weights, "KERNEL_TO_TORCH", (3, 2, 1, 0))]


def _padding_off_by_one_patches():
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


def _upsample_bilinear_patches():
    torch = _torch()
    network = _modules()[1]

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    return [(network.ConvUp, "forward", forward)]


def _amp_silu_patches():
    torch = _torch()
    network = _modules()[1]
    return [(network, "amplitude_activation", lambda name: torch.nn.functional.silu)]


def _phase_no_pi_patches():
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


def _outer_slice_k_patches():
    """DecoderLast.forward with upstream's c_out = K split: outer = the last K channels, inner =
    all but the last K. The weights here are shaped for the reference's split (conv1 takes
    32n - 4 channels, the border ConvUp 4), so each slice is cut to its first channels or
    zero-padded at the end to fit (upstream needed its legacy channel override for the same
    reason). K = 4 changes nothing; K = 1 leaves the inner slice as it was (cut back to
    32n - 4) and feeds the border branch [z_last, 0, 0, 0]; K > 4 also shortens the inner slice."""
    torch = _torch()
    network = _modules()[1]
    original = _current(network.DecoderLast, "forward")

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


def _compute_patch(stage: str, replacement):
    """Patch ForwardModel._compute for one stage; the others go to the original."""

    def patches():
        model = _modules()[2]
        original = _current(model.ForwardModel, "_compute")

        def _compute(self, name, e):
            if name == stage:
                return replacement(self, e)
            return original(self, name, e)

        return [(model.ForwardModel, "_compute", _compute)]

    return patches


def _input_scale_multiplied(self, e):
    return e["diffraction"] * self.scale


def _canvas_no_buffer_patches():
    config = _modules()[4]
    # M = N + (g-1)*offset: upstream torch's canvas (buffer 0). The port's shape checks use the
    # same property, so the port stays self-consistent at the smaller size.
    return [(config.ModelConfig, "M", property(lambda self: self.N + (self.gridsize - 1) * self.offset))]


# ---- physics -------------------------------------------------------------------------------
def _physics_patch(attr: str, make):
    def patches():
        physics = _modules()[0]
        return [(physics, attr, make(physics, _current(physics, attr)))]

    return patches


def _combine_a_plus_i_phi(physics, original):
    torch = _torch()
    return lambda amp, phase: torch.complex(amp, phase)


def _probe_norm_ones(physics, original):
    torch = _torch()
    return lambda probe, probe_scale: _div_real(probe, probe_scale * torch.mean(torch.abs(probe)))


def _probe_double_scale(physics, original):
    return lambda probe, probe_scale: _div_real(original(probe, probe_scale), probe_scale)


def _probe_mask_missing(physics, original):
    return lambda patches, probe, sigma, probe_mask: original(patches, probe, sigma, False)


def _zero_pad1(physics, original):
    torch = _torch()
    return lambda x: torch.nn.functional.pad(x, (1, 1, 1, 1))


def _no_fftshift(physics, original):
    torch = _torch()
    return lambda psi: torch.abs(torch.fft.fft2(psi, dim=(-2, -1))) / psi.shape[-1]


def _fft_norm_n2(physics, original):
    return lambda psi: original(psi) / psi.shape[-1]


def _far_field_float32(physics, original):
    torch = _torch()

    def far_field_amplitude(psi):
        low = psi.to(torch.complex64) if psi.is_complex() else psi.to(torch.float32)
        return original(low).to(_real_dtype(psi))

    return far_field_amplitude


def _translate_flipped(physics, original):
    return _translate_align_corners_flipped


# ---------------------------------------------------------------------------------------------
# the catalogue
# ---------------------------------------------------------------------------------------------
_COMASK_SHOWS = OBJECT_BIG & (
    _cfg("not pad_object", lambda c: not c.pad_object) | _cfg("probe_big", lambda c: c.probe_big)
    | _offsets_kind("subpixel"))

FAULTS: Tuple[Fault, ...] = (
    Fault("conv_kernel_transposed",
          "weight conversion swaps the kernel's spatial axes: (kh, kw, in, out) -> (out, in, kw, kh)",
          "latent", _kernel_transposed_patches,
          upstream="§3.3/architecture: the one kernel transpose (3, 2, 0, 1), no flip",
          notes="build-time (to_torch_state reads weights.KERNEL_TO_TORCH)"),
    Fault("same_padding_off_by_one",
          "3x3 'same' convolutions padded (0, 2) instead of (1, 1): every feature map shifts one pixel",
          "latent", _padding_off_by_one_patches,
          upstream="forward-model §3.1: 'same' padding is symmetric at stride 1",
          notes="build-time (network._conv3x3)"),
    Fault("upsample_bilinear",
          "decoder ConvUp upsamples bilinearly instead of nearest-neighbour",
          "amp", _upsample_bilinear_patches,
          upstream="forward-model §3.1 ConvUp"),
    Fault("amp_activation_silu",
          "amplitude head silently uses SiLU whatever amp_activation says (upstream torch default)",
          "amp", _amp_silu_patches,
          applies=_cfg("amp_activation != swish", lambda c: c.amp_activation != "swish"),
          upstream="§5.12: torch defaults to SiLU, any other value became SiLU",
          notes="build-time (network.amplitude_activation); SiLU equals swish, so swish cases cannot show it"),
    Fault("phase_missing_pi",
          "phase head is tanh instead of pi * tanh",
          "phase", _phase_no_pi_patches,
          upstream="forward-model §3.3 act of the phase head",
          notes="build-time (network.phase_activation)"),
    Fault("complex_a_plus_i_phi",
          "object patches combined as A + i*phi instead of A cos(phi) + i A sin(phi)",
          "object_patches", _physics_patch("combine_complex", _combine_a_plus_i_phi), network=False,
          upstream="forward-model §4 combine"),
    Fault("merge_offset_sign",
          "merge translates patches by +o~ instead of -o~ (mirrors each group through its centre)",
          "canvas", _merge_fault(sign=+1.0), network=False, applies=OBJECT_BIG & GRID,
          upstream="§5.3 TORCH-REASSEMBLY-SIGN-001 (a no-op at gridsize 1)"),
    Fault("merge_no_epsilon",
          "merge denominator without the +0.001",
          "canvas", _merge_fault(eps=0.0), network=False, applies=OBJECT_BIG,
          upstream="§5.4 merge normalisation"),
    Fault("merge_comask_numerator",
          "merge numerator co-masked by the translated centre mask, canvas = num*1[cnt>1e-6]/(cnt+0.001)",
          "canvas", _merge_fault(comask=True), network=False, applies=_COMASK_SHOWS,
          upstream="§5.4 TORCH-GS2-CENTRAL-MASK-MERGE-001 (equal to the reference for integer offsets and "
                   "patches that are zero outside the centre)",
          must_show=("n64_g2_sub_swish", "n64_g2_probe_big_relu")),
    Fault("merge_no_recentre",
          "merge offsets not recentred over the batch",
          "canvas", _merge_fault(recentre=False), network=False, applies=OBJECT_BIG & _offsets_kind("biased"),
          upstream="§5.5 (shows only when the offsets' batch mean is not zero)",
          must_show=("n64_g2_biased_softplus",)),
    Fault("extract_recentred",
          "extraction recentres the offsets like the merge (the reference uses them as given)",
          "extracted_patches", _extract_recentred_patches, network=False, applies=_offsets_kind("biased"),
          upstream="§5.5 / forward-model §4 quirk: neither backend recentres extraction",
          must_show=("n64_g2_biased_softplus",)),
    Fault("canvas_no_jitter_buffer",
          "canvas size M = N + (g-1)*offset without the max_position_jitter buffer",
          "canvas", _canvas_no_buffer_patches, network=False,
          applies=_cfg("max_position_jitter > 0", lambda c: c.max_position_jitter > 0),
          upstream="§5.6 (torch buffer 0, commit ba3f705d)",
          notes="the canvas stage then has another shape: a structural failure at canvas"),
    Fault("translate_align_corners",
          "translation samples as grid_sample with align_corners flipped: source x' = (x - t)*W/(W-1) - 1/2",
          "canvas", _physics_patch("translate", _translate_flipped), network=False, applies=OBJECT_BIG,
          upstream="§5.21 torch grid normalised with align_corners=True",
          notes="object_big=False would first show at extracted_patches, so it is not run there"),
    Fault("channel_order_column_major",
          "channel-to-grid order column-major: offsets' channel c read as (c % g)*g + c // g in merge and extract",
          "canvas", _channel_order_patches, network=False, applies=OBJECT_BIG & GRID,
          upstream="fixtures: channel c is grid cell (row c // g, col c % g)"),
    Fault("probe_norm_ones_mask",
          "probe normalised with an all-ones mask instead of the hard disk",
          "probe", _physics_patch("normalize_probe", _probe_norm_ones), network=False,
          upstream="§5.8 probe-norm mask (torch used ones by default)",
          must_show=("n64_g1_f64_mask", "n64_g2_f64_smooth"),
          notes="the probes have ~1e-8 of their amplitude outside the disk: only float64 cases can see it"),
    Fault("probe_double_scale",
          "probe divided by probe_scale a second time",
          "probe", _physics_patch("normalize_probe", _probe_double_scale), network=False,
          applies=_cfg("probe_scale != 1", lambda c: c.probe_scale != 1),
          upstream="§5.7 RECT-PROBE-SCALE-DOUBLE-DIV-001"),
    Fault("probe_mask_missing",
          "exit wave not multiplied by the disk mask although probe_mask=True",
          "exit_wave", _physics_patch("illuminate", _probe_mask_missing), network=False,
          applies=_cfg("probe_mask", lambda c: c.probe_mask),
          upstream="§5.8/§5.11 probe mask defaults", must_show=("n64_g1_f64_mask",),
          notes="the probe is ~1e-8 of its peak outside the disk: only float64 cases can see it"),
    Fault("smoothing_zero_padding",
          "exit-wave Gaussian smoothing pads with zeros instead of reflecting",
          "exit_wave", _physics_patch("_reflect_pad1", _zero_pad1), network=False,
          applies=_cfg("gaussian_smoothing_sigma > 0 and not probe_mask",
                       lambda c: c.gaussian_smoothing_sigma > 0 and not c.probe_mask),
          upstream="forward-model §5 smoothing (reflect padding)", must_show=("n64_g2_f64_smooth",),
          notes="changes only the outermost pixels, where the probe is ~1e-9 of its peak: needs float64 "
                "(and probe_mask=False, whose disk would zero those pixels)"),
    Fault("fftshift_missing",
          "far field without the fftshift",
          "far_field_amp", _physics_patch("far_field_amplitude", _no_fftshift), network=False,
          upstream="forward-model §6"),
    Fault("fft_norm_n_squared",
          "far field normalised by N**2 instead of N",
          "far_field_amp", _physics_patch("far_field_amplitude", _fft_norm_n2), network=False,
          upstream="forward-model §6 (unnormalised FFT / N)"),
    Fault("intensity_scale_multiplied",
          "network input multiplied by the intensity scale instead of divided (input_scaled = diffraction * s)",
          "input_scaled", _compute_patch("input_scaled", _input_scale_multiplied),
          upstream="forward-model §2 scaled domain"),
    Fault("decoder_outer_slice_k",
          "last decoder stage slices the outer K channels instead of 4 (inner = all but the last K); slices "
          "truncated or zero-padded to the weights' channel counts",
          "amp", _outer_slice_k_patches,
          applies=_cfg("pad_object and K != 4 and (probe_big or K > 4)",
                       lambda c: c.pad_object and c.K != 4 and (c.probe_big or c.K > 4)),
          upstream="§5.9 Decoder_last c_out=4 vs K", must_show=("n128_g1_sub",),
          notes="with K = 1 the truncated inner slice equals the reference's, so only the probe_big border "
                "branch differs"),
    Fault("float32_far_field",
          "far field FFT computed in complex64 in a float64 run, then cast back",
          "far_field_amp", _physics_patch("far_field_amplitude", _far_field_float32), network=False,
          applies=FLOAT64, upstream="precision: a float64 port must stay float64 end to end",
          must_show=("n64_g1_f64_mask", "n64_g2_f64_smooth")),
)

_BY_NAME: Dict[str, Fault] = {f.name: f for f in FAULTS}
FAULT_NAMES: Tuple[str, ...] = tuple(_BY_NAME)


def get_fault(name: str) -> Fault:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownFault(f"unknown fault {name!r}; known faults are: {', '.join(FAULT_NAMES)}") from None


def applicable_cases(fault: Fault, cases: Sequence) -> List:
    """The cases (in the given order) where ``fault`` can show."""
    return [c for c in cases if fault.applicable(c)]


__all__ = ["Applies", "FAULTS", "FAULT_NAMES", "Fault", "NETWORK_STAGES", "UnknownFault", "applicable_cases",
           "get_fault", "inject", "inject_all", "offsets_kind", "snapshot"]
