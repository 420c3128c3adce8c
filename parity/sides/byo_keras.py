"""KerasSide: an unmodified Keras 3 functional model (TensorFlow backend) as a side.

The model is built by the declared ``model`` callable with the case config as keyword arguments
under the run's float type and dtype policy (``float64`` runs build float64 inputs and layers), its variables are set
through the side's weight map (default: the neutral weight named by each variable's path,
``layer/kernel``), and one sub-model over the tapped layers' outputs is built once; a forward
calls it (inference mode) with the function taps of that forward wrapped. Teacher forcing of a
layer tap calls the layer itself on the reference's values of the stage's inputs (one input:
the tensor; several: a list, as Keras merge layers take them).
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

from .declared import Built, DeclaredSide
from .frameworks import TensorFlowFramework, tf as _tf
from .keras_taps import find_layer, pick, tap_model
from .tap_points import Recorder, framework_dirs

class KerasSide(TensorFlowFramework, DeclaredSide):
    """Subclass and set ``name``, ``stage_list``, ``model``, ``inputs``, ``taps``, ``weights``."""

    TAP_KINDS = ("layer", "layer_input", "function", "function_arg", "derived")

    def determinism_flags(self) -> Dict[str, object]:
        tf = _tf()
        from tensorflow.python.framework import config as tf_config

        return {"tf_op_determinism": bool(tf_config.is_op_determinism_enabled()),
                "tf_tensor_float_32": bool(tf.config.experimental.tensor_float_32_execution_enabled()),
                "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
                "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads()}

    # ------------------------------------------------------------ framework parts
    def _make(self, factory, config, dtype, device):
        tf = _tf()
        import keras

        tf.config.experimental.enable_op_determinism()

        before = keras.config.dtype_policy(), keras.config.floatx()
        keras.config.set_floatx(dtype)  # keras.Input's default dtype
        keras.config.set_dtype_policy(dtype)  # the layers' variables and computations
        try:
            with self.device_scope(device):
                net = factory(**config)
        finally:
            keras.config.set_dtype_policy(before[0])
            keras.config.set_floatx(before[1])
        if not isinstance(net, keras.Model):
            raise TypeError(f"side {self.name}: model {type(self).model!r} returned a {type(net).__name__}, "
                            f"not a keras.Model")
        return net

    def _targets(self, net) -> Tuple[Dict[str, Tuple[int, ...]], List[str]]:
        shapes = {v.path: tuple(v.shape) for v in net.weights}
        return shapes, list(shapes)

    def _set_weights(self, net, arrays: Dict[str, np.ndarray]) -> None:
        for v in net.weights:
            if v.path in arrays:
                v.assign(np.asarray(arrays[v.path], dtype=v.dtype))

    def _prepare(self, built: Built) -> None:
        layers = {n: t for n, t in self.taps.items() if t.kind in ("layer", "layer_input")}
        built.extra["taps"], built.extra["where"] = tap_model(built.net, layers)
        for name, tap in self.taps.items():
            if tap.kind in ("function", "function_arg"):
                from .function_taps import resolve

                resolve(tap.target, name)

    def _tensor(self, built: Built, array: np.ndarray) -> Any:
        with self.device_scope(built.device):
            return _tf().constant(np.ascontiguousarray(array))

    def _numpy(self, value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return tuple(self._numpy(v) for v in value)
        return value.numpy() if hasattr(value, "numpy") else np.asarray(value)

    def _call(self, built: Built, native: List[Any], rec: Recorder) -> Dict[str, Any]:
        sub = built.extra["taps"]
        args = native[0] if len(native) == 1 else list(native)
        with self.device_scope(built.device):
            if sub is None:
                built.net(args, training=False)
                return {}
            out = sub(args, training=False)
        return pick(list(out) if isinstance(out, (list, tuple)) else [out], built.extra["where"])

    def _force_layer(self, built: Built, name: str, tap, fed: List[Any]) -> Any:
        from ..byo.taps import AS_LIST

        layer = find_layer(built.net, tap.target, name)
        args = fed[0] if len(fed) == 1 and tap.feed != AS_LIST else list(fed)
        with self.device_scope(built.device):
            out = layer(args, training=False) if _takes_training(layer) else layer(args)
        if tap.index is None:
            return out
        if isinstance(tap.index, tuple):
            return tuple(out[i] for i in tap.index)
        return out[tap.index]

    def _skip_dirs(self) -> Tuple[str, ...]:
        import keras

        return framework_dirs(_tf(), keras)


def _takes_training(layer: Any) -> bool:
    import inspect

    try:
        return "training" in inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return False


__all__ = ["KerasSide"]
