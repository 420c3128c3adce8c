"""One case config (forward-model.md §1) -> what each upstream model is given.

``ptycho`` reads its configuration from the process-wide dict ``ptycho.params.cfg`` (set
before building, and read again during the forward); ``ptycho_torch`` takes ``ModelConfig``,
``DataConfig`` and ``TrainingConfig`` objects plus arguments of its forward. The functions here
compute both from the case config, in plain Python, so the hub can record exactly what each
side was given, and so a config that a model cannot express is refused with the reason instead
of being approximated (:class:`Refused`).

Alignment choices (each is recorded with the translation, under ``notes``):

* intensity scale ``s``: ``ptycho`` divides its input by ``exp(log_scale)`` with ``log_scale``
  initialised to ``log s``; ``ptycho_torch`` multiplies by ``input_scale_factor`` and divides
  by ``output_scale_factor``, so both are given ``1/s``;
* probe: both normalise the raw probe by ``probe_scale * mean |D * probe|`` with ``D`` the hard
  disk ``r < N//4`` (``ptycho``: its ``probe.set_probe``; ``ptycho_torch``: its
  ``normalize_probe_like_tf`` given that disk as the mask). ``ptycho_torch``'s amplitude-mode
  forward divides the probe by ``DataConfig.probe_scale`` once more, so it is given
  ``probe_scale = 1`` (the division becomes a no-op);
* canvas: ``ptycho``'s side is ``N + (g-1)*offset + max_position_jitter``, ``ptycho_torch``'s
  ``N + (g-1)*even(ceil(max_neighbor_distance))`` with no buffer; ``max_neighbor_distance`` is
  chosen to give the same size where one exists (gridsize 1 has none: the canvases differ);
* architecture: ``ptycho_torch`` without CBAM, with TF's output activation, ``C_model =
  C_forward = C``, and at gridsize 1 the decoder's outer slice forced to TF's 4 channels.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import numpy as np

SIDES = ("ptycho", "ptycho_torch")


class Refused(ValueError):
    """The case config cannot be expressed by one upstream model; the message says why."""


def scale_of(config: Dict[str, Any]) -> float:
    """The case's intensity scale s (forward-model.md §1: given, or sqrt(nphotons)/(N/2))."""
    s = config.get("intensity_scale")
    return float(s) if s is not None else math.sqrt(float(config["nphotons"])) / (int(config["N"]) / 2)


