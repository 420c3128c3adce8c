"""parity.byo.layouts: each step there and back, and a layout that does not fit names the stage,
the declared layout and the runtime shape."""
import numpy as np
import pytest

from parity.byo.layouts import (COMPLEX, NHWC, LayoutError, complex_from, drop, layout, scale, select, to_canonical,
                                to_native, transpose, unflatten)

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("steps, native", [
    (NHWC, RNG.normal(size=(2, 5, 5, 3))),
    (unflatten(3), RNG.normal(size=(6, 5, 5, 1))),
    (unflatten("channels"), RNG.normal(size=(6, 5, 5, 1))),
    (drop(-1), RNG.normal(size=(2, 5, 1))),
    (scale(np.pi), RNG.normal(size=(2, 3))),
    (transpose(1, 0, 2), RNG.normal(size=(2, 3, 4))),
    (complex_from(-1), RNG.normal(size=(2, 3, 2))),
    ((NHWC, scale("gain")), RNG.normal(size=(2, 5, 5, 3))),
])
def test_steps_round_trip(steps, native):
    steps = layout(steps)
    config = {"channels": 3, "gain": 2.0}
    canonical = to_canonical("s", steps, native, config)
    back = to_native("s", steps, canonical, config)
    np.testing.assert_allclose(back, native, rtol=1e-15)


def test_the_canonical_values():
    a = RNG.normal(size=(2, 4, 4, 3))
    np.testing.assert_array_equal(to_canonical("s", layout(NHWC), a), a.transpose(0, 3, 1, 2))
    flat = np.arange(2 * 3 * 4 * 4, dtype=float).reshape(6, 4, 4, 1)  # row b * C + c
    out = to_canonical("s", layout(unflatten(3)), flat)
    assert out.shape == (2, 3, 4, 4)
    np.testing.assert_array_equal(out[1, 2], flat[1 * 3 + 2, ..., 0])
    np.testing.assert_array_equal(to_canonical("s", layout(select(1, 2)), a), a[:, 2])
    re, im = RNG.normal(size=(2, 4, 4, 3)), RNG.normal(size=(2, 4, 4, 3))
    z = to_canonical("s", layout((NHWC, COMPLEX)), (re, im))
    np.testing.assert_array_equal(z, (re + 1j * im).transpose(0, 3, 1, 2))
    assert isinstance(to_native("s", layout((NHWC, COMPLEX)), z), tuple)


@pytest.mark.parametrize("steps, native, words", [
    (NHWC, np.zeros((2, 4, 4)), "NHWC->NCHW"),
    (unflatten(3), np.zeros((4, 4, 4, 1)), "unflatten(3)"),
    (unflatten(3), np.zeros((6, 4, 4, 2)), "unflatten(3)"),
    (drop(0), np.zeros((2, 3)), "drop(0)"),
    (select(1, 5), np.zeros((2, 3)), "select(1, 5)"),
    (COMPLEX, np.zeros((2, 3)), "complex"),
    (complex_from(-1), np.zeros((2, 3)), "complex_from(-1)"),
])
def test_a_layout_that_does_not_fit_names_stage_layout_and_shape(steps, native, words):
    with pytest.raises(LayoutError) as err:
        to_canonical("far_field", layout(steps), native)
    text = str(err.value)
    assert "stage 'far_field'" in text and words in text and str(native.shape) in text


def test_a_pair_left_uncombined_and_a_missing_config_field():
    with pytest.raises(LayoutError, match="captured 2 tensors"):
        to_canonical("s", (), (np.zeros(2), np.zeros(2)))
    with pytest.raises(LayoutError, match="config field 'channels'"):
        to_canonical("s", layout(unflatten("channels")), np.zeros((4, 2, 2, 1)), {"size": 2})


def test_select_cannot_be_undone():
    with pytest.raises(LayoutError, match="cannot be undone"):
        to_native("s", layout(select(0, 0)), np.zeros(3))


def test_layout_spellings():
    assert layout(None) == () and layout("nhwc") == (NHWC,) and layout(["nhwc", "complex"]) == (NHWC, COMPLEX)
    with pytest.raises(ValueError, match="unknown layout"):
        layout("nchw_please")
