"""Inputs and weights of the example's cases, from a seed (NumPy only).

The neutral weight set is named as the Keras model names its variables (``layer/kernel``,
kernels (kh, kw, in, out)); the torch side's weight map converts them.
"""
import numpy as np


def inputs(config, seed, batch):
    """{"image": (B, C, N, N)} canonical (channels-first), values in [0, 1)."""
    rng = np.random.default_rng(seed)
    return {"image": rng.random((batch, config["channels"], config["size"], config["size"]))}


def weights(config, seed):
    """Glorot-uniform kernels and small biases for the four convolutions."""
    rng = np.random.default_rng(1000 + seed)
    c, f = config["channels"], config["features"]
    shapes = {"stem_conv": (3, 3, c, f), "body_conv": (3, 3, f, f), "amp_head": (1, 1, f, c),
              "phase_head": (1, 1, f, c)}
    out = {}
    for name, (kh, kw, cin, cout) in shapes.items():
        limit = np.sqrt(6.0 / (kh * kw * (cin + cout)))
        out[f"{name}/kernel"] = rng.uniform(-limit, limit, (kh, kw, cin, cout))
        out[f"{name}/bias"] = rng.uniform(-0.1, 0.1, cout)
    return out
