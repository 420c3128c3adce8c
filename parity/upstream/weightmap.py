"""The neutral weight set (``reference_tf.weights``: ``encoder.block0.conv1.kernel`` ...) onto
the convolutions of each upstream model.

``ptycho`` names its Conv2D layers by creation order (``conv2d``, ``conv2d_1``, ...; its builder
clears the Keras session first, so the count starts at 0 for every model). The encoder creates
``2 L`` convolutions (L blocks); then each decoder, amplitude first, creates in this order: the
last stage's centre conv, the last stage's conv after the full-size ConvUp, the ``L - 1``
decoder-base blocks (two each), and the full-size ConvUp (two) only where it is used
(``probe_big``, or ``pad_object=False``). Layers a config does not
use are not part of the model's graph and hold no weights there.

``ptycho_torch`` names its modules by path: ``autoencoder.encoder.blocks.{i}.conv{1,2}``,
``autoencoder.decoder_{amp,phase}.blocks.{i}.conv{1,2}``, and the last stage
``autoencoder.decoder_amp.amp.{conv1, conv_up_block.conv1, conv_up_block.conv2, conv2}`` (``phase``
for the phase decoder). It builds the full-size branch whatever ``probe_big`` says; without
``probe_big`` those convolutions are unused by its forward and left as built, as are the
scalars of its other physics modes (``forward_model.alpha``/``beta``, ``rect_scaler.s1``/``s2``).
Kernels go HWIO -> OIHW (transpose 3, 2, 0, 1), biases as they are.
"""
from __future__ import annotations

from typing import Any, Dict, List

from ..byo.weights import WeightMap, hwio_to_oihw

DECODERS = ("decoder_amp", "decoder_phase")
_HEAD = {"decoder_amp": "amp", "decoder_phase": "phase"}


def encoder_blocks(config: Dict[str, Any]) -> int:
    """L, the encoder's ConvPool blocks (forward-model.md §3.2, read off the reference's config)."""
    from reference_tf.config import ModelConfig

    return len(ModelConfig.from_dict(dict(config)).encoder_filters)


def _neutral_names(config: Dict[str, Any]) -> List[str]:
    from reference_tf.config import ModelConfig
    from reference_tf.weights import weight_spec

    return list(weight_spec(ModelConfig.from_dict(dict(config))))


def _tf_index(name: str, blocks: int, up: bool) -> int:
    """Creation index of the Conv2D that holds neutral weight ``name`` (without .kernel/.bias)."""
    parts = name.split(".")
    if parts[0] == "encoder":
        return 2 * int(parts[1][len("block"):]) + int(parts[2][-1]) - 1
    base = 2 * blocks + DECODERS.index(parts[0]) * (2 * blocks + (2 if up else 0))
    if parts[1].startswith("block"):
        return base + 2 + 2 * int(parts[1][len("block"):]) + int(parts[2][-1]) - 1
    if parts[1:] == ["last", "conv1"]:
        return base
    if parts[1:] == ["last", "conv2"]:
        return base + 1
    if parts[1:3] == ["last", "up"]:
        return base + 2 + 2 * (blocks - 1) + int(parts[3][-1]) - 1
    raise ValueError(f"no ptycho convolution holds neutral weight {name!r}")


def _keras_layer(index: int) -> str:
    return "conv2d" if index == 0 else f"conv2d_{index}"


def ptycho_map(config: Dict[str, Any]) -> WeightMap:
    blocks = encoder_blocks(config)
    up = bool(config["probe_big"]) or not config["pad_object"]
    entries = {}
    for full in _neutral_names(config):
        name, _, what = full.rpartition(".")
        entries[f"{_keras_layer(_tf_index(name, blocks, up))}/{what}"] = full
    return WeightMap(entries)


def _torch_path(name: str) -> str:
    parts = name.split(".")
    if parts[0] == "encoder":
        return f"autoencoder.encoder.blocks.{parts[1][len('block'):]}.{parts[2]}"
    dec = parts[0]
    if parts[1].startswith("block"):
        return f"autoencoder.{dec}.blocks.{parts[1][len('block'):]}.{parts[2]}"
    head = f"autoencoder.{dec}.{_HEAD[dec]}"
    if parts[1:3] == ["last", "up"]:
        return f"{head}.conv_up_block.{parts[3]}"
    return f"{head}.{parts[2]}"


_TORCH_UNUSED_SCALARS = ("forward_model.alpha", "forward_model.beta", "forward_model.rect_scaler.s1",
                         "forward_model.rect_scaler.s2")


def ptycho_torch_map(config: Dict[str, Any], prefix: str = "") -> WeightMap:
    entries = {}
    for full in _neutral_names(config):
        name, _, what = full.rpartition(".")
        param = "weight" if what == "kernel" else "bias"
        entries[f"{prefix}{_torch_path(name)}.{param}"] = (full, hwio_to_oihw) if what == "kernel" else full
    left = [f"{prefix}{s}" for s in _TORCH_UNUSED_SCALARS]
    if not config["probe_big"]:
        for dec in DECODERS:
            head = f"{prefix}autoencoder.{dec}.{_HEAD[dec]}"
            left += [f"{head}.{m}.{p}" for m in ("conv_up_block.conv1", "conv_up_block.conv2", "conv2")
                     for p in ("weight", "bias")]
    return WeightMap(entries, not_transferred=left)
