"""parity.byo.weights: a transfer sets every parameter or says which would keep random values."""
import numpy as np
import pytest

from parity.byo.weights import WeightMap, WeightMapError, conv2d_weights, hwio_to_oihw, io_to_oi

NEUTRAL = {"c1/kernel": np.arange(3 * 3 * 2 * 4, dtype=float).reshape(3, 3, 2, 4), "c1/bias": np.ones(4),
           "d/kernel": np.ones((5, 3)), "d/bias": np.zeros(3)}
TARGETS = {"conv.weight": (4, 2, 3, 3), "conv.bias": (4,), "fc.weight": (3, 5), "fc.bias": (3,)}


def full_map(**kw):
    return conv2d_weights(["c1"], ["conv"]) + WeightMap({"fc.weight": ("d/kernel", io_to_oi), "fc.bias": "d/bias"},
                                                        **kw)


def test_conv_layers_map_onto_modules_with_the_kernel_transposed():
    out = full_map().transfer(NEUTRAL, TARGETS, side="port")
    assert set(out) == set(TARGETS)
    np.testing.assert_array_equal(out["conv.weight"], NEUTRAL["c1/kernel"].transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(out["conv.weight"], hwio_to_oihw(NEUTRAL["c1/kernel"]))
    assert out["fc.weight"].shape == (3, 5)


def test_untransferred_parameters_are_listed():
    targets = {**TARGETS, "norm.weight": (3,), "norm.bias": (3,)}
    with pytest.raises(WeightMapError) as err:
        full_map().transfer(NEUTRAL, targets, side="port")
    text = str(err.value)
    assert "2 parameter(s) of side port would keep their random initial values: norm.weight, norm.bias" in text
    out = full_map(not_transferred=("norm.weight", "norm.bias")).transfer(NEUTRAL, targets, side="port")
    assert "norm.weight" not in out


def test_unknown_names_list_the_close_names_and_shapes_must_fit():
    bad = WeightMap({"conv.weigth": ("c1/kernel", hwio_to_oihw), "conv.bias": "c1/bais"})
    with pytest.raises(WeightMapError) as err:
        bad.transfer(NEUTRAL, {"conv.weight": (4, 2, 3, 3), "conv.bias": (4,)}, side="port",
                     required=["conv.weight", "conv.bias"])
    text = str(err.value)
    assert "'conv.weigth', which side port's model does not have (close names: conv.weight" in text
    assert "'c1/bais', which the weight set does not hold (close names: c1/bias" in text
    untransposed = WeightMap({"conv.weight": "c1/kernel", "conv.bias": "c1/bias"}, unused=("d/kernel", "d/bias"))
    with pytest.raises(WeightMapError, match=r"is \(4, 2, 3, 3\) but neutral weight 'c1/kernel' is \(3, 3, 2, 4\)"):
        untransposed.transfer(NEUTRAL, {"conv.weight": (4, 2, 3, 3), "conv.bias": (4,)}, side="port")


def test_neutral_weights_nobody_takes_are_an_error_unless_declared_unused():
    with pytest.raises(WeightMapError, match="used by no parameter of side port: d/kernel, d/bias"):
        conv2d_weights(["c1"], ["conv"]).transfer(NEUTRAL, {"conv.weight": (4, 2, 3, 3), "conv.bias": (4,)},
                                                  side="port")
    conv2d_weights(["c1"], ["conv"]).__add__(WeightMap(unused=("d/kernel", "d/bias"))).transfer(
        NEUTRAL, {"conv.weight": (4, 2, 3, 3), "conv.bias": (4,)}, side="port")


def test_by_name_and_a_conv_without_bias():
    out = WeightMap.by_name().transfer(NEUTRAL, {k: v.shape for k, v in NEUTRAL.items()}, side="ref")
    assert set(out) == set(NEUTRAL)
    no_bias = {"c1/kernel": NEUTRAL["c1/kernel"]}
    assert set(conv2d_weights(["c1"], ["conv"]).transfer(no_bias, {"conv.weight": (4, 2, 3, 3)}, side="p")) == {
        "conv.weight"}
    with pytest.raises(ValueError, match="paired one to one"):
        conv2d_weights(["c1", "c2"], ["conv"])
