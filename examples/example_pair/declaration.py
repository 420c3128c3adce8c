"""The declaration of the example pair: everything the harness needs, through parity.byo only."""
import numpy as np

from parity import byo
from parity.byo import COMPLEX, NHWC, crop, derived, function, layer, module, module_input, scale, square

from . import data

STAGES = (
    byo.stage("stem", "B F N N", inputs="image", description="first convolution + ReLU"),
    byo.stage("features", "B F N N", inputs="stem", description="second convolution + ReLU"),
    byo.stage("amplitude", "B C N N", inputs="features", description="sigmoid head"),
    byo.stage("phase", "B C N N", inputs="features", description="pi * tanh head"),
    byo.stage("object", "B C N N", inputs=("amplitude", "phase"), complex=True, description="A exp(i phi)"),
    byo.stage("far_field", "B C N N", inputs="object", description="|FFT2(object)| / N"),
    byo.stage("intensity", "B C N N", inputs="far_field", description="far_field ** 2 (derived)"),
    byo.stage("centre", "B C 8 8", inputs="object", complex=True, description="centre crop (derived)"),
    byo.stage("loss", "", inputs=("intensity", "image"), description="mean((I - image^2)^2) (derived)"),
)


def _loss(intensity, image):
    return np.mean((intensity - image ** 2) ** 2)


DERIVED = {"intensity": derived(square), "centre": derived(crop(8)), "loss": derived(_loss)}


class KerasReference(byo.KerasSide):
    name = "example_keras"
    stage_list = STAGES
    model = "examples.example_pair.keras_model:build"
    inputs = {"image": NHWC}
    taps = {
        "stem": layer("stem_conv", layout=NHWC),
        "features": layer("body_conv", layout=NHWC),
        "amplitude": layer("amp_head", layout=NHWC),
        "phase": layer("phase_scale", layout=NHWC),
        "object": layer("polar", index=(0, 1), layout=(NHWC, COMPLEX)),
        "far_field": layer("far_field", layout=byo.unflatten("channels")),
        **DERIVED,
    }


class TorchPort(byo.TorchSide):
    name = "example_torch"
    stage_list = STAGES
    model = "examples.example_pair.torch_model:TinyNet"
    inputs = ("image",)
    taps = {
        "stem": module_input("body"),
        "features": module_input("amp_head"),
        "amplitude": module("amp_head"),
        "phase": module("phase_head", layout=scale(np.pi)),
        "object": function("examples.example_pair.helpers.combine", also="examples.example_pair.torch_model"),
        "far_field": module("propagate"),
        **DERIVED,
    }
    weights = byo.conv2d_weights(["stem_conv", "body_conv", "amp_head", "phase_head"],
                                 ["stem", "body", "amp_head.0", "phase_head.0"])


CASES = byo.SeededCases(
    [byo.case("tiny", seed=0, size=16, channels=2, features=8, covers="float32, 2 x 2 x 16 x 16"),
     byo.case("tiny_f64", seed=1, dtype="float64", size=16, channels=2, features=8, covers="float64"),
     byo.case("wide", seed=2, batch=4, size=32, channels=3, features=16, suites=("nightly",),
              covers="float32, 4 x 3 x 32 x 32")],
    inputs=data.inputs, weights=data.weights)


def pair():
    return byo.declare_pair("example", KerasReference, TorchPort, CASES,
                            description="a small Keras model (NHWC) and its torch port (NCHW), tapped from outside")
