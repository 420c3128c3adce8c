"""The generator network of the port (forward-model.md §3), native NCHW ``nn.Module``s.

Module names follow the neutral weight names (see :mod:`torch_impl.weights`): the
``state_dict`` key of ``{dec}.block{i}.conv1.kernel`` is ``{dec}.base.block{i}.conv1.weight``;
every other key is the neutral name with ``kernel`` -> ``weight``. Only the layers that the
neutral weight spec lists are created, so parameter counts equal forward-model.md §8.
"""
from __future__ import annotations

import math
from typing import Callable, Tuple

import torch
from torch import nn

from . import physics
from .config import ModelConfig


# ---- activations ----------------------------------------------------------------------------
def swish(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(x)."""
    return x * torch.sigmoid(x)


def softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + exp(x)), evaluated stably as max(x, 0) + log1p(exp(-|x|)) (no threshold cut-off)."""
    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-torch.abs(x)))


def phase_activation(x: torch.Tensor) -> torch.Tensor:
    """pi * tanh(x)."""
    return math.pi * torch.tanh(x)


_AMP_ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "swish": swish,
    "softplus": softplus,
    "relu": torch.relu,
}


def amplitude_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The configured amplitude head activation (§3.3); every one of the four choices is honoured."""
    try:
        return _AMP_ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"amp_activation={name!r} is not one of {tuple(_AMP_ACTIVATIONS)}") from None


def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    """3x3 convolution, stride 1, symmetric 'same' padding, with bias."""
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=True)


# ---- blocks ---------------------------------------------------------------------------------
class ConvPool(nn.Module):
    """Conv3x3(f)+ReLU, Conv3x3(f)+ReLU, MaxPool 2x2 stride 2."""

    def __init__(self, cin: int, filters: int):
        super().__init__()
        self.conv1 = _conv3x3(cin, filters)
        self.conv2 = _conv3x3(filters, filters)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.conv2(torch.relu(self.conv1(x)))))


class ConvUp(nn.Module):
    """Conv3x3(f)+ReLU, Conv3x3(f)+ReLU, nearest-neighbour upsampling x2."""

    def __init__(self, cin: int, filters: int):
        super().__init__()
        self.conv1 = _conv3x3(cin, filters)
        self.conv2 = _conv3x3(filters, filters)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(torch.relu(self.conv2(torch.relu(self.conv1(x)))))


def _add_blocks(module: nn.Module, block, cin: int, ladder) -> int:
    """Register ``block{i}`` children along ``ladder``; return the output channel count."""
    for i, f in enumerate(ladder):
        module.add_module(f"block{i}", block(cin, f))
        cin = f
    return cin


class Encoder(nn.Module):
    """(B, C, N, N) -> (B, 128n, 8, 8)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.out_channels = _add_blocks(self, ConvPool, config.C, config.encoder_filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.children():
            x = block(x)
        return x


class DecoderBase(nn.Module):
    """(B, 128n, 8, 8) -> (B, 32n, N/2, N/2)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        bottleneck = config.encoder_filters[-1]
        self.out_channels = _add_blocks(self, ConvUp, bottleneck, config.decoder_filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.children():
            x = block(x)
        return x


class DecoderLast(nn.Module):
    """(B, 32n, N/2, N/2) -> (B, K, N, N), forward-model.md §3.3.

    pad_object=True: inner = all channels but the last 4, outer = the last 4;
    x1 = act(conv1(inner)) zero-padded by N/4 per side; with probe_big add
    x2 = swish(conv2(up(outer))) * border_mask. pad_object=False: act(conv2(up(Z))).
    """

    OUTER_CHANNELS = 4

    def __init__(self, config: ModelConfig, activation: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.pad_object = config.pad_object
        self.probe_big = config.probe_big
        self.activation = activation
        self.quarter = config.N // 4
        width = 32 * config.n_filters_scale
        fb = config.border_filters
        if config.pad_object:
            self.conv1 = _conv3x3(width - self.OUTER_CHANNELS, config.K)
            if config.probe_big:
                self.up = ConvUp(self.OUTER_CHANNELS, fb)
                self.conv2 = _conv3x3(fb, config.K)
                self.register_buffer("border", physics.border_mask(config.N), persistent=False)
        else:
            self.up = ConvUp(width, fb)
            self.conv2 = _conv3x3(fb, config.K)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not self.pad_object:
            return self.activation(self.conv2(self.up(z)))
        inner = z[:, : -self.OUTER_CHANNELS]
        outer = z[:, -self.OUTER_CHANNELS :]
        q = self.quarter
        x1 = nn.functional.pad(self.activation(self.conv1(inner)), (q, q, q, q))
        if not self.probe_big:
            return x1
        x2 = swish(self.conv2(self.up(outer))) * self.border
        return x1 + x2


class Decoder(nn.Module):
    """One head: decoder base followed by the last stage."""

    def __init__(self, config: ModelConfig, activation: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.base = DecoderBase(config)
        self.last = DecoderLast(config, activation)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.last(self.base(latent))


class Generator(nn.Module):
    """Encoder plus separate amplitude and phase decoders (no skip connections).

    forward(x: (B, C, N, N)) -> (latent (B, 128n, 8, 8), amp (B, K, N, N), phase (B, K, N, N)).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder_amp = Decoder(config, amplitude_activation(config.amp_activation))
        self.decoder_phase = Decoder(config, phase_activation)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        latent = self.encoder(x)
        return latent, self.decoder_amp(latent), self.decoder_phase(latent)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
