"""torch_impl.physics against independent NumPy/SciPy float64 oracles (forward-model.md §4-§6).

The oracles below are written from the spec and never call torch_impl.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from torch_impl import physics

DTYPES = [
    pytest.param(torch.float64, torch.complex128, 1e-12, id="float64"),
    pytest.param(torch.float32, torch.complex64, 2e-5, id="float32"),
]


def rng(seed=0):
    return np.random.default_rng(seed)


def crandn(r, *shape):
    return r.normal(size=shape) + 1j * r.normal(size=shape)


def t(x, dtype):
    return torch.from_numpy(np.ascontiguousarray(x)).to(dtype)


# ---- NumPy oracles ---------------------------------------------------------------------------
def np_translate(img, tx, ty):
    """T_t[I](y, x) = I(y - ty, x - tx), bilinear, zero fill per corner (scipy 'grid-constant')."""
    if np.iscomplexobj(img):
        return np_translate(img.real, tx, ty) + 1j * np_translate(img.imag, tx, ty)
    return ndi.shift(img, (ty, tx), order=1, mode="grid-constant", cval=0.0)


def np_pad(x, m):
    n = x.shape[-1]
    b = (m - n) // 2
    width = [(0, 0)] * (x.ndim - 2) + [(b, m - n - b)] * 2
    return np.pad(x, width)


def np_crop(x, n):
    s = (x.shape[-1] - n) // 2
    return x[..., s : s + n, s : s + n]


def np_central(n):
    m = np.zeros((n, n))
    m[n // 4 : 3 * n // 4, n // 4 : 3 * n // 4] = 1
    return m


def np_disk(n):
    c = np.arange(n) - n // 2 + 0.5
    return (np.sqrt(c[:, None] ** 2 + c[None, :] ** 2) < n // 4).astype(float)


def np_merge(p, o, m):
    b, c, n, _ = p.shape
    oc = o - o.reshape(-1, 2).mean(axis=0)
    mask = np_pad(np_central(n), m)
    out = np.zeros((b, m, m), complex)
    for i in range(b):
        num = sum(np_translate(np_pad(p[i, j], m), -oc[i, j, 0], -oc[i, j, 1]) for j in range(c))
        den = sum(np_translate(mask, -oc[i, j, 0], -oc[i, j, 1]) for j in range(c)) + 0.001
        out[i] = num / den
    return out


def np_extract(canvas, o, n):
    b, c, _ = o.shape
    return np.stack(
        [np.stack([np_crop(np_translate(canvas[i], o[i, j, 0], o[i, j, 1]), n) for j in range(c)]) for i in range(b)]
    )


def np_taps(sigma):
    w = np.exp(-np.array([1.0, 0.0, 1.0]) / (2 * sigma**2))
    return w / w.sum()


def np_smooth(x, sigma):
    k = np.outer(np_taps(sigma), np_taps(sigma))
    if np.iscomplexobj(x):
        return np_smooth(x.real, sigma) + 1j * np_smooth(x.imag, sigma)
    flat = x.reshape(-1, *x.shape[-2:])
    out = np.stack([ndi.correlate(a, k, mode="mirror") for a in flat])  # mirror = numpy 'reflect'
    return out.reshape(x.shape)


# ---- combine, far field, losses --------------------------------------------------------------
@pytest.mark.parametrize("real,cplx,tol", DTYPES)
def test_combine_complex(real, cplx, tol):
    r = rng(1)
    a, phi = r.uniform(0, 2, (2, 3, 8, 8)), r.uniform(-np.pi, np.pi, (2, 3, 8, 8))
    out = physics.combine_complex(t(a, real), t(phi, real))
    assert out.dtype == cplx
    np.testing.assert_allclose(out.numpy(), a * np.exp(1j * phi), rtol=0, atol=tol * 4)


@pytest.mark.parametrize("real,cplx,tol", DTYPES)
def test_far_field_matches_numpy_fft(real, cplx, tol):
    r = rng(2)
    psi = crandn(r, 2, 3, 64, 64)
    out = physics.far_field_amplitude(t(psi, cplx))
    assert out.dtype == real and out.shape == psi.shape
    ref = np.fft.fftshift(np.abs(np.fft.fft2(psi)), axes=(-2, -1)) / 64
    np.testing.assert_allclose(out.numpy(), ref, rtol=tol * 10, atol=tol * 10 * ref.max())


def test_far_field_of_point_is_flat():
    psi = np.zeros((1, 1, 64, 64), complex)
    psi[0, 0, 5, 9] = 64.0
    out = physics.far_field_amplitude(t(psi, torch.complex128)).numpy()
    np.testing.assert_allclose(out, np.ones_like(out), rtol=1e-14)


@pytest.mark.parametrize("real,cplx,tol", DTYPES)
def test_losses(real, cplx, tol):
    r = rng(3)
    i_pred, xs = r.uniform(0.1, 5, (2, 4, 8, 8)), r.uniform(0, 3, (2, 4, 8, 8))
    nll = physics.poisson_nll(t(i_pred, real), t(xs, real))
    mae = physics.mean_abs_error(t(np.sqrt(i_pred), real), t(xs, real))
    assert nll.shape == () and mae.shape == () and nll.dtype == real
    np.testing.assert_allclose(nll.item(), np.mean(i_pred - xs**2 * np.log(i_pred)), rtol=tol * 10)
    np.testing.assert_allclose(mae.item(), np.mean(np.abs(np.sqrt(i_pred) - xs)), rtol=tol * 10)


# ---- translation -----------------------------------------------------------------------------
def test_translate_sign_single_pixel():
    img = np.zeros((11, 11))
    img[5, 5] = 1.0
    right = physics.translate(t(img, torch.float64), torch.tensor([1.0, 0.0], dtype=torch.float64)).numpy()
    down = physics.translate(t(img, torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64)).numpy()
    assert right[5, 6] == 1.0 and right.sum() == 1.0  # +t_x moves content toward +column
    assert down[6, 5] == 1.0 and down.sum() == 1.0  # +t_y moves content toward +row
    left_up = physics.translate(t(img, torch.float64), torch.tensor([-2.0, -3.0], dtype=torch.float64)).numpy()
    assert left_up[2, 3] == 1.0 and left_up.sum() == 1.0


def test_translate_zero_fill_per_corner_at_edges():
    img = np.zeros((6, 8))
    img[2, 7] = 1.0  # on the last column
    out = physics.translate(t(img, torch.float64), torch.tensor([0.5, 0.0], dtype=torch.float64)).numpy()
    assert out[2, 7] == 0.5 and out.sum() == 0.5  # half of the edge pixel leaves the image
    img = np.zeros((6, 8))
    img[2, 0] = 1.0  # first column, moved away from the edge: nothing is lost
    out = physics.translate(t(img, torch.float64), torch.tensor([0.5, 0.0], dtype=torch.float64)).numpy()
    assert out[2, 0] == 0.5 and out[2, 1] == 0.5 and out.sum() == 1.0
    ones = np.ones((5, 7))  # the outside corner contributes 0, not the edge value
    out = physics.translate(t(ones, torch.float64), torch.tensor([0.5, -0.25], dtype=torch.float64)).numpy()
    np.testing.assert_array_equal(out[:-1, 1:], 1.0)
    np.testing.assert_array_equal(out[:-1, 0], 0.5)
    np.testing.assert_array_equal(out[-1, 1:], 0.75)
    assert out[-1, 0] == 0.375


def test_translate_far_outside_is_zero():
    img = np.ones((2, 9, 9))
    out = physics.translate(t(img, torch.float64), torch.tensor([[9.5, 0.0], [0.0, -40.2]], dtype=torch.float64))
    assert torch.count_nonzero(out) == 0


@pytest.mark.parametrize("real,cplx,tol", DTYPES)
def test_translate_interior_matches_scipy_shift_constant(real, cplx, tol):
    r = rng(4)
    img = np.zeros((5, 24, 30))
    img[:, 7:17, 7:23] = r.normal(size=(5, 10, 16))
    shifts = r.uniform(-4.5, 4.5, (5, 2))
    shifts[0] = [1.0, -2.0]  # an integer case
    out = physics.translate(t(img, real), t(shifts, real)).numpy()
    ref = np.stack([ndi.shift(img[i], (shifts[i, 1], shifts[i, 0]), order=1, mode="constant", cval=0.0) for i in range(5)])
    np.testing.assert_allclose(out, ref, rtol=0, atol=tol * 10)


@pytest.mark.parametrize("real,cplx,tol", DTYPES)
def test_translate_whole_image_matches_zero_padded_bilinear(real, cplx, tol):
    r = rng(5)
    img = crandn(r, 2, 3, 13, 17)
    shifts = r.uniform(-6, 6, (2, 3, 2))
    out = physics.translate(t(img, cplx), t(shifts, real))
    assert out.dtype == cplx and out.shape == img.shape
    ref = np.stack([np.stack([np_translate(img[i, j], *shifts[i, j]) for j in range(3)]) for i in range(2)])
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=tol * 10)


def test_translate_real_and_imag_alike_and_broadcast():
    r = rng(6)
    img = crandn(r, 4, 10, 10)
    shifts = t(r.uniform(-3, 3, (4, 2)), torch.float64)
    z = physics.translate(t(img, torch.complex128), shifts)
    re = physics.translate(t(img.real, torch.float64), shifts)
    im = physics.translate(t(img.imag, torch.float64), shifts)
    assert torch.equal(z.real, re) and torch.equal(z.imag, im)
    # one image, several shifts: broadcast of the leading axes
    one = t(img[0].real, torch.float64)
    many = physics.translate(one.expand(4, 10, 10), shifts)
    for i in range(4):
        assert torch.equal(many[i], physics.translate(one, shifts[i]))


def test_translate_float32_subpixel_accuracy():
    # integer + fraction shifts are exact in binary: float32 must not lose ~1e-6 px on a ramp
    x = np.tile(np.arange(64, dtype=float), (64, 1)) / 64
    for s in (0.25, -3.75, 5.5):
        out = physics.translate(t(x, torch.float32), torch.tensor([s, 0.0])).numpy()
        ref = (np.arange(64) - s) / 64
        np.testing.assert_allclose(out[10, 8:56], ref[8:56], rtol=0, atol=1e-7)


# ---- pad, crop, masks ------------------------------------------------------------------------
def test_pad_and_crop():
    x = t(np.arange(16.0).reshape(1, 4, 4), torch.float64)
    p = physics.pad_to(x, 7)  # (M - N) odd: before 1, after 2
    assert p.shape == (1, 7, 7)
    np.testing.assert_array_equal(p[0, 1:5, 1:5].numpy(), x[0].numpy())
    assert p.sum() == x.sum()
    assert torch.equal(physics.center_crop(p, 4), x)
    z = t(crandn(rng(7), 2, 3, 64, 64), torch.complex64)
    assert torch.equal(physics.center_crop(physics.pad_to(z, 78), 64), z)
    np.testing.assert_array_equal(physics.pad_to(z, 78).numpy(), np_pad(z.numpy(), 78))


@pytest.mark.parametrize("n", [64, 128])
def test_masks(n):
    c = physics.central_mask(n).numpy()
    np.testing.assert_array_equal(c, np_central(n))
    assert c.sum() == (n // 2) ** 2 and c[n // 4, n // 4] == 1 and c[n // 4 - 1, n // 2] == 0 and c[3 * n // 4, n // 2] == 0
    np.testing.assert_array_equal(physics.border_mask(n).numpy(), 1 - np_central(n))
    np.testing.assert_array_equal(physics.disk_mask(n).numpy(), np_disk(n))
    d = physics.disk_mask(n, dtype=torch.float32)
    assert d.dtype == torch.float32 and torch.equal(d, d.flip(0)) and torch.equal(d, d.T)


# ---- merge / extract -------------------------------------------------------------------------
@pytest.mark.parametrize("real,cplx,tol", DTYPES)
def test_merge_matches_oracle_subpixel(real, cplx, tol):
    r = rng(8)
    b, c, n, m = 3, 4, 64, 78
    p = crandn(r, b, c, n, n)
    o = r.uniform(-3, 3, (b, c, 2)) + 0.7  # batch mean not zero: recentred inside the merge
    out = physics.merge_patches(t(p, cplx), t(o, real), m)
    assert out.shape == (b, m, m) and out.dtype == cplx
    ref = np_merge(p, o, m)
    # the unmasked numerator is divided by ~0.001 outside the windows: compare relative to the max
    np.testing.assert_allclose(out.numpy(), ref, rtol=tol * 10, atol=tol * 10 * np.abs(ref).max())


def test_merge_recentres_over_all_patches():
    r = rng(9)
    p = t(crandn(r, 2, 4, 64, 64), torch.complex128)
    o = t(r.uniform(-3, 3, (2, 4, 2)), torch.float64)
    a = physics.merge_patches(p, o, 78)
    b = physics.merge_patches(p, o + torch.tensor([2.5, -1.25], dtype=torch.float64), 78)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


def test_merge_extract_round_trip_integer_offsets():
    r = rng(10)
    n, m = 64, 74
    p = np.zeros((4, 1, n, n), complex)
    p[..., 16:48, 16:48] = crandn(r, 4, 1, 32, 32)  # confined to the centre window
    o = np.array([[[3.0, -2.0]], [[-3.0, 2.0]], [[1.0, 4.0]], [[-1.0, -4.0]]])  # zero mean
    canvas = physics.merge_patches(t(p, torch.complex128), t(o, torch.float64), m)
    back = physics.extract_patches(canvas, t(o, torch.float64), n).numpy()
    np.testing.assert_allclose(back[..., 16:48, 16:48], p[..., 16:48, 16:48] / 1.001, rtol=1e-13, atol=1e-13)
    # float32 too
    canvas32 = physics.merge_patches(t(p, torch.complex64), t(o, torch.float32), m)
    back32 = physics.extract_patches(canvas32, t(o, torch.float32), n).numpy()
    np.testing.assert_allclose(back32[..., 16:48, 16:48], p[..., 16:48, 16:48] / 1.001, rtol=0, atol=2e-6)


def test_merge_extract_consistent_object_gridsize2():
    # four crops of one object at integer offsets: the merge gives obj * cnt / (cnt + 0.001)
    r = rng(11)
    n, m = 64, 78
    obj = crandn(r, m, m)
    o = np.array([[[2.0, 2.0], [-2.0, 2.0], [2.0, -2.0], [-2.0, -2.0]]])
    win = np_central(n)
    p = np.stack([np_crop(np_translate(obj, *o[0, j]), n) * win for j in range(4)])[None]
    canvas = physics.merge_patches(t(p, torch.complex128), t(o, torch.float64), m).numpy()
    cnt = sum(np_translate(np_pad(win, m), *(-o[0, j])) for j in range(4))
    ref = obj * cnt / (cnt + 0.001)
    np.testing.assert_allclose(canvas[0], ref, rtol=0, atol=1e-12)
    back = physics.extract_patches(t(canvas, torch.complex128), t(o, torch.float64), n).numpy()
    np.testing.assert_allclose(back, np_extract(canvas, o, n), rtol=0, atol=1e-12)


def test_every_sample_gets_its_own_canvas_even_when_bc_at_least_64():
    r = rng(12)
    b, c = 17, 4  # B*C = 68
    p = crandn(r, b, c, 64, 64)
    o = r.uniform(-3, 3, (b, c, 2))
    o -= o.mean(axis=1, keepdims=True)  # zero mean per group, hence over the batch
    canvas = physics.merge_patches(t(p, torch.complex128), t(o, torch.float64), 78)
    assert canvas.shape == (b, 78, 78)
    for i in (0, 16):
        single = physics.merge_patches(t(p[i : i + 1], torch.complex128), t(o[i : i + 1], torch.float64), 78)
        torch.testing.assert_close(canvas[i : i + 1], single, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("real,cplx,tol", DTYPES)
def test_extract_uses_offsets_as_given(real, cplx, tol):
    r = rng(13)
    canvas = crandn(r, 2, 78, 78)
    o = r.uniform(-4, 4, (2, 4, 2)) + 1.5  # not recentred
    out = physics.extract_patches(t(canvas, cplx), t(o, real), 64)
    assert out.shape == (2, 4, 64, 64) and out.dtype == cplx
    np.testing.assert_allclose(out.numpy(), np_extract(canvas, o, 64), rtol=0, atol=tol * 10)


def test_pad_patches():
    p = t(crandn(rng(14), 3, 1, 64, 64), torch.complex64)
    out = physics.pad_patches(p, 74)
    assert out.shape == (3, 74, 74)
    assert torch.equal(physics.center_crop(out, 64), p[:, 0])
    with pytest.raises(ValueError, match=r"\(B, 1, N, N\)"):
        physics.pad_patches(t(crandn(rng(14), 3, 4, 64, 64), torch.complex64), 74)


# ---- probe, smoothing, illumination ----------------------------------------------------------
@pytest.mark.parametrize("real,cplx,tol", DTYPES)
@pytest.mark.parametrize("scale", [4.0, 10.0])
def test_normalize_probe(real, cplx, tol, scale):
    raw = crandn(rng(15), 64, 64) * 3.0
    out = physics.normalize_probe(t(raw, cplx), scale)
    assert out.dtype == cplx
    d = np_disk(64)
    np.testing.assert_allclose(np.mean(np.abs(d * out.numpy())), 1 / scale, rtol=tol * 10)
    ref = raw / (scale * np.mean(np.abs(d * raw)))
    np.testing.assert_allclose(out.numpy(), ref, rtol=tol * 10, atol=tol * 10 * np.abs(ref).max())


def test_gaussian_taps():
    for sigma in (0.3, 1.0, 2.5):
        taps = physics.gaussian_taps(sigma)
        assert taps.dtype == torch.float64
        np.testing.assert_allclose(taps.numpy(), np_taps(sigma), rtol=1e-15)
        assert abs(taps.sum().item() - 1) < 1e-15
    assert physics.gaussian_taps(1.0, dtype=torch.float32).dtype == torch.float32
    with pytest.raises(ValueError, match="sigma"):
        physics.gaussian_taps(0.0)


@pytest.mark.parametrize("real,cplx,tol", DTYPES)
def test_smooth_complex_reflect(real, cplx, tol):
    psi = crandn(rng(16), 2, 3, 16, 16)
    out = physics.smooth_complex(t(psi, cplx), 0.8)
    assert out.dtype == cplx
    np.testing.assert_allclose(out.numpy(), np_smooth(psi, 0.8), rtol=0, atol=tol * 10)
    # a constant image stays constant
    flat = physics.smooth_complex(torch.ones(1, 8, 8, dtype=cplx), 1.0)
    torch.testing.assert_close(flat, torch.ones(1, 8, 8, dtype=cplx))
    # reflect = mirror without repeating the edge: an edge spike is not doubled by the padding
    spike = np.zeros((1, 8, 8))
    spike[0, 0, 3] = 1.0
    out = physics.smooth_complex(t(spike + 0j, cplx), 1.0).numpy().real
    k = np_taps(1.0)
    assert out[0, 0, 3] == pytest.approx(k[1] * k[1], rel=tol * 10)  # symmetric padding would give k1*(k0+k1)
    assert out[0, 1, 3] == pytest.approx(k[0] * k[1], rel=tol * 10)


@pytest.mark.parametrize("real,cplx,tol", DTYPES)
@pytest.mark.parametrize("sigma,mask", [(0.0, False), (0.0, True), (0.7, False), (0.7, True)])
def test_illuminate(real, cplx, tol, sigma, mask):
    r = rng(17)
    e, probe = crandn(r, 2, 4, 64, 64), crandn(r, 64, 64)
    out = physics.illuminate(t(e, cplx), t(probe, cplx), sigma, mask)
    ref = probe * e
    if sigma > 0:
        ref = np_smooth(ref, sigma)
    if mask:
        ref = ref * np_disk(64)
    assert out.dtype == cplx and out.shape == e.shape
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=tol * 20)
