"""The ``reference_tf`` side: our TensorFlow reference, channels-last inside, canonical outside
(via parity.layouts)."""
from __future__ import annotations

from typing import Dict, Mapping

import numpy as np

from .. import layouts
from .base import ForwardError, Side
from .frameworks import TensorFlowFramework, tf as _tf

class ReferenceTF(TensorFlowFramework, Side):
    name = "reference_tf"
    supports_training = True

    def train_steps(self, model, batches, settings):
        from .training import train_tf

        with self.device_scope(model._parity_device):
            return train_tf(model, batches, settings)

    def determinism_flags(self) -> Dict[str, object]:
        from reference_tf.model import determinism_flags

        return determinism_flags()

    def build(self, config, weights, dtype, device):
        _tf()
        from reference_tf import ForwardModel, ModelConfig

        with self.device_scope(device):
            model = ForwardModel(ModelConfig.from_dict(dict(config)), weights, dtype=dtype)
        model._parity_device = device
        return model

    def forward(self, model, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        taps: dict = {}
        native = {k: layouts.canonical_to_tf(k, inputs[k]) for k in ("diffraction", "offsets", "probe_raw")}
        try:
            with self.device_scope(model._parity_device):
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
        with self.device_scope(model._parity_device):
            out = model.stage(name, native)
        return layouts.tf_to_canonical(name, out.numpy())
