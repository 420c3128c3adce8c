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


# ---- a pair with a stage list of its own (no edit of parity/stages.py) --------------------------
import numpy as np  # noqa: E402

from parity.stages import STAGES, Stage  # noqa: E402

#: The built-in stages less loss_mae, plus pred_sqrt = sqrt(pred_intensity) after pred_intensity.
SQRT_STAGES = tuple(s for s in STAGES if s.name != "loss_mae")
_at = [s.name for s in SQRT_STAGES].index("pred_intensity") + 1
SQRT_STAGES = SQRT_STAGES[:_at] + (Stage("pred_sqrt", ("B", "C", "N", "N"), False, ("pred_intensity",),
                                         "sqrt of the predicted intensity"),) + SQRT_STAGES[_at:]


class SqrtSide(TorchImpl):
    """torch_impl with a stage the built-in pair does not have, computed by the side itself."""

    name = "sqrt"
    stages = tuple(s.name for s in SQRT_STAGES)
    factor = 1.0

    def _sqrt(self, x):
        x = np.asarray(x)
        return (np.sqrt(x) * x.dtype.type(self.factor)).astype(x.dtype)

    def forward(self, model, inputs):
        out = super().forward(model, inputs)
        out.pop("loss_mae")
        ordered = {}
        for name, arr in out.items():
            ordered[name] = arr
            if name == "pred_intensity":
                ordered["pred_sqrt"] = self._sqrt(arr)
        return ordered

    def run_stage(self, model, name, env):
        if name == "pred_sqrt":
            real = np.dtype(str(model.real_dtype).replace("torch.", ""))  # the model's precision
            return self._sqrt(np.asarray(env["pred_intensity"]).astype(real))
        return super().run_stage(model, name, env)


class BuggySqrtSide(SqrtSide):
    """The same with a planted 0.1 % error in pred_sqrt only."""

    name = "sqrt_buggy"
    factor = 1.001


def sqrt_pair():
    from parity import cases
    from parity.pairs import Pair

    return Pair(name="sqrt", reference="sqrt", candidate="sqrt_buggy", stages=SQRT_STAGES, cases=cases,
                description="a pair defined only in tests, with a stage of its own")


def registered_sqrt_pair():
    """The sqrt pair with its two sides registered (for ``--pair-from`` in a fresh process)."""
    from parity import sides

    sides.register_side("sqrt", "tests.helpers.sides:SqrtSide")
    sides.register_side("sqrt_buggy", "tests.helpers.sides:BuggySqrtSide")
    return sqrt_pair()
# ---- gradients ----------------------------------------------------------------------------------
class NoGradSide(TorchImpl):
    """torch_impl that says it computes no gradients (backward parity is not available)."""

    name = "nograd"
    supports_gradients = False
    gradients_unavailable = "this test side has no autograd"


class NanGradSide(TorchImpl):
    """torch_impl whose gradient of every loss is NaN from exit_wave up (its forward is exact)."""

    name = "nangrad"

    def gradients(self, model, inputs, loss):
        stages, weights, values = super().gradients(model, inputs, loss)
        up = ("exit_wave", "probe", "extracted_patches", "canvas", "object_patches", "amp", "phase", "latent",
              "input_scaled")
        stages = {k: (np.full_like(v, np.nan) if k in up else v) for k, v in stages.items()}
        return stages, {k: np.full_like(v, np.nan) for k, v in weights.items()}, values
