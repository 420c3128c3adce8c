"""Declared sides over the small test models (parity.byo), importable by a worker."""
import numpy as np

from parity import byo
from parity.byo import NHWC, WeightMap, derived, function, layer, module, module_input, square

from .byo_models import net_weights

NET_STAGES = (
    byo.stage("a", "B C N N", inputs="x"),
    byo.stage("doubled", "B C N N", inputs="a"),
    byo.stage("b_in", "B C N N", inputs="doubled"),
    byo.stage("b", "B C N N", inputs="b_in"),
    byo.stage("b_sq", "B C N N", inputs="b"),
)
NET_WEIGHTS = WeightMap({"a.weight": "wa", "a.bias": "ba", "b.weight": "wb", "b.bias": "bb"},
                        not_transferred=("unused.weight", "unused.bias"))


class NetSide(byo.TorchSide):
    name = "byo_net"
    stage_list = NET_STAGES
    model = "tests.helpers.byo_models:Net"
    inputs = ("x",)
    taps = {"a": module("a"), "doubled": function("tests.helpers.byo_functions.double"),
            "b_in": module_input("b"), "b": module("b"), "b_sq": derived(square)}
    weights = NET_WEIGHTS


def build(side_cls, dtype="float32", channels=2, seed=0):
    side = side_cls()
    return side, side.build({"channels": channels}, net_weights(channels, seed), dtype, "cpu")


def net_inputs(channels=2, seed=0, batch=2, size=4):
    return {"x": np.random.default_rng(seed).normal(size=(batch, channels, size, size))}


KERAS_STAGES = (
    byo.stage("a", "B C N N", inputs="x"),
    byo.stage("b", "B C N N", inputs="a"),
    byo.stage("pair", "B C N N", inputs="b", complex=True),
)


class KerasNetSide(byo.KerasSide):
    name = "byo_keras_net"
    stage_list = KERAS_STAGES
    model = "tests.helpers.byo_keras_models:net"
    inputs = {"x": NHWC}
    taps = {"a": layer("a", layout=NHWC), "b": layer("shared", call=2, layout=NHWC),
            "pair": layer("split", index=(0, 1), layout=(NHWC, byo.COMPLEX))}


# ---- pairs over the test sides ---------------------------------------------------------------
class UnforcedNetSide(NetSide):
    """NetSide whose stage b is declared not teacher-forced."""

    name = "byo_net_unforced"
    taps = {**NetSide.taps, "b": module("b", force=False, reason="kept out on purpose")}


def _inputs(config, seed, batch):
    return net_inputs(config["channels"], seed, batch)


def _weights(config, seed):
    return net_weights(config["channels"], seed)


NET_CASES = byo.SeededCases([byo.case("net_small", seed=3, channels=2)], inputs=_inputs, weights=_weights)


def net_pair():
    return byo.declare_pair("byo_net", NetSide, NetSide, NET_CASES, description="a test model against itself")


def unforced_pair():
    return byo.declare_pair("byo_net_unforced", NetSide, UnforcedNetSide, NET_CASES)
