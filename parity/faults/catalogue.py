"""The fault catalogue: every known port mistake, with where it must first show and where it can.

Each entry names its patches (:mod:`.patches`), the stage where the harness must first see it
(``expected_stage``), the cases where it can show at all (``applies``), whether it can change
the network stages (``network``), its upstream reference and the cases where it must be caught.
The backward-only faults (forward exact, gradient wrong) are in :mod:`.backward`.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from . import patches as P
from .backward import BACKWARD_FAULTS
from .core import FLOAT64, GRID, OBJECT_BIG, Fault, UnknownFault, config_is, offsets_are


_COMASK_SHOWS = OBJECT_BIG & (
    config_is("not pad_object", lambda c: not c.pad_object) | config_is("probe_big", lambda c: c.probe_big)
    | offsets_are("subpixel"))

FAULTS: Tuple[Fault, ...] = (
    Fault("conv_kernel_transposed",
          "weight conversion swaps the kernel's spatial axes: (kh, kw, in, out) -> (out, in, kw, kh)",
          "latent", P.kernel_transposed_patches,
          upstream="§3.3/architecture: the one kernel transpose (3, 2, 0, 1), no flip",
          notes="build-time (to_torch_state reads weights.KERNEL_TO_TORCH)"),
    Fault("same_padding_off_by_one",
          "3x3 'same' convolutions padded (0, 2) instead of (1, 1): every feature map shifts one pixel",
          "latent", P.padding_off_by_one_patches,
          upstream="forward-model §3.1: 'same' padding is symmetric at stride 1",
          notes="build-time (network._conv3x3)"),
    Fault("upsample_bilinear",
          "decoder ConvUp upsamples bilinearly instead of nearest-neighbour",
          "amp", P.upsample_bilinear_patches,
          upstream="forward-model §3.1 ConvUp"),
    Fault("amp_activation_silu",
          "amplitude head silently uses SiLU whatever amp_activation says (upstream torch default)",
          "amp", P.amp_silu_patches,
          applies=config_is("amp_activation != swish", lambda c: c.amp_activation != "swish"),
          upstream="§5.12: torch defaults to SiLU, any other value became SiLU",
          notes="build-time (network.amplitude_activation); SiLU equals swish, so swish cases cannot show it"),
    Fault("phase_missing_pi",
          "phase head is tanh instead of pi * tanh",
          "phase", P.phase_no_pi_patches,
          upstream="forward-model §3.3 act of the phase head",
          notes="build-time (network.phase_activation)"),
    Fault("complex_a_plus_i_phi",
          "object patches combined as A + i*phi instead of A cos(phi) + i A sin(phi)",
          "object_patches", P.physics_patch("combine_complex", P.combine_a_plus_i_phi), network=False,
          upstream="forward-model §4 combine"),
    Fault("merge_offset_sign",
          "merge translates patches by +o~ instead of -o~ (mirrors each group through its centre)",
          "canvas", P.merge_fault(sign=+1.0), network=False, applies=OBJECT_BIG & GRID,
          upstream="§5.3 TORCH-REASSEMBLY-SIGN-001 (a no-op at gridsize 1)"),
    Fault("merge_no_epsilon",
          "merge denominator without the +0.001",
          "canvas", P.merge_fault(eps=0.0), network=False, applies=OBJECT_BIG,
          upstream="§5.4 merge normalisation"),
    Fault("merge_comask_numerator",
          "merge numerator co-masked by the translated centre mask, canvas = num*1[cnt>1e-6]/(cnt+0.001)",
          "canvas", P.merge_fault(comask=True), network=False, applies=_COMASK_SHOWS,
          upstream="§5.4 TORCH-GS2-CENTRAL-MASK-MERGE-001 (equal to the reference for integer offsets and "
                   "patches that are zero outside the centre)",
          must_show=("n64_g2_sub_swish", "n64_g2_probe_big_relu")),
    Fault("merge_no_recentre",
          "merge offsets not recentred over the batch",
          "canvas", P.merge_fault(recentre=False), network=False, applies=OBJECT_BIG & offsets_are("biased"),
          upstream="§5.5 (shows only when the offsets' batch mean is not zero)",
          must_show=("n64_g2_biased_softplus",)),
    Fault("extract_recentred",
          "extraction recentres the offsets like the merge (the reference uses them as given)",
          "extracted_patches", P.extract_recentred_patches, network=False, applies=offsets_are("biased"),
          upstream="§5.5 / forward-model §4 quirk: neither backend recentres extraction",
          must_show=("n64_g2_biased_softplus",)),
    Fault("canvas_no_jitter_buffer",
          "canvas size M = N + (g-1)*offset without the max_position_jitter buffer",
          "canvas", P.canvas_no_buffer_patches, network=False,
          applies=config_is("max_position_jitter > 0", lambda c: c.max_position_jitter > 0),
          upstream="§5.6 (torch buffer 0, commit ba3f705d)",
          notes="the canvas stage then has another shape: a structural failure at canvas"),
    Fault("translate_align_corners",
          "translation samples as grid_sample with align_corners flipped: source x' = (x - t)*W/(W-1) - 1/2",
          "canvas", P.physics_patch("translate", P.translate_flipped), network=False, applies=OBJECT_BIG,
          upstream="§5.21 torch grid normalised with align_corners=True",
          notes="object_big=False would first show at extracted_patches, so it is not run there"),
    Fault("channel_order_column_major",
          "channel-to-grid order column-major: offsets' channel c read as (c % g)*g + c // g in merge and extract",
          "canvas", P.channel_order_patches, network=False, applies=OBJECT_BIG & GRID,
          upstream="fixtures: channel c is grid cell (row c // g, col c % g)"),
    Fault("probe_norm_ones_mask",
          "probe normalised with an all-ones mask instead of the hard disk",
          "probe", P.physics_patch("normalize_probe", P.probe_norm_ones), network=False,
          upstream="§5.8 probe-norm mask (torch used ones by default)",
          must_show=("n64_g1_f64_mask", "n64_g2_f64_smooth"),
          notes="the probes have ~1e-8 of their amplitude outside the disk: only float64 cases can see it"),
    Fault("probe_double_scale",
          "probe divided by probe_scale a second time",
          "probe", P.physics_patch("normalize_probe", P.probe_double_scale), network=False,
          applies=config_is("probe_scale != 1", lambda c: c.probe_scale != 1),
          upstream="§5.7 RECT-PROBE-SCALE-DOUBLE-DIV-001"),
    Fault("probe_mask_missing",
          "exit wave not multiplied by the disk mask although probe_mask=True",
          "exit_wave", P.physics_patch("illuminate", P.probe_mask_missing), network=False,
          applies=config_is("probe_mask", lambda c: c.probe_mask),
          upstream="§5.8/§5.11 probe mask defaults", must_show=("n64_g1_f64_mask",),
          notes="the probe is ~1e-8 of its peak outside the disk: only float64 cases can see it"),
    Fault("smoothing_zero_padding",
          "exit-wave Gaussian smoothing pads with zeros instead of reflecting",
          "exit_wave", P.physics_patch("_reflect_pad1", P.zero_pad1), network=False,
          applies=config_is("gaussian_smoothing_sigma > 0 and not probe_mask",
                       lambda c: c.gaussian_smoothing_sigma > 0 and not c.probe_mask),
          upstream="forward-model §5 smoothing (reflect padding)", must_show=("n64_g2_f64_smooth",),
          notes="changes only the outermost pixels, where the probe is ~1e-9 of its peak: needs float64 "
                "(and probe_mask=False, whose disk would zero those pixels)"),
    Fault("fftshift_missing",
          "far field without the fftshift",
          "far_field_amp", P.physics_patch("far_field_amplitude", P.no_fftshift), network=False,
          upstream="forward-model §6"),
    Fault("fft_norm_n_squared",
          "far field normalised by N**2 instead of N",
          "far_field_amp", P.physics_patch("far_field_amplitude", P.fft_norm_n2), network=False,
          upstream="forward-model §6 (unnormalised FFT / N)"),
    Fault("intensity_scale_multiplied",
          "network input multiplied by the intensity scale instead of divided (input_scaled = diffraction * s)",
          "input_scaled", P.compute_patch("input_scaled", P.input_scale_multiplied),
          upstream="forward-model §2 scaled domain"),
    Fault("decoder_outer_slice_k",
          "last decoder stage slices the outer K channels instead of 4 (inner = all but the last K); slices "
          "truncated or zero-padded to the weights' channel counts",
          "amp", P.outer_slice_k_patches,
          applies=config_is("pad_object and K != 4 and (probe_big or K > 4)",
                       lambda c: c.pad_object and c.K != 4 and (c.probe_big or c.K > 4)),
          upstream="§5.9 Decoder_last c_out=4 vs K", must_show=("n128_g1_sub",),
          notes="with K = 1 the truncated inner slice equals the reference's, so only the probe_big border "
                "branch differs"),
    Fault("float32_far_field",
          "far field FFT computed in complex64 in a float64 run, then cast back",
          "far_field_amp", P.physics_patch("far_field_amplitude", P.far_field_float32), network=False,
          applies=FLOAT64, upstream="precision: a float64 port must stay float64 end to end",
          must_show=("n64_g1_f64_mask", "n64_g2_f64_smooth")),
)

#: Forward faults (FAULTS, what the forward self-test runs) and backward-only faults
#: (BACKWARD_FAULTS, :mod:`.backward`): one namespace, so ``inject`` and jobs take either.
ALL_FAULTS: Tuple[Fault, ...] = FAULTS + BACKWARD_FAULTS
_BY_NAME: Dict[str, Fault] = {f.name: f for f in ALL_FAULTS}
if len(_BY_NAME) != len(ALL_FAULTS):  # pragma: no cover - a catalogue edit gone wrong
    raise RuntimeError("two faults share a name")
FAULT_NAMES: Tuple[str, ...] = tuple(f.name for f in FAULTS)
BACKWARD_FAULT_NAMES: Tuple[str, ...] = tuple(f.name for f in BACKWARD_FAULTS)


def get_fault(name: str) -> Fault:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownFault(f"unknown fault {name!r}; known faults are: {', '.join(_BY_NAME)}") from None


def applicable_cases(fault: Fault, cases: Sequence) -> List:
    """The cases (in the given order) where ``fault`` can show."""
    return [c for c in cases if fault.applicable(c)]
