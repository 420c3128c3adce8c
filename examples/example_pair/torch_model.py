"""The port: an idiomatic torch module, channels-first (NCHW), written without the harness in mind.

Its ReLUs are applied inline (the activations after each convolution are no module's output),
the phase head ends in tanh (the pi is applied by the helper), and the complex object is made by
a helper function imported by name.
"""
import torch
from torch import nn

from .helpers import combine


class FarField(nn.Module):
    """|FFT2| / N of each image of a (B, C, N, N) complex stack."""

    def forward(self, psi):
        return torch.abs(torch.fft.fft2(psi)) / psi.shape[-1]


class TinyNet(nn.Module):
    def __init__(self, size=16, channels=2, features=8):
        super().__init__()
        self.stem = nn.Conv2d(channels, features, 3, padding=1)
        self.body = nn.Conv2d(features, features, 3, padding=1)
        self.amp_head = nn.Sequential(nn.Conv2d(features, channels, 1), nn.Sigmoid())
        self.phase_head = nn.Sequential(nn.Conv2d(features, channels, 1), nn.Tanh())
        self.propagate = FarField()

    def forward(self, image):
        x = torch.relu(self.stem(image))
        x = torch.relu(self.body(x))
        obj = combine(self.amp_head(x), self.phase_head(x))
        return self.propagate(obj)
