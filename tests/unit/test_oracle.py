"""Unit tests of the float64 NumPy physics oracle (parity/oracle.py)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage

from parity import oracle, stages


def _rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------
# translate
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [(0.0, 0.0), (1.0, -2.0), (0.25, 0.5), (-1.3, 2.7), (3.6, -0.45)])
def test_translate_matches_scipy_shift_in_interior(t):
    img = _rng(1).standard_normal((20, 24))
    tx, ty = t
    ours = oracle.translate(img, np.array([tx, ty]))
    ref_constant = ndimage.shift(img, (ty, tx), order=1, mode="constant", cval=0.0, prefilter=False)
    # Where the sample point lies inside [0, H-1] x [0, W-1] both conventions agree.
    yy, xx = np.mgrid[0:20, 0:24]
    sy, sx = yy - ty, xx - tx
    interior = (sy >= 0) & (sy <= 19) & (sx >= 0) & (sx <= 23)
    assert interior.sum() > 100
    np.testing.assert_allclose(ours[interior], ref_constant[interior], rtol=0, atol=1e-12)
    # scipy's 'grid-constant' mode is our zero-fill convention everywhere.
    ref_grid = ndimage.shift(img, (ty, tx), order=1, mode="grid-constant", cval=0.0, prefilter=False)
    np.testing.assert_allclose(ours, ref_grid, rtol=0, atol=1e-12)


def test_translate_sign_convention():
    img = np.zeros((9, 9))
    img[4, 3] = 1.0
    moved_x = oracle.translate(img, [1.0, 0.0])
    assert moved_x[4, 4] == 1.0 and moved_x.sum() == 1.0
    moved_y = oracle.translate(img, [0.0, 2.0])
    assert moved_y[6, 3] == 1.0 and moved_y.sum() == 1.0
    moved_neg = oracle.translate(img, [-2.0, -1.0])
    assert moved_neg[3, 1] == 1.0


def test_translate_zero_fill_at_edge():
    img = np.zeros((6, 6))
    img[2, 5] = 1.0  # last column
    half = oracle.translate(img, [0.5, 0.0])
    # Output column 5 samples x = 4.5: half of pixel 5 plus half of pixel 4 (= 0).
    assert half[2, 5] == pytest.approx(0.5)
    # The outside contributes 0: nothing wraps around to column 0.
    assert half[:, 0].sum() == 0.0
    assert half.sum() == pytest.approx(0.5)
    # Shifting a constant image by a sub-pixel amount halves the entering edge only.
    ones = oracle.translate(np.ones((5, 5)), [0.5, 0.0])
    np.testing.assert_allclose(ones[:, 0], 0.5)
    np.testing.assert_allclose(ones[:, 1:], 1.0)
    # Everything leaves: all zeros.
    assert np.all(oracle.translate(np.ones((5, 5)), [5.0, 0.0]) == 0.0)


def test_translate_complex_and_batch_broadcast():
    rng = _rng(2)
    z = rng.standard_normal((3, 2, 10, 10)) + 1j * rng.standard_normal((3, 2, 10, 10))
    shifts = rng.uniform(-2, 2, size=(3, 2, 2))
    out = oracle.translate(z, shifts)
    assert out.dtype == np.complex128 and out.shape == z.shape
    np.testing.assert_allclose(out.real, oracle.translate(z.real, shifts), atol=1e-14)
    np.testing.assert_allclose(out.imag, oracle.translate(z.imag, shifts), atol=1e-14)
    single = oracle.translate(z[1, 0], shifts[1, 0])
    np.testing.assert_allclose(out[1, 0], single, atol=1e-14)
    # one shift for a whole stack broadcasts
    same = oracle.translate(z, np.array([0.5, -1.0]))
    np.testing.assert_allclose(same[2, 1], oracle.translate(z[2, 1], [0.5, -1.0]), atol=1e-14)


def test_translate_integer_round_trip_is_exact_inside():
    img = _rng(3).standard_normal((12, 12))
    back = oracle.translate(oracle.translate(img, [2.0, -3.0]), [-2.0, 3.0])
    np.testing.assert_array_equal(back[3:10, 0:10], img[3:10, 0:10])


# ---------------------------------------------------------------------------------------------
# padding, masks
# ---------------------------------------------------------------------------------------------
def test_pad_crop_and_masks():
    x = _rng(4).standard_normal((2, 8, 8))
    padded = oracle.pad_to(x, 13)  # odd difference: 2 before, 3 after
    assert padded.shape == (2, 13, 13)
    np.testing.assert_array_equal(padded[:, 2:10, 2:10], x)
    assert padded[:, :2].sum() == 0 and padded[:, 10:].sum() == 0
    np.testing.assert_array_equal(oracle.center_crop(padded, 8), x)
    np.testing.assert_array_equal(oracle.center_crop(oracle.pad_to(x, 14), 8), x)

    m = oracle.central_mask(16)
    assert m.sum() == 64 and m[4:12, 4:12].all() and m[3, 4] == 0 and m[4, 12] == 0
    np.testing.assert_array_equal(oracle.border_mask(16) + m, np.ones((16, 16)))

    d = oracle.disk_mask(64)
    assert d.dtype == np.float64
    np.testing.assert_array_equal(d, d[::-1, :])  # symmetric about (N-1)/2
    np.testing.assert_array_equal(d, d.T)
    assert d[32, 32] == 1 and d[32, 47] == 1 and d[32, 48] == 0  # radius 16, x = 15.5 in, 16.5 out
    assert d.sum() == pytest.approx(np.pi * 16 ** 2, rel=0.03)


# ---------------------------------------------------------------------------------------------
# merge / extract
# ---------------------------------------------------------------------------------------------
def _confined_patches(rng, B, C, N):
    p = rng.standard_normal((B, C, N, N)) + 1j * rng.standard_normal((B, C, N, N))
    return p * oracle.central_mask(N)


def test_merge_extract_round_trip_gridsize1():
    N, M = 16, 24
    p = _confined_patches(_rng(5), 2, 1, N)
    offsets = np.array([[[2.0, -1.0]], [[-2.0, 1.0]]])  # zero mean over the batch
    canvas = oracle.merge_patches(p, offsets, M)
    assert canvas.shape == (2, M, M) and canvas.dtype == np.complex128
    back = oracle.extract_patches(canvas, offsets, N)
    window = oracle.central_mask(N).astype(bool)
    np.testing.assert_allclose(back[..., window], p[..., window] / 1.001, rtol=1e-13, atol=1e-15)


def test_merge_extract_round_trip_disjoint_windows():
    # g = 2 with offsets +-N/4: the four central windows tile the canvas without overlap.
    N, M = 16, 26
    p = _confined_patches(_rng(6), 3, 4, N)
    grid = np.array([[-4.0, -4.0], [4.0, -4.0], [-4.0, 4.0], [4.0, 4.0]])
    offsets = np.broadcast_to(grid, (3, 4, 2)).copy()
    canvas = oracle.merge_patches(p, offsets, M)
    back = oracle.extract_patches(canvas, offsets, N)
    window = oracle.central_mask(N).astype(bool)
    np.testing.assert_allclose(back[..., window], p[..., window] / 1.001, rtol=1e-13, atol=1e-15)
    # the merged patch sits at canvas centre - offset: patch 0 (offset (-4,-4)) lands at +4,+4
    start = (M - N) // 2 + 4
    np.testing.assert_allclose(canvas[0, start + 4:start + 12, start + 4:start + 12],
                               p[0, 0, 4:12, 4:12] / 1.001, rtol=1e-13)


def test_merge_recentres_over_batch_but_extract_does_not():
    N, M = 16, 24
    p = _confined_patches(_rng(7), 2, 1, N)
    zero = np.zeros((2, 1, 2))
    biased = zero + np.array([1.0, -2.0])
    np.testing.assert_allclose(oracle.merge_patches(p, biased, M), oracle.merge_patches(p, zero, M))
    e0 = oracle.extract_patches(oracle.merge_patches(p, zero, M), zero, N)
    e1 = oracle.extract_patches(oracle.merge_patches(p, biased, M), biased, N)
    np.testing.assert_allclose(e1, oracle.translate(e0, np.array([1.0, -2.0])), atol=1e-14)


def test_merge_divides_unmasked_border_by_eps():
    N, M = 16, 20
    p = np.zeros((1, 1, N, N), complex)
    p[0, 0, 1, 1] = 1.0  # outside the central window
    canvas = oracle.merge_patches(p, np.zeros((1, 1, 2)), M)
    assert abs(canvas[0, 3, 3]) == pytest.approx(1000.0)


def test_pad_patches():
    p = _rng(8).standard_normal((2, 1, 8, 8)) + 0j
    c = oracle.pad_patches(p, 12)
    assert c.shape == (2, 12, 12)
    np.testing.assert_array_equal(c[:, 2:10, 2:10], p[:, 0])
    with pytest.raises(ValueError):
        oracle.pad_patches(np.zeros((2, 4, 8, 8)), 12)


# ---------------------------------------------------------------------------------------------
# probe, smoothing, illumination
# ---------------------------------------------------------------------------------------------
def test_normalize_probe():
    rng = _rng(9)
    probe = rng.standard_normal((32, 32)) + 1j * rng.standard_normal((32, 32))
    P = oracle.normalize_probe(probe, 4.0)
    d = oracle.disk_mask(32)
    assert 4.0 * np.mean(np.abs(d * P)) == pytest.approx(1.0, rel=1e-13)
    np.testing.assert_allclose(P / probe, (P / probe)[0, 0])  # a real positive rescale
    assert (P / probe)[0, 0].imag == pytest.approx(0.0) and (P / probe)[0, 0].real > 0
    # content outside the disk does not enter the norm
    probe2 = probe * d + 100.0 * (1 - d)
    P2 = oracle.normalize_probe(probe2, 2.0)
    assert 2.0 * np.mean(np.abs(d * P2)) == pytest.approx(1.0, rel=1e-13)


@pytest.mark.parametrize("sigma", [0.3, 0.5, 1.0, 3.0])
def test_gaussian_taps_and_smoothing(sigma):
    taps = oracle.gaussian_taps(sigma)
    assert taps.sum() == pytest.approx(1.0, abs=1e-15)
    assert taps[0] == taps[2] and taps[1] > taps[0] > 0
    assert taps[0] / taps[1] == pytest.approx(np.exp(-1.0 / (2 * sigma ** 2)))
    const = np.full((2, 7, 9), 1.5 - 2.0j)
    np.testing.assert_allclose(oracle.smooth_complex(const, sigma), const, atol=1e-14)
    # reflect padding in numpy's sense == scipy's "mirror"
    rng = _rng(10)
    z = rng.standard_normal((6, 8)) + 1j * rng.standard_normal((6, 8))
    kernel = np.outer(taps, taps)
    ref = ndimage.correlate(z.real, kernel, mode="mirror") + 1j * ndimage.correlate(z.imag, kernel, mode="mirror")
    np.testing.assert_allclose(oracle.smooth_complex(z, sigma), ref, atol=1e-14)


def test_gaussian_taps_limits():
    np.testing.assert_array_equal(oracle.gaussian_taps(0.0), [0.0, 1.0, 0.0])
    with pytest.raises(ValueError):
        oracle.gaussian_taps(-1.0)


def test_illuminate_order_smooth_then_mask():
    rng = _rng(11)
    N = 16
    e = rng.standard_normal((1, 2, N, N)) + 1j * rng.standard_normal((1, 2, N, N))
    P = rng.standard_normal((N, N)) + 1j * rng.standard_normal((N, N))
    np.testing.assert_allclose(oracle.illuminate(e, P), P * e)
    got = oracle.illuminate(e, P, sigma=0.7, probe_mask=True)
    np.testing.assert_allclose(got, oracle.smooth_complex(P * e, 0.7) * oracle.disk_mask(N))


# ---------------------------------------------------------------------------------------------
# far field and losses
# ---------------------------------------------------------------------------------------------
def test_far_field_matches_direct_dft_and_parseval():
    N = 8
    rng = _rng(12)
    psi = rng.standard_normal((2, N, N)) + 1j * rng.standard_normal((2, N, N))
    got = oracle.far_field_amplitude(psi)
    expected = np.zeros((2, N, N))
    for b in range(2):
        for ky in range(N):
            for kx in range(N):
                total = 0j
                for y in range(N):
                    for x in range(N):
                        total += psi[b, y, x] * np.exp(-2j * np.pi * (ky * y + kx * x) / N)
                # fftshift: frequency 0 goes to index N // 2
                expected[b, (ky + N // 2) % N, (kx + N // 2) % N] = abs(total) / N
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose((got ** 2).sum(axis=(-2, -1)), (np.abs(psi) ** 2).sum(axis=(-2, -1)), rtol=1e-12)
    # DC term of a constant field sits at the centre pixel
    dc = oracle.far_field_amplitude(np.ones((N, N)))
    assert dc[N // 2, N // 2] == pytest.approx(N) and dc.sum() == pytest.approx(N)


def test_losses():
    I = np.array([[1.0, 4.0], [2.0, 0.5]])
    Xs = np.array([[1.0, 1.0], [0.0, 2.0]])
    expected = np.mean(I - Xs ** 2 * np.log(I))
    assert oracle.poisson_nll(I, Xs) == pytest.approx(expected)
    assert oracle.mean_abs_error(np.sqrt(I), Xs) == pytest.approx(np.mean(np.abs(np.sqrt(I) - Xs)))


# ---------------------------------------------------------------------------------------------
# the whole physics chain
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("object_big,gridsize", [(True, 2), (False, 1), (False, 2), (True, 1)])
def test_physics_forward_stages(object_big, gridsize):
    N, B = 16, 3
    C = gridsize * gridsize
    K = C if object_big else 1
    M = N + (gridsize - 1) * 4 + 6
    rng = _rng(13)
    patches = _confined_patches(rng, B, K, N) + 0.1
    offsets = rng.integers(-2, 3, size=(B, C, 2)).astype(float)
    probe = rng.standard_normal((N, N)) + 1j * rng.standard_normal((N, N))
    Xs = np.abs(rng.standard_normal((B, C, N, N)))
    out = oracle.physics_forward(patches, offsets, probe, N=N, M=M, object_big=object_big, probe_scale=4.0,
                                 sigma=0.5, probe_mask=True, scale=3.0, diffraction=Xs)
    config = SimpleNamespace(C=C, K=K, N=N, M=M, n_filters_scale=1)
    shapes = stages.expected_shapes(config, B)
    for st in stages.STAGES:
        if st.name in out:
            value = out[st.name]
            assert np.shape(value) == shapes[st.name], st.name
            assert np.iscomplexobj(value) == st.complex, st.name
    assert set(out) == {"canvas", "trimmed_object", "extracted_patches", "probe", "exit_wave",
                        "far_field_amp", "pred_amp", "pred_intensity", "loss_nll", "loss_mae"}
    np.testing.assert_allclose(out["pred_amp"], 3.0 * out["far_field_amp"])
    np.testing.assert_allclose(out["pred_intensity"], out["pred_amp"] ** 2)
    np.testing.assert_allclose(out["trimmed_object"], oracle.center_crop(out["canvas"], N))
    assert out["loss_nll"] == pytest.approx(oracle.poisson_nll(out["pred_intensity"], Xs))
