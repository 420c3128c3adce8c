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
        native = _native(tf, model, env)
        with self.device_scope(model._parity_device):
            out = model.stage(name, native)
        return layouts.tf_to_canonical(name, out.numpy())

    # ---- gradients (GradientTape) ------------------------------------------------------------
    supports_gradients = True
    complex_gradient = "dx+idy"  # GradientTape.gradient of a real loss: dL/dRe + i dL/dIm (docs/backward.md)

    @staticmethod
    def _weight_variables(model):
        from reference_tf.network import named_convs

        out = {}
        for prefix, conv in named_convs(model.generator):
            # Keras 3 variables wrap the tf.Variable the tape watches
            out[f"{prefix}.kernel"], out[f"{prefix}.bias"] = conv.kernel.value, conv.bias.value
        return out

    @staticmethod
    def _grads_out(names, grads, canonical):
        return {n: (layouts.tf_to_canonical(n, g.numpy()) if canonical else g.numpy())
                for n, g in zip(names, grads) if g is not None}

    def gradients(self, model, inputs, loss):
        tf = _tf()
        from reference_tf.model import STAGE_TABLE

        native = {k: layouts.canonical_to_tf(k, inputs[k]) for k in ("diffraction", "offsets", "probe_raw")}
        vars_ = self._weight_variables(model)
        with self.device_scope(model._parity_device):
            d, o, p = model._check_inputs(native["diffraction"], native["offsets"], native["probe_raw"])
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(list(vars_.values()))
                env = {"diffraction": d, "offsets": o, "probe_raw": p}
                tape.watch([d, o, p])
                for name, _ in STAGE_TABLE:
                    env[name] = model.stage(name, env)
                    tape.watch(env[name])
                    if name == loss:
                        break
            if loss not in env:
                raise ValueError(f"unknown loss stage {loss!r}")
            names = [n for n, _ in STAGE_TABLE if n in env]
            grads = tape.gradient(env[loss], [env[n] for n in names] + list(vars_.values()))
        return (self._grads_out(names, grads[: len(names)], True),
                self._grads_out(list(vars_), grads[len(names):], False),
                {n: layouts.tf_to_canonical(n, env[n].numpy()) for n in names})

    def stage_vjp(self, model, name, env, cotangent):
        tf = _tf()
        native = _native(tf, model, env)
        vars_ = self._weight_variables(model)
        with self.device_scope(model._parity_device):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(list(native.values()) + list(vars_.values()))
                out = model.stage(name, native)
            cot = layouts.canonical_to_tf(name, np.asarray(cotangent))
            cot = tf.constant(cot, dtype=out.dtype)
            keys = list(native)
            grads = tape.gradient(out, [native[k] for k in keys] + list(vars_.values()), output_gradients=cot)
        return (self._grads_out(keys, grads[: len(keys)], True),
                self._grads_out(list(vars_), grads[len(keys):], False))


def _native(tf, model, env: Mapping[str, np.ndarray]) -> Dict[str, object]:
    """Canonical stage values as the reference's own tensors (its layout, its dtypes)."""
    real, cplx = model.real_dtype, model.complex_dtype
    out = {}
    for k, v in env.items():
        arr = layouts.canonical_to_tf(k, v)
        out[k] = tf.constant(arr, dtype=cplx if np.iscomplexobj(arr) else real)
    return out

