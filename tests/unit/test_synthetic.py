"""Unit tests of the seeded synthetic inputs (parity/synthetic.py)."""
from __future__ import annotations

import numpy as np
import pytest

from parity import oracle, synthetic

KINDS = synthetic.OFFSET_KINDS


def _batch(**kw):
    args = dict(N=64, gridsize=2, B=4, seed=11, offsets_kind="integer", probe_kind="disk")
    args.update(kw)
    return synthetic.make_batch(**args)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("probe_kind", synthetic.PROBE_KINDS)
def test_make_batch_is_bitwise_deterministic(kind, probe_kind):
    photons = 1e5 if kind == "integer" else None
    a1, m1 = _batch(offsets_kind=kind, probe_kind=probe_kind, poisson_photons=photons)
    a2, m2 = _batch(offsets_kind=kind, probe_kind=probe_kind, poisson_photons=photons)
    assert a1.keys() == a2.keys() == {"X", "offsets", "probe_raw", "object", "centres"}
    for k in a1:
        assert a1[k].dtype == a2[k].dtype
        assert a1[k].tobytes() == a2[k].tobytes(), k
    assert m1 == m2
    a3, _ = _batch(offsets_kind=kind, probe_kind=probe_kind, poisson_photons=photons, seed=12)
    assert a3["X"].tobytes() != a1["X"].tobytes()


def test_make_batch_shapes_and_dtypes():
    arrays, meta = _batch(gridsize=3, B=2, probe_kind="random_phase")
    assert arrays["X"].shape == (2, 9, 64, 64) and arrays["X"].dtype == np.float64
    assert arrays["offsets"].shape == (2, 9, 2) and arrays["offsets"].dtype == np.float64
    assert arrays["probe_raw"].shape == (64, 64) and arrays["probe_raw"].dtype == np.complex128
    assert arrays["object"].dtype == np.complex128 and arrays["object"].shape == (meta["object_size"],) * 2
    assert arrays["centres"].shape == (2, 2)
    assert np.all(arrays["X"] >= 0) and np.all(np.isfinite(arrays["X"]))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("N,g,photons", [(64, 1, None), (64, 2, None), (64, 3, None), (128, 2, 1e5)])
def test_normalisation(kind, N, g, photons):
    arrays, meta = _batch(N=N, gridsize=g, B=3, offsets_kind=kind, poisson_photons=photons)
    energy = np.sum(arrays["X"] ** 2, axis=(-2, -1))
    assert energy.mean() == pytest.approx((N / 2) ** 2, rel=1e-12)
    assert meta["target_energy"] == (N / 2) ** 2


def test_offsets_integer_zero_mean_per_group():
    rng = np.random.default_rng(3)
    for g in (2, 3):
        offsets, centres = synthetic.scan_groups(6, g, rng, kind="integer")
        assert offsets.shape == (6, g * g, 2) and centres.shape == (6, 2)
        np.testing.assert_array_equal(offsets, np.round(offsets))
        np.testing.assert_array_equal(offsets.mean(axis=1), 0.0)  # exactly zero
        assert 2 <= np.max(np.abs(offsets)) <= 4
        np.testing.assert_array_equal(centres, np.round(centres))


def test_offsets_row_major_channel_order():
    offsets, _ = synthetic.scan_groups(5, 2, np.random.default_rng(4), kind="integer")
    # o = -(r - mean): channel 0 (row 0, col 0) is up-left in the scan, so its offset is +x, +y
    assert np.all(offsets[:, 0, 0] > 0) and np.all(offsets[:, 0, 1] > 0)
    assert np.all(offsets[:, 1, 0] < 0) and np.all(offsets[:, 1, 1] > 0)  # col 1
    assert np.all(offsets[:, 2, 0] > 0) and np.all(offsets[:, 2, 1] < 0)  # row 1
    assert np.all(offsets[:, 3, 0] < 0) and np.all(offsets[:, 3, 1] < 0)


def test_offsets_subpixel_non_integer_zero_mean():
    rng = np.random.default_rng(5)
    for g in (2, 3):
        offsets, centres = synthetic.scan_groups(8, g, rng, kind="subpixel")
        frac = np.abs(offsets - np.round(offsets))
        assert np.all(frac >= synthetic.MIN_FRACTION)
        np.testing.assert_array_equal(offsets.sum(axis=1), 0.0)
        assert np.all(np.abs(offsets.mean(axis=1)) < 1e-15)
        assert np.any(centres != np.round(centres))


def test_offsets_biased_batch_mean_nonzero():
    rng = np.random.default_rng(6)
    for g in (1, 2, 3):
        offsets, _ = synthetic.scan_groups(4, g, rng, kind="biased")
        np.testing.assert_allclose(offsets.reshape(-1, 2).mean(axis=0), synthetic.BIAS, atol=1e-12)
        assert np.all(np.abs(offsets.reshape(-1, 2).mean(axis=0)) > 0.5)


@pytest.mark.parametrize("kind", ["integer", "subpixel"])
def test_gridsize1_offsets_are_zero(kind):
    offsets, _ = synthetic.scan_groups(3, 1, np.random.default_rng(7), kind=kind)
    assert offsets.shape == (3, 1, 2)
    np.testing.assert_array_equal(offsets, 0.0)


