"""reference_tf.physics against independent NumPy / SciPy float64 oracles."""
import numpy as np
import pytest
import scipy.ndimage

tf = pytest.importorskip("tensorflow")
from reference_tf import physics  # noqa: E402

RNG = np.random.default_rng(1234)


def _tf_translate(img, tx, ty, dtype=tf.float64):
    """img (H, W) -> translated (H, W) through the channels-last API."""
    x = tf.constant(img[None, :, :, None], dtype=dtype if not np.iscomplexobj(img) else tf.complex128)
    t = tf.constant([[[tx, ty]]], dtype=tf.float64)
    return physics.translate(x, t).numpy()[0, :, :, 0]


def test_translate_sign_moves_content_toward_positive_axes():
    img = np.zeros((9, 9))
    img[4, 4] = 1.0
    out = _tf_translate(img, 1.0, 0.0)
    assert out[4, 5] == 1.0 and out.sum() == 1.0
    out = _tf_translate(img, 0.0, 2.0)
    assert out[6, 4] == 1.0 and out.sum() == 1.0
    out = _tf_translate(img, -3.0, -1.0)
    assert out[3, 1] == 1.0


@pytest.mark.parametrize("tx,ty", [(0.3, -1.7), (2.5, 0.25), (-0.75, 3.4), (1.0, 1.0)])
def test_translate_matches_scipy_shift_in_the_interior(tx, ty):
    img = np.zeros((32, 32))
    img[8:24, 8:24] = RNG.normal(size=(16, 16))
    ours = _tf_translate(img, tx, ty)
    oracle = scipy.ndimage.shift(img, (ty, tx), order=1, mode="constant", cval=0.0)
    np.testing.assert_allclose(ours, oracle, rtol=0, atol=1e-13)


def test_translate_zero_fill_per_corner_at_the_edge():
    img = np.zeros((4, 4))
    img[1, 3] = 1.0  # last column
    out = _tf_translate(img, 0.5, 0.0)
    # half of the pixel moves outside and is lost; the outside contributes 0 coming in
    assert out[1, 3] == pytest.approx(0.5, abs=1e-15)
    assert out.sum() == pytest.approx(0.5, abs=1e-15)
    out = _tf_translate(np.ones((4, 4)), -0.25, 0.0)
    assert out[:, :3] == pytest.approx(np.ones((4, 3)))
    assert out[:, 3] == pytest.approx(0.75 * np.ones(4))


def test_translate_complex_parts_alike():
    img = RNG.normal(size=(16, 16)) + 1j * RNG.normal(size=(16, 16))
    out = _tf_translate(img, 0.4, -1.3)
    re = _tf_translate(img.real, 0.4, -1.3)
    im = _tf_translate(img.imag, 0.4, -1.3)
    np.testing.assert_array_equal(out, re + 1j * im)


def test_far_field_matches_numpy_fft():
    psi = RNG.normal(size=(2, 16, 16, 3)) + 1j * RNG.normal(size=(2, 16, 16, 3))
    ours = physics.far_field_amplitude(tf.constant(psi)).numpy()
    oracle = np.fft.fftshift(np.abs(np.fft.fft2(psi, axes=(1, 2))), axes=(1, 2)) / 16
    np.testing.assert_allclose(ours, oracle, rtol=1e-12, atol=0)


def test_probe_normalisation_and_masks():
    n = 64
    probe = RNG.normal(size=(n, n)) + 1j * RNG.normal(size=(n, n))
    p = physics.normalize_probe(tf.constant(probe), 4.0).numpy()
    d = physics.disk_mask(n)
    assert np.mean(np.abs(d * p)) == pytest.approx(0.25, rel=1e-13)
    c = np.arange(n) - n // 2 + 0.5
    assert d.sum() == np.sum(np.hypot(c[:, None], c[None, :]) < 16)
    m = physics.central_mask(n)
    assert m.sum() == 32 * 32 and m[16, 16] == 1 and m[15, 16] == 0 and m[47, 47] == 1 and m[48, 47] == 0
    np.testing.assert_array_equal(physics.border_mask(n) + m, np.ones((n, n)))


