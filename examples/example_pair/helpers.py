"""Helpers of the port, called inside its forward."""
import math

import torch


def combine(amplitude, phase_unit):
    """The complex object amplitude * exp(i pi phase_unit) (phase_unit in [-1, 1])."""
    return torch.polar(amplitude, math.pi * phase_unit)
