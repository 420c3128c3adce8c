"""The ``ptycho`` side: upstream PtychoPINN's TensorFlow model, built by its own
``ptycho.model.create_model_with_gridsize`` from the case config (:mod:`.translate`), tapped
at its named Keras layers.

Upstream's global state, and how it is kept per model: ``ptycho.params.cfg`` is set from the
case before building and again before every forward (the model reads ``probe.mask`` and the
padded size while it runs); the module cache ``ptycho.model._lazy_cache`` (which would hand a
second model the first one's ``log_scale``) is emptied before each build, so each model owns
its variable, which is then set to ``log s``; the probe, a variable of the
``probe_illumination`` layer that ``get_weights()`` does not see under Keras 3, is normalised
by upstream's ``ptycho.probe.set_probe`` from the batch's raw probe and assigned before every
forward. The side runs in a worker process of its own, like every side.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping

import numpy as np

from .. import byo
from ..byo import NHWC, drop, layer, layer_input, transpose, unflatten
from . import checkout, translate, weightmap
from .stages import CANONICAL_LOSSES, STAGES, Upstream

#: (B, 1, 2, C) -> (B, C, 2): ptycho's input_positions.
POSITIONS = (drop(1), transpose(0, 2, 1))


def _flat(config: Dict[str, Any]):
    return unflatten(int(config["gridsize"]) ** 2)


def _set_state(config: Dict[str, Any]) -> Dict[str, Any]:
    import ptycho.params as params

    given = translate.tf_params(config, "float32")
    params.cfg.update(given)
    return given


def build(**config):
    """The upstream autoencoder for the case config (float32 only: see translate.tf_params)."""
    checkout.use()
    _set_state(config)
    import ptycho.model as upstream

    upstream._lazy_cache.clear()
    autoencoder, _ = upstream.create_model_with_gridsize(int(config["gridsize"]), int(config["N"]))
    _set_state(config)  # the builder restores gridsize and N to what they were before it
    log_scale = autoencoder.get_layer("intensity_scaler").w
    log_scale.assign(np.log(translate.scale_of(config)))
    upstream._lazy_cache.clear()
    return autoencoder


def _tf_probe(raw: np.ndarray) -> np.ndarray:
    """The raw probe normalised by upstream's own code (ptycho.probe.set_probe), (N, N, 1)."""
    import ptycho.params as params
    import ptycho.probe as probe

    probe.set_probe(np.asarray(raw, dtype=np.complex64)[..., None])
    return np.asarray(params.cfg["probe"])


_CHAIN = "the encoder is a chain of Keras layers; its last pooling layer is not fed the network input"
_HEADS = ("the decoder heads end in an operator (x1 + x2 with probe_big) whose result is read where the layer obj "
          "receives it; a Keras graph has nowhere to put another value of it")


class Ptycho(Upstream, byo.KerasSide):
    name = "ptycho"
    stage_list = STAGES
    model = "parity.upstream.ptycho_tf:build"
    inputs = {"diffraction": NHWC, "offsets": POSITIONS}
    taps = {
        "input_scaled": layer("intensity_scaler", layout=NHWC, as_list=True),
        "latent": layer("max_pooling2d_2", layout=NHWC, force=False, reason=_CHAIN),  # the last pool: taps_for
        "amp": layer_input("obj", 0, layout=NHWC, reason=_HEADS),
        "phase": layer_input("obj", 1, layout=NHWC, reason=_HEADS),
        "object_patches": layer("obj", layout=NHWC),
        "canvas": layer("padded_obj_2", layout=drop(3)),
        "trimmed_object": layer("trimmed_obj", layout=drop(3)),
        "extracted_patches": layer("padded_objs_with_offsets", layout=unflatten(4)),
        "probe": layer("probe_illumination", index=1, layout=(drop(0), drop(0), drop(2)), force=False,
                       reason="ptycho's probe is a variable of the probe_illumination layer, set from the batch's "
                              "raw probe before the forward; there is no layer to feed the raw probe to"),
        "exit_wave": layer("probe_illumination", index=0, layout=unflatten(4), as_list=True),
        "far_field_amp": layer("pred_amplitude", index=1, layout=unflatten(4)),
        "pred_amp": layer("intensity_scaler_inv", layout=NHWC, force=False,
                          reason="intensity_scaler_inv takes the channel-format far field, which ptycho's graph makes "
                                 "from the flat far field by a reshape layer (pred_diff_channels)"),
        "pred_intensity": layer("pred_intensity", layout=NHWC),
        **CANONICAL_LOSSES,
    }

    @classmethod
    def taps_for(cls, config):
        blocks = weightmap.encoder_blocks(config)
        flat = _flat(config)
        taps = dict(cls.taps)
        taps["latent"] = dataclasses.replace(taps["latent"], target=f"max_pooling2d_{blocks - 1}")
        for name in ("extracted_patches", "exit_wave", "far_field_amp"):
            taps[name] = dataclasses.replace(taps[name], layout=(flat,))
        return taps

    @classmethod
    def weights_for(cls, config):
        return weightmap.ptycho_map(config)

    def before_forward(self, net, batch: Mapping[str, np.ndarray], config: Dict[str, Any]) -> None:
        _set_state(config)
        probe = _tf_probe(batch["probe_raw"])
        net.get_layer("probe_illumination").w.assign(probe[None].astype(np.complex64))

    def own_losses(self, model, inputs, stages):
        """The losses ptycho's compiled model trains with (create_compiled_model): its negloglik on
        (pred_intensity, (s X)^2) and Keras' mean_absolute_error on (pred_amp, s X), both averaged
        over every element as Keras does."""
        import tensorflow as tf
        from ptycho.model import negloglik

        xs = np.asarray(inputs["diffraction"], np.float32)
        nll = float(tf.reduce_mean(negloglik(tf.constant(xs ** 2), tf.constant(stages["pred_intensity"]))))
        import keras

        mae = float(keras.losses.MeanAbsoluteError()(tf.constant(xs), tf.constant(stages["pred_amp"])))
        same = "the canonical loss's formula: equal up to float32 round-off"
        return {"negloglik": {"value": nll, "computed_by": "ptycho.model.negloglik(y_true=(s X)^2, y_pred="
                              "pred_intensity), mean over every element (Keras)", "canonical": "loss_nll",
                              "relation": same},
                "mean_absolute_error": {"value": mae, "computed_by": "Keras mean_absolute_error(s X, pred_amp), "
                                        "mean over every element", "canonical": "loss_mae", "relation": same}}