def test_merge_extract_round_trip_integer_offsets():
    n, M = 64, 78
    patches = np.zeros((2, n, n, 4), dtype=complex)
    patches[:, 16:48, 16:48, :] = RNG.normal(size=(2, 32, 32, 4)) + 1j * RNG.normal(size=(2, 32, 32, 4))
    offsets = np.array([[[-2, -2], [2, -2], [-2, 2], [2, 2]]] * 2, dtype=float)
    # one patch per sample so merging does not mix patches
    single = patches[..., :1]
    canvas = physics.merge_patches(tf.constant(single), tf.constant(offsets[:, :1]), M)
    back = physics.extract_patches(canvas, tf.constant(np.zeros((2, 1, 2))), n).numpy()
    # offsets of a single patch recentre to zero, so this is p / 1.001 on the window
    win = (slice(None), slice(16, 48), slice(16, 48), 0)
    np.testing.assert_allclose(back[win], single[win] / 1.001, rtol=1e-13)


def test_merge_formula_against_explicit_oracle():
    n, M = 16, 22
    patches = RNG.normal(size=(2, n, n, 4)) + 1j * RNG.normal(size=(2, n, n, 4))
    offsets = RNG.uniform(-2, 2, size=(2, 4, 2)) + 0.3
    canvas = physics.merge_patches(tf.constant(patches), tf.constant(offsets), M).numpy()[..., 0]
    o = offsets - offsets.mean(axis=(0, 1))
    mask = np.pad(physics.central_mask(n), 3)
    for b in range(2):
        num = sum(
            scipy.ndimage.shift(np.pad(patches[b, :, :, c].real, 3), (-o[b, c, 1], -o[b, c, 0]), order=1)
            + 1j * scipy.ndimage.shift(np.pad(patches[b, :, :, c].imag, 3), (-o[b, c, 1], -o[b, c, 0]), order=1)
            for c in range(4)
        )
        den = sum(scipy.ndimage.shift(mask, (-o[b, c, 1], -o[b, c, 0]), order=1) for c in range(4)) + 0.001
        # scipy's constant mode treats the outside like our zero fill only away from the edge
        np.testing.assert_allclose(canvas[b, 2:-2, 2:-2], (num / den)[2:-2, 2:-2], rtol=1e-10, atol=1e-10)


def test_gaussian_smoothing_reflect():
    taps = physics.gaussian_taps(0.8)
    assert taps.sum() == pytest.approx(1.0, abs=1e-15) and taps[0] == taps[2] < taps[1]
    psi = RNG.normal(size=(1, 8, 8, 1)) + 1j * RNG.normal(size=(1, 8, 8, 1))
    ours = physics.smooth_complex(tf.constant(psi), 0.8).numpy()
    k = np.outer(taps, taps)
    oracle = scipy.ndimage.correlate(psi[0, :, :, 0].real, k, mode="mirror") + 1j * scipy.ndimage.correlate(
        psi[0, :, :, 0].imag, k, mode="mirror"
    )  # scipy 'mirror' == TF 'REFLECT' (edge not repeated)
    np.testing.assert_allclose(ours[0, :, :, 0], oracle, rtol=1e-13, atol=1e-15)


def test_float32_reaches_single_precision():
    img = RNG.normal(size=(32, 32))
    ours = _tf_translate(img, 0.3, -1.7, dtype=tf.float32)
    oracle = scipy.ndimage.shift(img, (-1.7, 0.3), order=1, mode="constant")
    err = np.max(np.abs(ours[3:-3, 3:-3] - oracle[3:-3, 3:-3])) / np.max(np.abs(oracle))
    assert err < 1e-6
