"""Bring your own pair: a TensorFlow model and its PyTorch port, compared stage by stage without
a change to either.

A side is a class that says where each stage is read (taps), in which layout, and how the
neutral weight set becomes its parameters; a pair names two sides, the stage list and the
cases. Walk-through: docs/pairs.md; worked example: ``examples/example_pair``.

* sides: :class:`KerasSide`, :class:`TorchSide` (configured by class attributes);
* taps: :func:`layer`, :func:`module`, :func:`module_input`, :func:`function`, :func:`derived`
  (with :func:`square`, :func:`crop`);
* layouts: :data:`NHWC`, :func:`unflatten`, :func:`drop`, :func:`select`, :data:`COMPLEX`,
  :func:`complex_from`, :func:`scale`, :func:`transpose`;
* weights: :class:`WeightMap`, :func:`conv2d_weights`, :func:`hwio_to_oihw`, :func:`io_to_oi`;
* the pair: :func:`stage`, :func:`case`, :class:`SeededCases`, :func:`declare_pair`.

Importing this package imports no framework.
"""
from ..sides.byo_keras import KerasSide
from ..sides.byo_torch import TorchSide
from ..sides.declared import DeclarationError, NotForced
from ..sides.tap_points import TapError
from .cases import SeededCases, case
from .declare import declare_pair, stage
from .layouts import COMPLEX, NHWC, LayoutError, complex_from, drop, scale, select, transpose, unflatten
from .taps import crop, derived, function, layer, layer_input, module, module_input, square
from .weights import WeightMap, WeightMapError, conv2d_weights, hwio_to_oihw, io_to_oi, transposed

__all__ = ["COMPLEX", "DeclarationError", "KerasSide", "LayoutError", "NHWC", "NotForced", "SeededCases",
           "TapError", "TorchSide", "WeightMap", "WeightMapError", "case", "complex_from", "conv2d_weights", "crop",
           "declare_pair", "derived", "drop", "function", "hwio_to_oihw", "io_to_oi", "layer", "layer_input", "module",
           "module_input", "scale", "select", "square", "stage", "transpose", "transposed", "unflatten"]
