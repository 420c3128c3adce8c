"""The ``reference_tf`` side: our TensorFlow reference, channels-last inside, canonical outside
(via parity.layouts)."""
from __future__ import annotations

import os
from typing import Dict, Mapping

import numpy as np

from .. import layouts
from .base import ForwardError, Side

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _tf():
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


class ReferenceTF(Side):
    name = "reference_tf"
    framework = "tensorflow"

    def versions(self) -> Dict[str, str]:
        tf = _tf()
        import keras

        build = tf.sysconfig.get_build_info()
        return {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "cuda": str(build.get("cuda_version", "none")),
            "cudnn": str(build.get("cudnn_version", "none")),
        }

    def devices(self) -> Dict[str, str]:
        tf = _tf()
        out = {"cpu": "CPU"}
        for i, dev in enumerate(tf.config.list_physical_devices("GPU")):
            details = tf.config.experimental.get_device_details(dev)
            out["cuda" if i == 0 else f"cuda:{i}"] = details.get("device_name", dev.name)
        return out

    def determinism_flags(self) -> Dict[str, object]:
        from reference_tf.model import determinism_flags

        return determinism_flags()

    def set_tf32(self, enabled: bool) -> None:
        _tf().config.experimental.enable_tensor_float_32_execution(bool(enabled))

    def _device_scope(self, device: str):
        tf = _tf()
        if device == "cpu":
            return tf.device("/CPU:0")
        if device.startswith("cuda"):
            index = device.split(":")[1] if ":" in device else "0"
            if not tf.config.list_physical_devices("GPU"):
                raise RuntimeError(f"device {device!r} requested but TensorFlow sees no GPU")
            return tf.device(f"/GPU:{index}")
        raise ValueError(f"unknown device {device!r}; expected 'cpu' or 'cuda[:i]'")

    def build(self, config, weights, dtype, device):
        _tf()
        from reference_tf import ForwardModel, ModelConfig

        with self._device_scope(device):
            model = ForwardModel(ModelConfig.from_dict(dict(config)), weights, dtype=dtype)
        model._parity_device = device
        return model

    def forward(self, model, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        taps: dict = {}
        native = {k: layouts.canonical_to_tf(k, inputs[k]) for k in ("diffraction", "offsets", "probe_raw")}
        try:
            with self._device_scope(model._parity_device):
                model.forward(native["diffraction"], native["offsets"], native["probe_raw"], taps=taps)
        except Exception as exc:
            done = {name: layouts.tf_to_canonical(name, t.numpy()) for name, t in taps.items()}
            raise ForwardError(f"{type(exc).__name__}: {exc}", done) from exc
        return {name: layouts.tf_to_canonical(name, t.numpy()) for name, t in taps.items()}

    def run_stage(self, model, name: str, env: Mapping[str, np.ndarray]) -> np.ndarray:
        tf = _tf()
        real, cplx = model.real_dtype, model.complex_dtype
        native = {}
        for k, v in env.items():
            arr = layouts.canonical_to_tf(k, v)
            native[k] = tf.constant(arr, dtype=cplx if np.iscomplexobj(arr) else real)
        with self._device_scope(model._parity_device):
            out = model.stage(name, native)
        return layouts.tf_to_canonical(name, out.numpy())