def test_bad_kinds_raise():
    with pytest.raises(ValueError, match="kind='diagonal'"):
        synthetic.scan_groups(2, 2, np.random.default_rng(0), kind="diagonal")
    with pytest.raises(ValueError, match="probe_kind='gauss'"):
        _batch(probe_kind="gauss")
    with pytest.raises(ValueError, match="needs an rng"):
        arrays, _ = _batch()
        synthetic.simulate(arrays["object"], arrays["probe_raw"], arrays["offsets"], arrays["centres"], 64, 4.0,
                           poisson_photons=10.0)


def _lag1_autocorrelation(a):
    a = a - a.mean()
    return float(min(np.sum(a[:, 1:] * a[:, :-1]), np.sum(a[1:, :] * a[:-1, :])) / np.sum(a * a))


def test_object_has_structure():
    obj = synthetic.make_object(96, np.random.default_rng(8))
    assert obj.shape == (96, 96) and obj.dtype == np.complex128
    amp, phase = np.abs(obj), np.angle(obj)
    assert 0.5 - 1e-12 <= amp.min() and amp.max() <= 1 + 1e-12 and amp.max() - amp.min() > 0.4
    assert -1 - 1e-12 <= phase.min() and phase.max() <= 1 + 1e-12 and phase.max() - phase.min() > 1.0
    assert _lag1_autocorrelation(amp) > 0.5
    assert _lag1_autocorrelation(phase) > 0.5
    white = np.random.default_rng(0).standard_normal((96, 96))
    assert abs(_lag1_autocorrelation(white)) < 0.1


def test_default_disk_probe():
    for N in (64, 128):
        p = synthetic.default_disk_probe(N)
        assert p.dtype == np.complex128 and p.shape == (N, N)
        assert np.all(p.imag == 0)
        assert p.real.min() == pytest.approx(1e-9, abs=1e-12)
        assert 0.9 < p.real.max() <= 1.0 + 1e-9 + 1e-15
        np.testing.assert_allclose(p, p[::-1, ::-1], atol=1e-15)  # symmetric about (N-1)/2
        np.testing.assert_allclose(p, p.T, atol=1e-15)
        # the indicator's radius: std * sqrt(2 ln 2) with std = N / (0.7 pi^2)
        radius = N / (0.7 * np.pi ** 2) * np.sqrt(2 * np.log(2))
        area = float(np.sum(p.real > 0.5))
        assert area == pytest.approx(np.pi * radius ** 2, rel=0.1)


def test_random_phase_probe():
    p = synthetic.random_phase_probe(64, np.random.default_rng(9))
    np.testing.assert_allclose(np.abs(p), synthetic.default_disk_probe(64).real, rtol=1e-12)
    phase = np.angle(p[24:40, 24:40])
    assert phase.std() > 0.05
    assert _lag1_autocorrelation(phase) > 0.5


def test_simulate_matches_oracle_physics_gridsize1():
    # g = 1, zero offsets, integer centres: the ground-truth patch through the pad path of the
    # oracle gives X / amplitude_factor exactly.
    arrays, meta = _batch(gridsize=1, B=3, seed=21)
    N = 64
    size = meta["region_size"]
    regions, rem = synthetic.cut_regions(arrays["object"], arrays["centres"], size)
    np.testing.assert_array_equal(rem, 0.0)
    truth = oracle.center_crop(regions, N)[:, None]
    out = oracle.physics_forward(truth, arrays["offsets"], arrays["probe_raw"], N=N, M=N + 10, object_big=False,
                                 probe_scale=4.0, sigma=0.0, probe_mask=False, scale=1.0)
    np.testing.assert_allclose(out["far_field_amp"] * meta["amplitude_factor"], arrays["X"], rtol=1e-10, atol=1e-12)


def test_simulate_patch_positions():
    # A single bright object pixel appears where the convention says: the patch (b, c) is
    # centred on object point centre_b - offsets_bc.
    N = 16
    obj = np.zeros((60, 60), complex)
    obj[30, 33] = 1.0  # (x=33, y=30)
    probe = np.ones((N, N), complex)
    offsets = np.array([[[-3.0, 0.0], [0.0, 2.0]]])
    centres = np.array([[30.0, 30.0]])
    size = synthetic.region_size(N, offsets, centres)
    regions, rem = synthetic.cut_regions(obj, centres, size)
    patches = oracle.extract_patches(regions, offsets - rem[:, None, :], N)
    # channel 0 is centred on x = 30 - (-3) = 33, y = 30: the bright pixel is at the patch centre
    assert patches[0, 0, N // 2, N // 2] == 1.0
    # channel 1 is centred on (30, 28): the pixel sits 2 rows below and 3 columns right of centre
    assert patches[0, 1, N // 2 + 2, N // 2 + 3] == 1.0
    X = synthetic.simulate(obj, probe, offsets, centres, N, 4.0)
    assert X.shape == (1, 2, N, N)
    np.testing.assert_allclose(X, X[0, 0, 0, 0])  # a point gives a flat far field


def test_poisson_noise_counts():
    arrays, meta = _batch(poisson_photons=1e4, seed=31)
    k = meta["counts_per_unit_intensity"]
    counts = (arrays["X"] / meta["amplitude_factor"]) ** 2 * k
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)  # integers
    assert counts.sum(axis=(-2, -1)).mean() == pytest.approx(1e4, rel=0.05)
    clean, _ = _batch(seed=31)
    np.testing.assert_array_equal(clean["offsets"], arrays["offsets"])  # independent streams
    np.testing.assert_array_equal(clean["object"], arrays["object"])
    assert not np.array_equal(clean["X"], arrays["X"])
