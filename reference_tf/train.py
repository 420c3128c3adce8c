"""A short training loop for the reference (Poisson NLL, Adam), to make weight sets with structure.

Used by ``scripts/train_reference_weights.py``; inputs are channels-last like the model's.
"""
from __future__ import annotations

import logging
from typing import Dict, Mapping

import numpy as np
import tensorflow as tf

from .model import ForwardModel

log = logging.getLogger(__name__)


def train(
    model: ForwardModel,
    diffraction: np.ndarray,
    offsets: np.ndarray,
    probe_raw: np.ndarray,
    *,
    steps: int = 300,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    seed: int = 0,
) -> Dict[str, float]:
    """Train ``model`` in place on (B, N, N, C) scaled amplitudes; returns first/last loss."""
    rng = np.random.default_rng(seed)
    d = tf.constant(diffraction, model.real_dtype)
    o = tf.constant(offsets, model.real_dtype)
    p = tf.constant(probe_raw, model.complex_dtype)
    optimizer = tf.keras.optimizers.Adam(learning_rate)
    variables = model.generator.trainable_variables

    @tf.function(reduce_retracing=True)
    def step(idx):
        with tf.GradientTape() as tape:
            stages = model._run_all_eager(tf.gather(d, idx), tf.gather(o, idx), p)
            loss = stages["loss_nll"]
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    def full_loss():
        total = 0.0
        for start in range(0, n, 32):
            stages = model._run_all(d[start : start + 32], o[start : start + 32], p)
            total += float(stages["loss_nll"]) * min(32, n - start)
        return total / n

    losses = []
    n = diffraction.shape[0]
    before = full_loss()
    for i in range(steps):
        idx = rng.choice(n, size=min(batch_size, n), replace=False)
        losses.append(float(step(tf.constant(idx))))
        if i % 50 == 0:
            log.info("step %d loss %.6g", i, losses[-1])
    xs2 = np.square(diffraction.astype(np.float64))
    floor = float(np.mean(xs2 - xs2 * np.log(np.maximum(xs2, 1e-300))))  # the loss at I = Xs^2
    after = full_loss()
    return {"loss_before": before, "loss_after": after, "loss_floor": floor,
            "gap_closed": (before - after) / (before - floor), "steps": steps}
