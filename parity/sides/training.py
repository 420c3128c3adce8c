"""K Adam steps of the generator on each framework: the training half of the built-in sides.

Both functions take a built model (``reference_tf`` / ``torch_impl`` ForwardModel), the K
batches as canonical arrays (``diffraction (K, B, C, N, N)``, ``offsets (K, B, C, 2)``, one
``probe_raw (N, N)``) and the plain settings of :class:`parity.training.TrainSettings`; they
return the loss of each step (on batch k, with the weights before step k) and the neutral
weight set after each step, every array stacked over the steps.

The update is the same on both sides (docs/training.md): Keras 3's Adam computes

    theta -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

and torch.optim.Adam

    theta -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps_t)

which are one formula when ``eps_t = eps / sqrt(1 - b2^t)``. Keras also keeps ``lr`` in a
float32 variable and computes ``b1^t`` and ``b2^t`` from float32 casts of the betas (even for
float64 weights), while the moments use the betas as given; so torch's ``lr`` and ``eps`` are
set before every step (:func:`torch_step`) to make its update Keras's exactly. Only the
generator's weights train; the probe and the intensity scale are fixed inputs. Frameworks are
imported inside the functions.
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Tuple

import numpy as np

from .. import layouts

Trained = Tuple[np.ndarray, Dict[str, np.ndarray]]


def _f32(x: float) -> float:
    return float(np.float32(x))


def torch_step(adam: Mapping[str, float], step: int) -> Tuple[float, float]:
    """torch.optim.Adam's (lr, eps) at ``step`` (1-based) that make its update Keras 3's:

    Keras: ``lr32 * sqrt(1 - b2_32^t) / (1 - b1_32^t) * m / (sqrt(v) + eps)`` (``x_32``: the
    float32 value of x); torch: ``lr_t / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps_t)``.
    """
    b1, b2, t = adam["beta_1"], adam["beta_2"], step
    keras_alpha = _f32(adam["learning_rate"]) * math.sqrt(1.0 - _f32(b2) ** t) / (1.0 - _f32(b1) ** t)
    lr = keras_alpha * (1.0 - b1 ** t) / math.sqrt(1.0 - b2 ** t)
    return lr, adam["epsilon"] / math.sqrt(1.0 - b2 ** t)


def _stack(per_step) -> Dict[str, np.ndarray]:
    return {name: np.stack([w[name] for w in per_step]) for name in per_step[0]}


# ------------------------------------------------------------------------------ TensorFlow
def keras_optimizer(adam: Mapping[str, float]):
    """Keras 3 Adam with the shared hyperparameters (no amsgrad, weight decay, clipping, EMA)."""
    import keras

    return keras.optimizers.Adam(learning_rate=adam["learning_rate"], beta_1=adam["beta_1"], beta_2=adam["beta_2"],
                                 epsilon=adam["epsilon"], amsgrad=False, weight_decay=None)


def train_tf(model, batches: Mapping[str, np.ndarray], settings: Mapping[str, object]) -> Trained:
    import tensorflow as tf

    steps, loss_name = int(settings["steps"]), str(settings["loss"])
    real, cplx = model.real_dtype, model.complex_dtype
    d = tf.constant(np.stack([layouts.canonical_to_tf("diffraction", x) for x in batches["diffraction"]]), real)
    o = tf.constant(np.asarray(batches["offsets"]), real)
    p = tf.constant(layouts.canonical_to_tf("probe_raw", batches["probe_raw"]), cplx)
    variables = model.generator.trainable_variables
    optimizer = keras_optimizer(settings["adam"])
    optimizer.build(variables)

    @tf.function(reduce_retracing=True)
    def step(k):
        with tf.GradientTape() as tape:
            loss = model._run_all_eager(d[k], o[k], p)[loss_name]
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    losses, weights = [], []
    for k in range(steps):
        losses.append(float(step(tf.constant(k)).numpy()))
        weights.append(model.export_weights())
    return np.asarray(losses, dtype=np.float64), _stack(weights)


# ------------------------------------------------------------------------------ torch
def torch_optimizer(params, adam: Mapping[str, float]):
    """torch.optim.Adam with the shared hyperparameters; lr and eps are set per step (torch_step)."""
    import torch

    return torch.optim.Adam(params, lr=adam["learning_rate"], betas=(adam["beta_1"], adam["beta_2"]),
                            eps=adam["epsilon"], weight_decay=0.0, amsgrad=False, maximize=False, foreach=False,
                            capturable=False, differentiable=False, fused=False)


def train_torch(model, batches: Mapping[str, np.ndarray], settings: Mapping[str, object]) -> Trained:
    import torch

    from torch_impl.model import STAGE_INPUTS, STAGE_NAMES

    steps, loss_name, adam = int(settings["steps"]), str(settings["loss"]), settings["adam"]
    upto = STAGE_NAMES[: STAGE_NAMES.index(loss_name) + 1]
    needed = set(STAGE_INPUTS[loss_name]).union(*(STAGE_INPUTS[s] for s in upto))
    params = [p for p in model.generator.parameters()]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch_optimizer(params, adam)
    losses, weights = [], []
    try:
        for k in range(steps):
            env = model._check_batch(batches["diffraction"][k], batches["offsets"][k], batches["probe_raw"])
            for name in upto:
                if name in needed or name == loss_name:
                    env[name] = model._compute(name, {i: env[i] for i in STAGE_INPUTS[name]})
            loss = env[loss_name]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for group in optimizer.param_groups:
                group["lr"], group["eps"] = torch_step(adam, k + 1)
            optimizer.step()
            losses.append(float(loss.detach()))
            weights.append(model.export_weights())
    finally:
        for p in params:
            p.requires_grad_(False)
    return np.asarray(losses, dtype=np.float64), _stack(weights)
