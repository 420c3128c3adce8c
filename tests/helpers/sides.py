"""Sides defined only in tests (no edit under parity/): they run in worker processes too.

``SleepySide`` hangs forever in its forward pass, ``DyingSide`` exits its process part-way
through one, ``ShortSide`` emits a stage list without ``loss_mae``, and ``FailingSide``
raises at build. Each is a copy of the built-in ``torch_impl`` side otherwise.
"""
import os
import sys
import time

from parity.sides.torch_impl import TorchImpl
from parity.stages import STAGE_NAMES


class SleepySide(TorchImpl):
    name = "sleepy"

    def forward(self, model, inputs):
        print("sleepy side: about to sleep forever", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)


class DyingSide(TorchImpl):
    name = "dying"

    def forward(self, model, inputs):
        print("dying side: exiting mid-job", file=sys.stderr, flush=True)
        os._exit(17)


class FailingSide(TorchImpl):
    name = "failing"

    def build(self, config, weights, dtype, device):
        raise RuntimeError("this side cannot build its model")


class ShortSide(TorchImpl):
    name = "short"
    stages = tuple(s for s in STAGE_NAMES if s != "loss_mae")
