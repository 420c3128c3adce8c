"""The ``ptycho_torch`` side: upstream PtychoPINN's PyTorch port, ``ptycho_torch.model.PtychoPINN``,
built from the case config (:mod:`.translate`) and tapped by hooks and function wrappers.

The model is wrapped in a small module of ours (``Forward``, made on first use: it needs torch) that does what upstream's
data pipeline does before calling the model: the raw probe normalised by upstream's
``ptycho_torch.helper.normalize_probe_like_tf`` and laid out (1, 1, 1, N, N); the offsets as
``coords_relative`` (B, C, 1, 2); the scale factors and experiment ids the forward takes. The
model itself is unmodified; its stages are read where the port computes them: hooks on
``autoencoder`` (its input), ``autoencoder.encoder``, the two decoders, ``combine_complex`` and
``forward_model.probe_illumination``; wrappers of ``ptycho_torch.helper``'s
``reassemble_patches_position_real`` (canvas: the argument ``extract_channels_from_region``
receives), ``extract_channels_from_region`` and ``pad_and_diffract``. The port has no trimmed
object and no ``pred_intensity`` or loss of the canonical kind: those are derived from its own
stages (the centre crop of its canvas; the square of its ``pred_amp``; the canonical losses).
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from .. import byo
from ..byo import crop, derived, drop, function, module, module_input, square
from ..byo.taps import AT_INPUTS
from . import checkout, translate, weightmap
from .stages import CANONICAL_LOSSES, STAGES, Upstream

HELPER = "ptycho_torch.helper"


def build(**config):
    """The wrapped upstream model for the case config (see translate.torch_setup)."""
    checkout.use()
    import torch
    from ptycho_torch.config_params import DataConfig, ModelConfig, TrainingConfig
    from ptycho_torch.model import PtychoPINN

    setup = translate.torch_setup(config, "float32")
    fields = dict(setup["ModelConfig"])
    n = int(config["N"])
    disk = translate.hard_disk(n)
    fields["probe_mask_tensor"] = torch.as_tensor(disk) if config["probe_mask"] else None
    data = DataConfig(**setup["DataConfig"])
    model = PtychoPINN(ModelConfig(**fields), data, TrainingConfig())
    return _forward_class()(model, config, disk)


_FORWARD = []


def _forward_class():
    if _FORWARD:
        return _FORWARD[0]
    import torch

    class Forward(torch.nn.Module):
        """(diffraction (B, C, N, N), offsets (B, C, 1, 2), raw probe (N, N)) -> ptycho_torch's pred."""

        def __init__(self, model, config: Dict[str, Any], disk: np.ndarray):
            super().__init__()
            self.model = model
            self.scale = translate.scale_of(config)
            self.probe_scale = float(config["probe_scale"])
            self.disk = disk

        def forward(self, diffraction, offsets, probe_raw):
            from ptycho_torch.helper import normalize_probe_like_tf

            normalised, _ = normalize_probe_like_tf(probe_raw.detach().cpu().numpy(), self.probe_scale,
                                                    probe_mask=True, probe_mask_tensor=self.disk)
            probe = torch.as_tensor(np.asarray(normalised), device=diffraction.device)
            probe = probe.reshape(1, 1, 1, *probe.shape[-2:])
            b = diffraction.shape[0]
            factor = torch.full((b, 1, 1, 1), 1.0 / self.scale, dtype=diffraction.dtype, device=diffraction.device)
            ids = torch.zeros(b, dtype=torch.long, device=diffraction.device)
            pred, _, _ = self.model(diffraction, offsets, probe, factor, factor, experiment_ids=ids)
            return pred

    _FORWARD.append(Forward)
    return Forward


class PtychoTorch(Upstream, byo.TorchSide):
    name = "ptycho_torch"
    stage_list = STAGES
    model = "parity.upstream.ptycho_torch:build"
    inputs = {"diffraction": None, "offsets": drop(2), "probe_raw": None}
    taps = {
        "input_scaled": module_input("model.autoencoder"),
        "latent": module("model.autoencoder.encoder"),
        "amp": module("model.autoencoder.decoder_amp"),
        "phase": module("model.autoencoder.decoder_phase"),
        "object_patches": module("model.combine_complex"),
        "canvas": function(f"{HELPER}.extract_channels_from_region", arg=0, layout=drop(1)),
        "trimmed_object": derived(crop(64)),  # crop(N): see taps_for
        "extracted_patches": function(f"{HELPER}.extract_channels_from_region"),
        "probe": module_input("model.forward_model.probe_illumination", 1, layout=(drop(0), drop(0), drop(0))),
        "exit_wave": module("model.forward_model.probe_illumination", index=0, layout=drop(2)),
        "far_field_amp": function(f"{HELPER}.pad_and_diffract", index=0),
        # scaled inline in ForwardModel.forward (scaler.inv_scale): forced by putting the reference's far
        # field where pad_and_diffract returns it
        "pred_amp": module("", feed=AT_INPUTS),
        "pred_intensity": derived(square),
        **CANONICAL_LOSSES,
    }

    @classmethod
    def taps_for(cls, config):
        taps = dict(cls.taps)
        taps["trimmed_object"] = derived(crop(int(config["N"])))
        return taps

    @classmethod
    def weights_for(cls, config):
        return weightmap.ptycho_torch_map(config, prefix="model.")

    def own_losses(self, model, inputs, stages):
        """The loss ptycho_torch's Lightning module trains with in amplitude mode (compute_loss,
        Unsupervised): its PoissonLoss and MAELoss on (pred * S, X * S) averaged, divided by
        mean(X) + 1e-8, with the model's pred and the observation X in upstream's unscaled units
        (pred_amp / s, diffraction / s) and S = s (its physics scaling constant on the path
        from TensorFlow-style data)."""
        import torch
        from ptycho_torch.model import MAELoss, PoissonLoss

        s = translate.scale_of(model.config)
        pred = torch.as_tensor(np.asarray(stages["pred_amp"], np.float32) / np.float32(s))
        obs = torch.as_tensor(np.asarray(inputs["diffraction"], np.float32) / np.float32(s))
        norm = torch.mean(obs) + 1e-8
        with torch.no_grad():
            nll = float(PoissonLoss()(pred * s, obs * s).mean() / norm)
            mae = float(MAELoss()(pred * s, obs * s).mean() / norm)
        other = ("not the canonical loss: summed over (C, H, W) with log Gamma(k + 1), averaged over B, divided "
                 "by mean(X); compare the canonical loss instead")
        return {"PoissonLoss": {"value": nll, "computed_by": "ptycho_torch.model.PoissonLoss(pred S, X S).mean() / "
                                "(mean(X) + 1e-8) (compute_loss, amplitude mode)", "canonical": "loss_nll",
                                "relation": other},
                "MAELoss": {"value": mae, "computed_by": "ptycho_torch.model.MAELoss(pred S, X S).mean() / "
                            "(mean(X) + 1e-8)", "canonical": "loss_mae",
                            "relation": "the canonical loss divided by mean(X): compare the canonical loss instead"}}

