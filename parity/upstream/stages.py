"""What the two upstream sides share: the stage list (the built-in one, so any two of
``reference_tf``, ``torch_impl``, ``ptycho``, ``ptycho_torch`` form a pair), and the canonical
losses, which neither upstream graph computes: derived here from the side's own captured
``pred_intensity`` / ``pred_amp`` and the batch (forward-model.md §6)."""
from __future__ import annotations

import numpy as np

from ..byo import derived
from ..stages import STAGES


def loss_nll(pred_intensity, diffraction):
    """mean(I - Xs^2 log I): the canonical Poisson NLL without the Stirling term."""
    return np.mean(pred_intensity - np.square(diffraction) * np.log(pred_intensity))


def loss_mae(pred_amp, diffraction):
    """mean(|pred_amp - Xs|)."""
    return np.mean(np.abs(pred_amp - diffraction))


CANONICAL_LOSSES = {"loss_nll": derived(loss_nll), "loss_mae": derived(loss_mae)}

__all__ = ["CANONICAL_LOSSES", "STAGES", "loss_mae", "loss_nll"]
