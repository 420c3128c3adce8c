"""What the two upstream sides share: the stage list (the built-in one, so any two of
``reference_tf``, ``torch_impl``, ``ptycho``, ``ptycho_torch`` form a pair), and the canonical
losses, which neither upstream graph computes: derived here from the side's own captured
``pred_intensity`` / ``pred_amp`` and the batch (forward-model.md §6)."""
from __future__ import annotations

import numpy as np

from ..byo import derived
from ..stages import STAGES
from . import checkout, translate


def loss_nll(pred_intensity, diffraction):
    """mean(I - Xs^2 log I): the canonical Poisson NLL without the Stirling term."""
    return np.mean(pred_intensity - np.square(diffraction) * np.log(pred_intensity))


def loss_mae(pred_amp, diffraction):
    """mean(|pred_amp - Xs|)."""
    return np.mean(np.abs(pred_amp - diffraction))


CANONICAL_LOSSES = {"loss_nll": derived(loss_nll), "loss_mae": derived(loss_mae)}


class Upstream:
    """What both upstream sides do alike (mixed in before their byo base class): they need the
    checkout, refuse what :mod:`.translate` cannot express, record what they were given and
    the checkout they ran from."""

    @classmethod
    def setup_problem(cls):
        try:
            checkout.locate()
        except checkout.CheckoutMissing as exc:
            return str(exc)
        return None

    @classmethod
    def refuses(cls, config, dtype):
        return translate.refusal(cls.name, config, dtype)

    def given(self, config, dtype):
        return translate.translation(self.name, dict(config), dtype)

    def capture_meta(self):
        meta = super().capture_meta()
        meta["upstream"] = checkout.describe(checkout.locate())
        return meta


__all__ = ["CANONICAL_LOSSES", "STAGES", "Upstream", "loss_mae", "loss_nll"]
