"""The generator network of the reference (forward-model.md §3), Keras 3 layers.

Layout: channels-last throughout, ``(B, H, W, channels)``. Every layer is built in the
model's dtype (float32 or float64); weights come from the neutral weight set (see
:mod:`reference_tf.weights`) through :func:`assign_weights` / :func:`collect_weights`.
"""
from __future__ import annotations

import math
from typing import Dict, Iterator, Tuple

import keras
import numpy as np
import tensorflow as tf

from .config import ModelConfig


def _conv(filters: int, dtype: str, name: str, activation=None) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(filters, 3, padding="same", activation=activation, use_bias=True, dtype=dtype, name=name)


def amplitude_activation(name: str):
    """The configured amplitude head activation (§3.3)."""
    return {
        "sigmoid": tf.math.sigmoid,
        "swish": lambda x: x * tf.math.sigmoid(x),
        "softplus": tf.math.softplus,
        "relu": tf.nn.relu,
    }[name]


def phase_activation(x):
    return math.pi * tf.math.tanh(x)


def swish(x):
    return x * tf.math.sigmoid(x)


class ConvPool(keras.layers.Layer):
    """Conv3x3(f)+ReLU, Conv3x3(f)+ReLU, MaxPool 2x2 stride 2."""

    def __init__(self, filters: int, dtype: str, name: str):
        super().__init__(name=name, dtype=dtype)
        self.conv1 = _conv(filters, dtype, "conv1", "relu")
        self.conv2 = _conv(filters, dtype, "conv2", "relu")
        self.pool = keras.layers.MaxPooling2D(2, 2, padding="same", dtype=dtype)

    def call(self, x):
        return self.pool(self.conv2(self.conv1(x)))


class ConvUp(keras.layers.Layer):
    """Conv3x3(f)+ReLU, Conv3x3(f)+ReLU, nearest-neighbour upsampling x2."""

    def __init__(self, filters: int, dtype: str, name: str):
        super().__init__(name=name, dtype=dtype)
        self.conv1 = _conv(filters, dtype, "conv1", "relu")
        self.conv2 = _conv(filters, dtype, "conv2", "relu")
        self.up = keras.layers.UpSampling2D(2, interpolation="nearest", dtype=dtype)

    def call(self, x):
        return self.up(self.conv2(self.conv1(x)))


class Encoder(keras.layers.Layer):
    """(B, N, N, C) -> (B, 8, 8, 128n)."""

    def __init__(self, config: ModelConfig, dtype: str):
        super().__init__(name="encoder", dtype=dtype)
        self.blocks = [ConvPool(f, dtype, f"block{i}") for i, f in enumerate(config.encoder_filters)]

    def call(self, x):
        for block in self.blocks:
            x = block(x)
        return x


class DecoderBase(keras.layers.Layer):
    """(B, 8, 8, 128n) -> (B, N/2, N/2, 32n)."""

    def __init__(self, config: ModelConfig, dtype: str):
        super().__init__(name="base", dtype=dtype)
        self.blocks = [ConvUp(f, dtype, f"block{i}") for i, f in enumerate(config.decoder_filters)]

    def call(self, x):
        for block in self.blocks:
            x = block(x)
        return x


class DecoderLast(keras.layers.Layer):
    """(B, N/2, N/2, 32n) -> (B, N, N, K), forward-model.md §3.3."""

    def __init__(self, config: ModelConfig, activation, dtype: str):
        super().__init__(name="last", dtype=dtype)
        self.config = config
        self.activation = activation
        self.conv1 = _conv(config.K, dtype, "conv1") if config.pad_object else None
        full_size = config.probe_big or not config.pad_object
        self.up = ConvUp(config.border_filters, dtype, "up") if full_size else None
        self.conv2 = _conv(config.K, dtype, "conv2") if full_size else None
        q = config.N // 4
        border = np.ones((config.N, config.N), dtype=np.float64)
        border[q : config.N - q, q : config.N - q] = 0.0
        self._border = border[None, :, :, None]
        self._pad = [[0, 0], [q, q], [q, q], [0, 0]]

    def call(self, z):
        if not self.config.pad_object:
            return self.activation(self.conv2(self.up(z)))
        inner, outer = z[..., :-4], z[..., -4:]
        x1 = tf.pad(self.activation(self.conv1(inner)), self._pad)
        if not self.config.probe_big:
            return x1
        border = tf.constant(self._border, dtype=x1.dtype)
        x2 = swish(self.conv2(self.up(outer))) * border
        return x1 + x2


class Decoder(keras.layers.Layer):
    """One head: decoder base followed by the last stage."""

    def __init__(self, config: ModelConfig, activation, dtype: str, name: str):
        super().__init__(name=name, dtype=dtype)
        self.base = DecoderBase(config, dtype)
        self.last = DecoderLast(config, activation, dtype)

    def call(self, latent):
        return self.last(self.base(latent))


class Generator(keras.Model):
    """Encoder plus separate amplitude and phase decoders (no skip connections)."""

    def __init__(self, config: ModelConfig, dtype: str = "float32"):
        super().__init__(name="generator", dtype=dtype)
        self.config = config
        self.encoder = Encoder(config, dtype)
        self.decoder_amp = Decoder(config, amplitude_activation(config.amp_activation), dtype, "decoder_amp")
        self.decoder_phase = Decoder(config, phase_activation, dtype, "decoder_phase")
        n = config.N
        # Build every variable once so weights can be assigned before the first call.
        self.encoder(tf.zeros((1, n, n, config.C), dtype=dtype))
        latent = tf.zeros((1, 8, 8, 128 * config.n_filters_scale), dtype=dtype)
        self.decoder_amp(latent)
        self.decoder_phase(latent)
        self.built = True

    def call(self, x):
        latent = self.encoder(x)
        return latent, self.decoder_amp(latent), self.decoder_phase(latent)


def named_convs(gen: Generator) -> Iterator[Tuple[str, keras.layers.Conv2D]]:
    """Neutral name prefix -> Conv2D layer, for every convolution the generator owns."""
    for i, block in enumerate(gen.encoder.blocks):
        yield f"encoder.block{i}.conv1", block.conv1
        yield f"encoder.block{i}.conv2", block.conv2
    for dec in (gen.decoder_amp, gen.decoder_phase):
        for i, block in enumerate(dec.base.blocks):
            yield f"{dec.name}.block{i}.conv1", block.conv1
            yield f"{dec.name}.block{i}.conv2", block.conv2
        last = dec.last
        if last.conv1 is not None:
            yield f"{dec.name}.last.conv1", last.conv1
        if last.up is not None:
            yield f"{dec.name}.last.up.conv1", last.up.conv1
            yield f"{dec.name}.last.up.conv2", last.up.conv2
            yield f"{dec.name}.last.conv2", last.conv2


def assign_weights(gen: Generator, weights: Dict[str, np.ndarray]) -> None:
    """Copy a checked neutral weight set into the generator (kernels are already HWIO)."""
    for prefix, conv in named_convs(gen):
        conv.kernel.assign(np.asarray(weights[f"{prefix}.kernel"], dtype=conv.kernel.dtype))
        conv.bias.assign(np.asarray(weights[f"{prefix}.bias"], dtype=conv.bias.dtype))


def collect_weights(gen: Generator) -> Dict[str, np.ndarray]:
    out: Dict[str, np.ndarray] = {}
    for prefix, conv in named_convs(gen):
        out[f"{prefix}.kernel"] = conv.kernel.numpy()
        out[f"{prefix}.bias"] = conv.bias.numpy()
    return out
