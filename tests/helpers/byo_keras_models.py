"""Small Keras models for the tests of parity.byo."""
import keras
from keras import layers

from . import byo_functions


class Split(layers.Layer):
    def call(self, x):
        return [x, x + 1.0]


class Doubler(layers.Layer):
    def call(self, x):
        return byo_functions.double(x)


def net(size=4, channels=2):
    x = keras.Input((size, size, channels), name="x")
    a = layers.Conv2D(channels, 1, name="a")(x)
    shared = layers.Conv2D(channels, 1, name="shared")
    b = shared(shared(a))
    lo, hi = Split(name="split")(b)
    return keras.Model(x, Doubler(name="doubler")(layers.Add(name="sum")([lo, hi])), name="small")
