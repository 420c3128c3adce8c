"""Training-step parity (selected by ``pytest tests/parity -k backward``): K Adam steps from the
same weights on both sides of the built-in pair agree in float32 (noise floor) and float64; the
two optimisers run one update; a wrong update planted in the port is caught at the step where
it shows; more steps than batches is an error."""
from __future__ import annotations

import math

import numpy as np
import pytest

from parity import training
from parity.pool import WorkerPool
from parity.sides import training as side_training

CASE = "n64_g2"


@pytest.fixture(scope="module")
def pool():
    with WorkerPool() as p:
        yield p


# ------------------------------------------------------------------------------ one update
def _hand_adam(grads, lr, b1, b2, eps):
    """Keras 3's Adam by hand in float64: the moments with the betas as given, the bias
    corrections with their float32 values, the learning rate as its float32 value."""
    f32 = lambda x: float(np.float32(x))  # noqa: E731
    theta, m, v, out = np.zeros_like(grads[0]), np.zeros_like(grads[0]), np.zeros_like(grads[0]), []
    for t, g in enumerate(grads, start=1):
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        alpha = f32(lr) * math.sqrt(1 - f32(b2) ** t) / (1 - f32(b1) ** t)
        theta = theta - m * alpha / (np.sqrt(v) + eps)
        out.append(theta.copy())
    return out


def test_backward_adam_keras_and_torch_run_one_update_hand_computed():
    import tensorflow as tf
    import torch

    grads = [np.array([0.48, 1e-6, -2.0, 0.0, 3e-7]), np.array([0.5, -1e-6, -1.0, 0.0, 1e-5]),
             np.array([-0.3, 2e-6, 4.0, 1e-8, 0.0])]
    adam = training.Adam().to_dict()
    expected = _hand_adam(grads, **{"lr": adam["learning_rate"], "b1": adam["beta_1"], "b2": adam["beta_2"],
                                    "eps": adam["epsilon"]})
    var = tf.Variable(np.zeros(5))
    keras_opt = side_training.keras_optimizer(adam)
    keras_opt.build([var])
    param = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    torch_opt = side_training.torch_optimizer([param], adam)
    plain = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    plain_opt = side_training.torch_optimizer([plain], adam)  # torch's own per-step constants
    for t, (g, want) in enumerate(zip(grads, expected), start=1):
        keras_opt.apply_gradients([(tf.constant(g), var)])
        param.grad, plain.grad = torch.tensor(g), torch.tensor(g)
        for group in torch_opt.param_groups:
            group["lr"], group["eps"] = side_training.torch_step(adam, t)
        torch_opt.step()
        plain_opt.step()
        np.testing.assert_allclose(var.numpy(), want, rtol=1e-14, atol=0)
        np.testing.assert_allclose(param.detach().numpy(), want, rtol=1e-14, atol=0)
        # without the per-step lr and eps torch's update is another one (~7e-6 of it at t=1)
        moved = np.abs(want) > 0
        gap = np.abs(plain.detach().numpy() - want)[moved] / np.abs(want[moved])
        assert gap.max() > 1e-6


# ------------------------------------------------------------------------------ the clean port
def _check_clean(run, dtype, k):
    res = run.result
    assert res.passed, res.summary()
    assert res.steps == k and res.tolerance_mode == ("noise_floor" if dtype == "float32" else "table")
    assert np.all(np.isfinite(res.losses["candidate"])) and np.all(res.loss_rel_diff >= 0)
    assert all(nf["losses"] == 0 and nf["weights"] == 0 for nf in res.nonfinite.values())
    assert all(r["rel_update"] <= r["tolerance"] for r in res.per_step())
    losses, weights = training.unpack(run.captures["candidate"])
    assert losses.shape == (k,) and set(weights) == set(run.initial)
    for role in ("reference", "candidate"):  # training moved every weight array, on both sides
        _, w = training.unpack(run.captures[role])
        assert all(np.any(w[n][-1] != run.initial[n]) for n in run.initial), role
    if dtype == "float64":
        assert res.loss_rel_diff.max() < 1e-13
        assert max(r["rel_update"] for r in res.per_step()) < 1e-10


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_backward_training_steps_agree_k1_and_k20(pool, dtype):
    """The clean port trains like the reference for K=1 and K=20 (both sides in their workers);
    both are deterministic, so K=1 is bit for bit the first step of K=20."""
    one, twenty = (training.train_case(CASE, steps=k, dtype=dtype, pool=pool) for k in (1, 20))
    _check_clean(one, dtype, 1)
    _check_clean(twenty, dtype, 20)
    for role in one.captures:
        l1, w1 = training.unpack(one.captures[role])
        l20, w20 = training.unpack(twenty.captures[role])
        assert l1[0] == l20[0], role
        assert all(np.array_equal(w1[n][0], w20[n][0]) for n in w1), role
    if dtype == "float32":  # the noise floor: the reference's own float32 error, growing as training goes on
        floor = [float(x) for x in twenty.result.floor["worst_rel_update"]]
        assert len(floor) == 20 and all(f > 0 for f in floor)
        assert floor[-1] > 10 * floor[0]


# ------------------------------------------------------------------------------ planted faults
def _planted(monkeypatch, **wrong):
    real = side_training.torch_optimizer
    monkeypatch.setattr(side_training, "torch_optimizer", lambda params, adam: real(params, {**adam, **wrong}))


@pytest.mark.parametrize("wrong", [{"beta_1": 0.8}, {"beta_2": 0.99}], ids=["beta_1", "beta_2"])
def test_backward_training_catches_a_wrong_beta_at_step_2(monkeypatch, wrong):
    """Step 1 of Adam is lr * g / (|g| + eps / sqrt(1 - b2)): beta_1 cancels in the bias
    correction and beta_2 only moves the tiny epsilon term, so the weights after step 1 agree;
    the wrong moment average shows from step 2 on."""
    _planted(monkeypatch, **wrong)
    res = training.train_case(CASE, steps=2, dtype="float32").result  # in this process: the patch applies
    assert not res.passed
    assert res.first_divergent_step == 2, res.summary()
    assert res.first_divergent_at != "loss"  # the loss of step 2 is computed before the second update
    assert max(res.margins()[n][0] for n in res.layers) <= 1.0  # step 1 agrees
    assert "diverges at step 2 of 2" in res.problems[-1]


# ------------------------------------------------------------------------------ bad input
def test_backward_training_more_steps_than_batches_is_an_error(monkeypatch):
    monkeypatch.setattr(training, "run_jobs", lambda *a, **k: pytest.fail("no side may run"))
    with pytest.raises(training.TrainingError) as err:
        training.train_case(CASE, steps=5, batches="split")
    msg = str(err.value)
    assert "5 training steps" in msg and "4 batches" in msg and "1..4" in msg and "\n" not in msg
    with pytest.raises(training.TrainingError, match="provides 3 batches"):
        training.train_case(CASE, steps=4, batches="seeded:3")