def hard_disk(n: int) -> np.ndarray:
    """The disk ``sqrt(x^2 + y^2) < N//4``, ``x, y = arange(N) - N//2 + 0.5`` (forward-model.md §5)."""
    x = np.arange(n) - n // 2 + 0.5
    return (np.sqrt(x[None, :] ** 2 + x[:, None] ** 2) < n // 4).astype(np.float32)


def canvas_sizes(config: Dict[str, Any]) -> Dict[str, int]:
    n, g = int(config["N"]), int(config["gridsize"])
    tf_m = n + (g - 1) * int(config["offset"]) + int(config["max_position_jitter"])
    return {"ptycho": tf_m, "ptycho_torch": n + (g - 1) * _even_step(config)}


def _neighbor_distance(config: Dict[str, Any]) -> float:
    """The torch ``max_neighbor_distance`` that gives ptycho's canvas where one does."""
    g = int(config["gridsize"])
    if g < 2:
        return 3.0  # ptycho_torch's default; the canvas is N whatever it is
    grow = int(config["offset"]) * (g - 1) + int(config["max_position_jitter"])
    step = grow / (g - 1)
    if step == int(step) and int(step) % 2 == 0:
        return float(step)
    return float(2 * math.ceil(step / 2))  # the nearest larger even step: the canvases differ


def _even_step(config: Dict[str, Any]) -> int:
    step = math.ceil(_neighbor_distance(config))
    return step + 1 if step % 2 else step


def refusal(side: str, config: Dict[str, Any], dtype: str) -> Optional[str]:
    """Why ``side`` cannot express the case (None when it can)."""
    try:
        (tf_params if side == "ptycho" else torch_setup)(config, dtype)
    except Refused as exc:
        return str(exc)
    return None


def tf_params(config: Dict[str, Any], dtype: str) -> Dict[str, Any]:
    """The ``ptycho.params.cfg`` entries of the case (the probe is set per batch)."""
    if dtype != "float32":
        raise Refused(f"ptycho's layers are float32/complex64 (tf.complex64 is written into them; under a float64 "
                      f"policy Keras cannot build its IntensityScaler), so a {dtype} case cannot be expressed")
    return {
        "N": int(config["N"]), "gridsize": int(config["gridsize"]), "offset": int(config["offset"]),
        "max_position_jitter": int(config["max_position_jitter"]), "object.big": bool(config["object_big"]),
        "probe.big": bool(config["probe_big"]), "probe.mask": bool(config["probe_mask"]),
        "pad_object": bool(config["pad_object"]), "amp_activation": str(config["amp_activation"]),
        "n_filters_scale": int(config["n_filters_scale"]),
        "gaussian_smoothing_sigma": float(config["gaussian_smoothing_sigma"]),
        "probe_scale": float(config["probe_scale"]), "intensity_scale": scale_of(config),
        "intensity_scale.trainable": False, "probe.trainable": False,
    }


_TORCH_ACTIVATIONS = {"sigmoid": "sigmoid", "swish": "silu"}


def torch_setup(config: Dict[str, Any], dtype: str) -> Dict[str, Any]:
    """``ModelConfig`` / ``DataConfig`` / ``TrainingConfig`` fields and the forward's arguments
    of the case for ``ptycho_torch`` (arrays described, not included: see :func:`torch_arrays`)."""
    n, g = int(config["N"]), int(config["gridsize"])
    c = g * g
    nf = int(config["n_filters_scale"])
    if dtype != "float32":
        raise Refused(f"ptycho_torch casts its object to complex64 (torch.complex64 is written into CombineComplex; "
                      f"in float64 its forward raises 'expected scalar type Float but found Double'), so a {dtype} "
                      f"case cannot be expressed")
    act = str(config["amp_activation"])
    if act not in _TORCH_ACTIVATIONS:
        raise Refused(f"ptycho_torch turns every amp_activation other than 'sigmoid' into SiLU, so "
                      f"amp_activation={act!r} cannot be expressed (sigmoid and swish can)")
    if not config["pad_object"]:
        raise Refused("ptycho_torch has only the pad_object=True decoder (its config field is ignored), so "
                      "pad_object=False cannot be expressed")
    if float(config["gaussian_smoothing_sigma"]) != 0.0:
        raise Refused("ptycho_torch does not smooth the exit wave (gaussian_smoothing_sigma is ignored), so "
                      f"gaussian_smoothing_sigma={config['gaussian_smoothing_sigma']} cannot be expressed")
    if not config["object_big"]:
        raise Refused("ptycho_torch with object_big=False feeds the network's patches straight to the probe (no "
                      "canvas, no extraction; one channel, so only at gridsize 1), so object_big=False cannot be "
                      "expressed stage by stage")
    if config["probe_big"] and n != 64:
        raise Refused(f"ptycho_torch's border branch (probe_big) is {32 * nf} channels wide where ptycho's is "
                      f"{nf * 2048 // n} at N={n}, so the two cannot share weights: probe_big at N={n} cannot be "
                      f"expressed")
    model = {
        "mode": "Unsupervised", "architecture": "cnn", "cnn_output_mode": "amp_phase", "C_model": c,
        "C_forward": c, "n_filters_scale": nf, "amp_activation": _TORCH_ACTIVATIONS[act], "cbam_encoder": False,
        "cbam_bottleneck": False, "cbam_decoder": False, "eca_encoder": False, "batch_norm": False,
        "use_shared_decoder": False, "object_big": bool(config["object_big"]), "probe_big": bool(config["probe_big"]),
        "pad_object": True, "probe_mask": bool(config["probe_mask"]),
        "probe_mask_tensor": "hard disk r < N//4" if config["probe_mask"] else None,
        "intensity_scale_trainable": False, "physics_forward_mode": "amplitude",
        "training_patch_weighting": "central_mask", "amplitude_physics_gain": 1.0,
        "gaussian_smoothing_sigma": 0.0,
    }
    notes: List[str] = []
    if c == 1:
        model.update(use_legacy_decoder_channel_override=True, decoder_last_c_outer_fraction=4 / (32 * nf))
        notes.append("gridsize 1: the decoder's outer slice forced to 4 channels, as ptycho's")
    data = {"N": n, "C": c, "grid_size": (g, g), "max_neighbor_distance": _neighbor_distance(config),
            "probe_scale": 1.0, "probe_normalize": True}
    sizes = canvas_sizes(config)
    if sizes["ptycho"] != sizes["ptycho_torch"]:
        notes.append(f"canvas: ptycho {sizes['ptycho']} px, ptycho_torch {sizes['ptycho_torch']} px (no size "
                     f"matches at gridsize {g})")
    s = scale_of(config)
    forward = {"input_scale_factor": 1.0 / s, "output_scale_factor": 1.0 / s,
               "probe": f"normalize_probe_like_tf(probe_raw, probe_scale={float(config['probe_scale'])}, "
                        f"mask = hard disk r < N//4), shape (1, 1, 1, N, N)",
               "experiment_ids": "zeros (B,)"}
    return {"ModelConfig": model, "DataConfig": data, "TrainingConfig": {}, "forward": forward, "notes": notes,
            "canvas": sizes["ptycho_torch"]}


def translation(side: str, config: Dict[str, Any], dtype: str) -> Dict[str, Any]:
    """What ``side`` is given for the case (JSON-able), for the hub."""
    if side == "ptycho":
        return {"params.cfg": tf_params(config, dtype),
                "probe": f"probe.set_probe(probe_raw[..., None]) with probe_scale={float(config['probe_scale'])}, "
                         f"assigned to the probe_illumination layer's variable before each forward",
                "log_scale": f"log({scale_of(config)!r}), a variable of its own per model",
                "inputs": "input = diffraction (B, N, N, C); input_positions = offsets (B, 1, 2, C)",
                "canvas": canvas_sizes(config)["ptycho"]}
    return torch_setup(config, dtype)
