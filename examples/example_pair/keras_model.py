"""The reference: an idiomatic Keras functional model, channels-last (NHWC).

image (B, N, N, C) -> two 3x3 convolutions -> amplitude (sigmoid) and phase (pi * tanh) heads
-> the complex object as a (real, imag) pair -> each channel's far field |FFT2| / N, computed on
the flat stack of single-channel images (B*C, N, N, 1).
"""
import numpy as np
import keras
from keras import layers, ops


class Scale(layers.Layer):
    """x * factor, in the model's precision (keras.layers.Rescaling rounds its factor to float32)."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = float(factor)

    def call(self, x):
        return x * ops.convert_to_tensor(self.factor, dtype=x.dtype)


class Polar(layers.Layer):
    """(amplitude, phase) -> [amplitude cos(phase), amplitude sin(phase)]."""

    def call(self, inputs):
        amplitude, phase = inputs
        return [amplitude * ops.cos(phase), amplitude * ops.sin(phase)]


class ChannelsToBatch(layers.Layer):
    """(B, N, N, C) -> (B*C, N, N, 1), b-major."""

    def call(self, x):
        n = ops.shape(x)[1]
        return ops.reshape(ops.transpose(x, (0, 3, 1, 2)), (-1, n, n, 1))


class FarField(layers.Layer):
    """[real, imag] of (B*C, N, N, 1) -> |FFT2| / N of each image."""

    def call(self, inputs):
        re, im = (ops.squeeze(t, axis=-1) for t in inputs)
        fre, fim = ops.fft2((re, im))
        n = ops.cast(ops.shape(re)[-1], re.dtype)
        return ops.expand_dims(ops.sqrt(fre * fre + fim * fim) / n, -1)


def build(size=16, channels=2, features=8):
    image = keras.Input((size, size, channels), name="image")
    x = layers.Conv2D(features, 3, padding="same", activation="relu", name="stem_conv")(image)
    x = layers.Conv2D(features, 3, padding="same", activation="relu", name="body_conv")(x)
    amplitude = layers.Conv2D(channels, 1, activation="sigmoid", name="amp_head")(x)
    phase = layers.Conv2D(channels, 1, activation="tanh", name="phase_head")(x)
    phase = Scale(np.pi, name="phase_scale")(phase)
    re, im = Polar(name="polar")([amplitude, phase])
    to_flat = ChannelsToBatch(name="to_flat")
    far = FarField(name="far_field")([to_flat(re), to_flat(im)])
    return keras.Model(image, far, name="tiny_keras")
