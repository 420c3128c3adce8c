"""Small unmodified models for the tests of parity.byo (imported only where a side builds them)."""
import torch
from torch import nn

from . import byo_functions
from .byo_functions import halve


class Net(nn.Module):
    """a (1x1 conv) -> doubled (a function) -> b (1x1 conv) -> shared twice -> relu in place."""

    def __init__(self, channels=2):
        super().__init__()
        self.a = nn.Conv2d(channels, channels, 1)
        self.b = nn.Conv2d(channels, channels, 1)
        self.shared = nn.Identity()
        self.unused = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        y = byo_functions.double(self.a(x))
        z = self.b(halve(y) * 2)
        z = self.shared(z)
        z = self.shared(z)
        return torch.relu_(z)


class Broken(Net):
    """Raises before b."""

    def forward(self, x):
        byo_functions.double(self.a(x))
        raise RuntimeError("the model broke before b")


def net_weights(channels=2, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return {"wa": rng.normal(size=(channels, channels, 1, 1)), "ba": rng.normal(size=channels),
            "wb": rng.normal(size=(channels, channels, 1, 1)), "bb": rng.normal(size=channels)}
