"""Seeded, deterministic synthetic inputs for the forward-parity harness.

Everything here is drawn from ``numpy.random.default_rng`` seeded from one integer, so the
same arguments give bitwise the same arrays. The diffraction data are simulated with the
model's own physics, taken from :mod:`parity.oracle`:

* patch ``(b, c)`` sees the object around ``centre_b - offsets_bc`` (``[x, y]``, pixels): it
  is ``crop_N(T_{+o}[region_b])`` with ``region_b`` the object cut around ``centre_b``
  (exactly :func:`parity.oracle.extract_patches`);
* exit wave ``= normalize_probe(probe_raw, probe_scale) * patch``;
* ``X = far_field_amplitude(exit wave)``, optionally Poisson-noised, then normalised so that
  the mean over patterns of ``sum_hw X**2`` is ``(N/2)**2`` (forward-model.md §2).

``X`` is the *unscaled* amplitude; the harness multiplies it by the model's intensity scale.

Offsets follow PtychoPINN's convention ``o = -(r - r_mean)``: ``r`` is the scan position of
a patch relative to its group centre, channel ``c`` sits at grid cell
``(row c // g, col c % g)`` (row-major) of the scan grid.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import numpy as np
from scipy import ndimage

from . import oracle

#: Offset kinds understood by :func:`scan_groups`.
OFFSET_KINDS = ("integer", "subpixel", "biased")
#: Probe kinds understood by :func:`make_batch`.
PROBE_KINDS = ("disk", "random_phase")
#: Added to every offset of the "biased" kind: the batch mean is then this, not 0.
#: (Dyadic on purpose: the recentred merge offsets stay exact integers, in float32 too.)
BIAS = (0.75, -1.25)
#: Sub-pixel positions are multiples of this (a power of two, so sums are exact).
QUANTUM = 1.0 / 256.0
#: Sub-pixel positions keep at least this distance from any integer.
MIN_FRACTION = 1.0 / 16.0


# ---------------------------------------------------------------------------------------------
# object
# ---------------------------------------------------------------------------------------------
def _smooth_noise(size: int, rng: np.random.Generator, sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    return (field - field.mean()) / field.std()


def _feature_map(size: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth noise + Gaussian blobs + thin soft lines, rescaled to [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    field = 0.6 * _smooth_noise(size, rng, max(2.0, size / 24.0))
    for _ in range(6):  # blobs
        cx, cy = rng.uniform(0.0, size, 2)
        radius = rng.uniform(size / 20.0, size / 8.0)
        height = rng.uniform(-1.5, 1.5)
        field += height * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2.0 * radius ** 2))
    for _ in range(3):  # lines
        angle = rng.uniform(0.0, math.pi)
        shift = rng.uniform(-size / 3.0, size / 3.0)
        height = rng.uniform(0.8, 1.5) * rng.choice([-1.0, 1.0])
        dist = (xx - size / 2.0) * math.cos(angle) + (yy - size / 2.0) * math.sin(angle) - shift
        field += height * np.exp(-dist ** 2 / (2.0 * 1.2 ** 2))
    return (field - field.min()) / (field.max() - field.min())


def make_object(size: int, rng: np.random.Generator) -> np.ndarray:
    """A structured complex object ``(size, size)`` complex128.

    Amplitude in [0.5, 1] and phase in [-1, 1] rad, each built from smooth noise, Gaussian
    blobs and thin lines: spatially correlated, not white noise.
    """
    size = int(size)
    if size < 8:
        raise ValueError(f"make_object: size must be >= 8, got {size}")
    amplitude = 0.5 + 0.5 * _feature_map(size, rng)
    phase = 2.0 * _feature_map(size, rng) - 1.0
    return oracle.combine_complex(amplitude, phase)


# ---------------------------------------------------------------------------------------------
# probes
# ---------------------------------------------------------------------------------------------
def default_disk_probe(N: int) -> np.ndarray:
    """PtychoPINN's default probe (upstream-ptychopinn.md §3.5), real valued, as complex128.

    ``w``: symmetric Gaussian window of length N, std ``N / (0.7 pi^2)``, scaled to max 1;
    probe = ``1[w_i w_j > 0.5]`` Gaussian-filtered with sigma = 1 px, plus 1e-9.
    """
    n = np.arange(N, dtype=np.float64) - (N - 1) / 2.0
    std = N / (0.7 * math.pi ** 2)
    w = np.exp(-0.5 * (n / std) ** 2)
    w = w / w.max()
    indicator = (np.outer(w, w) > 0.5).astype(np.float64)
    probe = ndimage.gaussian_filter(indicator, sigma=1.0) + 1e-9
    return probe.astype(np.complex128)


def random_phase_probe(N: int, rng: np.random.Generator) -> np.ndarray:
    """Disk amplitude (:func:`default_disk_probe`) with a smooth random phase + defocus."""
    amplitude = default_disk_probe(N).real
    phase = 0.8 * _smooth_noise(N, rng, N / 12.0)
    c = (np.arange(N, dtype=np.float64) - N // 2 + 0.5) / (N / 4.0)
    defocus = rng.uniform(-1.0, 1.0)
    phase = phase + defocus * (c[None, :] ** 2 + c[:, None] ** 2)
    return oracle.combine_complex(amplitude, phase)


# ---------------------------------------------------------------------------------------------
# scan groups
# ---------------------------------------------------------------------------------------------
def _grid_units(gridsize: int) -> np.ndarray:
    """(C, 2) grid positions [col, row] - (g-1)/2, channel c -> (row c//g, col c%g)."""
    c = np.arange(gridsize * gridsize)
    return np.stack([c % gridsize, c // gridsize], axis=1).astype(np.float64) - (gridsize - 1) / 2.0


def _integer_positions(gridsize: int, rng: np.random.Generator) -> np.ndarray:
    """Integer scan positions of one group, point-symmetric about the centre (sum exactly 0).

    Grid spacing 4 or 6 px (g even) or 3 px (g odd), each position jittered by -1, 0 or +1 px
    and its mirror image by the opposite; off-axis coordinates are kept within 2..4 px.
    """
    C = gridsize * gridsize
    units = _grid_units(gridsize)
    spacing = float(rng.choice([4, 6])) if gridsize % 2 == 0 else 3.0
    pos = units * spacing
    for c in range(C // 2):  # c and its mirror C-1-c get opposite jitter
        jitter = rng.integers(-1, 2, size=2).astype(np.float64)
        pos[c] += jitter
        pos[C - 1 - c] -= jitter
    off_axis = units != 0
    pos[off_axis] = np.sign(pos[off_axis]) * np.clip(np.abs(pos[off_axis]), 2.0, 4.0)
    return pos


def _quantise(x) -> np.ndarray:
    return np.round(np.asarray(x, dtype=np.float64) / QUANTUM) * QUANTUM


def _is_subpixel(x) -> bool:
    frac = np.abs(x - np.round(x))
    return bool(np.all(frac >= MIN_FRACTION))


def _subpixel_positions(gridsize: int, rng: np.random.Generator) -> np.ndarray:
    """Non-integer scan positions of one group, sum exactly 0 (dyadic arithmetic)."""
    for _ in range(1000):
        spacing = _quantise(rng.uniform(4.0, 6.0))
        pos = _grid_units(gridsize) * spacing + _quantise(rng.uniform(-0.75, 0.75, size=(gridsize ** 2, 2)))
        pos = pos - _quantise(pos.mean(axis=0))
        pos[-1] -= pos.sum(axis=0)  # exact: every value is a small multiple of QUANTUM
        if _is_subpixel(pos):
            return pos
    raise RuntimeError("could not draw sub-pixel positions")  # pragma: no cover


def scan_groups(
    B: int, gridsize: int, rng: np.random.Generator, *, kind: str, spread: int = 8
) -> Tuple[np.ndarray, np.ndarray]:
    """Per-patch offsets ``(B, C, 2)`` ``[dx, dy]`` and group centres ``(B, 2)`` ``[x, y]``.

    ``kind``:

    * ``"integer"``: integer offsets, zero mean within every group (exactly), about +-2-4 px;
    * ``"subpixel"``: non-integer offsets (at least 1/16 px from any integer), zero mean within
      every group (exactly); the group centres are sub-pixel too;
    * ``"biased"``: the integer offsets plus :data:`BIAS` = (0.75, -1.25), so the batch mean
      is not zero.

    Gridsize 1 gives offsets 0 for "integer" and "subpixel", and :data:`BIAS` for "biased".
    Offsets are ``-r`` for scan positions ``r`` relative to the group centre. Centres are
    relative to the middle of the object, within ``+-spread`` px (``+-(spread + 1/2)`` for
    sub-pixel ones).
    """
    if kind not in OFFSET_KINDS:
        raise ValueError(f"scan_groups: kind={kind!r} is not one of {OFFSET_KINDS}")
    if gridsize < 1 or B < 1:
        raise ValueError(f"scan_groups: need B >= 1 and gridsize >= 1, got B={B}, gridsize={gridsize}")
    C = gridsize * gridsize
    offsets = np.zeros((B, C, 2), dtype=np.float64)
    for b in range(B):
        if gridsize == 1:
            continue
        if kind == "subpixel":
            offsets[b] = -_subpixel_positions(gridsize, rng)
        else:
            offsets[b] = -_integer_positions(gridsize, rng)
    if kind == "biased":
        offsets = offsets + np.asarray(BIAS, dtype=np.float64)
    centres = rng.integers(-spread, spread + 1, size=(B, 2)).astype(np.float64)
    if kind == "subpixel":
        frac = _quantise(rng.uniform(MIN_FRACTION, 1.0 - MIN_FRACTION, size=(B, 2)) - 0.5)
        frac = np.where(frac == 0.0, 0.25, frac)
        centres = centres + frac
    return offsets, centres


# ---------------------------------------------------------------------------------------------
# simulation
# ---------------------------------------------------------------------------------------------
def cut_regions(obj, centres, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Cut ``(B, size, size)`` regions of ``obj`` around the rounded centres.

    Returns the regions and the sub-pixel remainders ``centres - round(centres)`` ``(B, 2)``.
    ``size`` must be even; region index ``size // 2`` is the object pixel ``round(centre)``.
    """
    obj = np.asarray(obj)
    centres = np.asarray(centres, dtype=np.float64)
    if size % 2:
        raise ValueError(f"cut_regions: size must be even, got {size}")
    whole = np.round(centres).astype(np.int64)
    regions = []
    for cx, cy in whole:
        top, left = cy - size // 2, cx - size // 2
        if top < 0 or left < 0 or top + size > obj.shape[0] or left + size > obj.shape[1]:
            raise ValueError(
                f"cut_regions: a {size}x{size} region around (x={cx}, y={cy}) leaves the "
                f"{obj.shape} object"
            )
        regions.append(obj[top:top + size, left:left + size])
    return np.stack(regions), centres - whole


def region_size(N: int, offsets, centres=None) -> int:
    """Even region side that keeps every translated patch away from the zero fill."""
    shift = np.asarray(offsets, dtype=np.float64)
    if centres is not None:
        centres = np.asarray(centres, dtype=np.float64)
        shift = shift - (centres - np.round(centres))[:, None, :]
    reach = int(math.ceil(float(np.max(np.abs(shift))))) if shift.size else 0
    return N + 2 * (reach + 2)


def simulate(
    obj,
    probe_raw,
    offsets,
    centres,
    N: int,
    probe_scale: float,
    rng: Optional[np.random.Generator] = None,
    poisson_photons: Optional[float] = None,
    *,
    return_info: bool = False,
):
    """Diffraction amplitude ``X`` ``(B, C, N, N)`` float64 of every patch (see module doc).

    With ``poisson_photons``, counts ~ Poisson(X^2 k), k chosen so that the mean total count
    per pattern is ``poisson_photons``, and X = sqrt(counts / k) (``rng`` is then required).
    Finally X is scaled so that the mean over patterns of ``sum_hw X^2`` is ``(N/2)^2``.
    With ``return_info``, returns ``(X, info)`` where ``info`` holds ``amplitude_factor``
    (X = factor * noiseless-or-noisy far field) and ``counts_per_unit_intensity`` (k).
    """
    offsets = np.asarray(offsets, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    size = region_size(N, offsets, centres)
    regions, remainder = cut_regions(obj, centres, size)
    # The patch is centred on round(c) + remainder - o: extraction with +(o - remainder).
    patches = oracle.extract_patches(regions, offsets - remainder[:, None, :], N)
    psi = oracle.normalize_probe(probe_raw, probe_scale) * patches
    X = oracle.far_field_amplitude(psi)
    k = None
    if poisson_photons is not None:
        if rng is None:
            raise ValueError("simulate: poisson_photons needs an rng")
        k = float(poisson_photons) / float(np.mean(np.sum(X ** 2, axis=(-2, -1))))
        counts = rng.poisson(X ** 2 * k)
        X = np.sqrt(counts / k)
    energy = float(np.mean(np.sum(X ** 2, axis=(-2, -1))))
    factor = math.sqrt((N / 2.0) ** 2 / energy)
    X = X * factor
    if return_info:
        return X, {"amplitude_factor": factor, "counts_per_unit_intensity": k, "region_size": size}
    return X


def make_batch(
    *,
    N: int,
    gridsize: int,
    B: int,
    seed: int,
    offsets_kind: str,
    probe_kind: str,
    poisson_photons: Optional[float] = None,
    probe_scale: float = 4.0,
) -> Tuple[Dict[str, np.ndarray], Dict[str, object]]:
    """One synthetic batch: ``(arrays, metadata)``.

    ``arrays``: ``X`` (B, C, N, N) float64 (unscaled amplitude), ``offsets`` (B, C, 2) float64
    ``[dx, dy]``, ``probe_raw`` (N, N) complex128, ``object`` (L, L) complex128 (the
    ground-truth region that holds every group) and ``centres`` (B, 2) float64 ``[x, y]`` in
    ``object`` pixel coordinates. Independent random streams (scan, object, probe, noise) are
    spawned from ``seed``, so e.g. switching the noise on leaves object and offsets unchanged.
    """
    if probe_kind not in PROBE_KINDS:
        raise ValueError(f"make_batch: probe_kind={probe_kind!r} is not one of {PROBE_KINDS}")
    if offsets_kind not in OFFSET_KINDS:
        raise ValueError(f"make_batch: offsets_kind={offsets_kind!r} is not one of {OFFSET_KINDS}")
    scan_ss, object_ss, probe_ss, noise_ss = np.random.SeedSequence(int(seed)).spawn(4)
    spread = N // 8
    offsets, centres = scan_groups(B, gridsize, np.random.default_rng(scan_ss), kind=offsets_kind, spread=spread)
    size = region_size(N, offsets, centres)
    L = size + 2 * (spread + 1)
    centres = centres + L // 2
    obj = make_object(L, np.random.default_rng(object_ss))
    if probe_kind == "disk":
        probe_raw = default_disk_probe(N)
    else:
        probe_raw = random_phase_probe(N, np.random.default_rng(probe_ss))
    X, info = simulate(
        obj, probe_raw, offsets, centres, N, probe_scale,
        rng=np.random.default_rng(noise_ss), poisson_photons=poisson_photons, return_info=True,
    )
    arrays = {"X": X, "offsets": offsets, "probe_raw": probe_raw, "object": obj, "centres": centres}
    metadata = {
        "N": N,
        "gridsize": gridsize,
        "C": gridsize * gridsize,
        "B": B,
        "seed": int(seed),
        "offsets_kind": offsets_kind,
        "probe_kind": probe_kind,
        "poisson_photons": poisson_photons,
        "probe_scale": probe_scale,
        "object_size": L,
        "region_size": info["region_size"],
        "amplitude_factor": info["amplitude_factor"],
        "counts_per_unit_intensity": info["counts_per_unit_intensity"],
        "target_energy": (N / 2.0) ** 2,
        "offsets_batch_mean": [float(v) for v in offsets.reshape(-1, 2).mean(axis=0)],
        "max_abs_offset": float(np.max(np.abs(offsets))) if offsets.size else 0.0,
    }
    return arrays, metadata
