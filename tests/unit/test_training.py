"""parity.training / parity.training_compare without a framework: settings, batches, the job's
hand-over, the comparison's tolerances, non-finite values and sides that cannot train."""
from __future__ import annotations

import numpy as np
import pytest

from parity import training
from parity.training_compare import EPS32, FLOAT64_TOLERANCES, FLOOR_ULPS, compare_training

W0 = {"a.kernel": np.ones((2, 3)), "a.bias": np.zeros(3)}


def _run(steps, drift, losses, only=None):
    """Weights after each step: W0 + (step * 1e-3) + drift[step] on the first element (of the
    layer ``only``, else of every layer)."""
    out = {}
    for name, w in W0.items():
        stack = np.stack([w + 1e-3 * (k + 1) for k in range(steps)])
        if only in (None, name):
            stack.reshape(steps, -1)[:, 0] += np.asarray(drift, dtype=np.float64)
        out[name] = stack
    return np.asarray(losses, dtype=np.float64), out


def _captures(**runs):
    return {role: training.training_capture(l, w, {"side": role}) for role, (l, w) in runs.items()}


def _compare(caps, dtype="float64"):
    return compare_training(caps, W0, case="c", dtype=dtype, settings=training.TrainSettings(steps=3))


def test_identical_runs_pass_with_zero_error():
    run = _run(3, [0, 0, 0], [3.0, 2.0, 1.0])
    res = _compare(_captures(reference=run, candidate=run))
    assert res.passed and res.tolerance_mode == "table"
    assert res.loss_rel_diff.tolist() == [0, 0, 0] and all(r["rel_update"] == 0 for r in res.per_step())


def test_float64_table_tolerance_on_the_update_names_the_first_step_and_layer():
    ref = _run(3, [0, 0, 0], [3.0, 2.0, 1.0])
    cand = _run(3, [0, 0, 5e-9], [3.0, 2.0, 1.0])
    res = _compare(_captures(reference=ref, candidate=cand))
    assert not res.passed and res.first_divergent_step == 3
    # the error 5e-9 over the update norm ||W_3 - W0|| = 3e-3 * sqrt(6) (a.kernel) and 3e-3 * sqrt(3) (a.bias)
    assert res.layers["a.kernel"]["rel_update"][2] == pytest.approx(5e-9 / (3e-3 * np.sqrt(6)))
    assert res.first_divergent_at == "a.bias"  # the larger fraction of its (smaller) update
    assert res.layers["a.bias"]["rel_update"][2] > FLOAT64_TOLERANCES["update"]
    assert "diverges at step 3 of 3" in res.problems[0] and "a.bias" in res.problems[0]


def test_loss_curve_difference_fails_at_its_step():
    ref = _run(3, [0, 0, 0], [3.0, 2.0, 1.0])
    cand = _run(3, [0, 0, 0], [3.0, 2.0 * (1 + 1e-9), 1.0])
    res = _compare(_captures(reference=ref, candidate=cand))
    assert res.first_divergent_step == 2 and res.first_divergent_at == "loss"
    assert res.loss_rel_diff[1] == pytest.approx(1e-9)


def test_noise_floor_is_k_times_the_reference_float32_error_or_a_few_round_offs():
    oracle = _run(3, [0, 0, 0], [3.0, 2.0, 1.0])
    ref32 = _run(3, [0, 2e-6, 0], [3.0, 2.0, 1.0])  # its own error at step 2 only: the floor keeps it at step 3
    ok = _run(3, [0, 2.9 * 2e-6, 2.9 * 2e-6], [3.0, 2.0, 1.0])
    bad = _run(3, [0, 3.1 * 2e-6, 0], [3.0, 2.0, 1.0])
    for cand, passed in ((ok, True), (bad, False)):
        res = _compare(_captures(reference=oracle, reference_float32=ref32, candidate=cand), "float32")
        assert res.tolerance_mode == "noise_floor" and res.k == 3.0
        assert res.passed is passed, res.summary()
    # step 1: the reference's float32 run is exact there; the allowance is FLOOR_ULPS round-offs of the weights
    size = np.linalg.norm(W0["a.kernel"] + 1e-3)
    within = _run(3, [0.9 * FLOOR_ULPS * EPS32 * size, 0, 0], [3.0, 2.0, 1.0], only="a.kernel")
    beyond = _run(3, [1.5 * FLOOR_ULPS * EPS32 * size, 0, 0], [3.0, 2.0, 1.0], only="a.kernel")
    assert _compare(_captures(reference=oracle, reference_float32=ref32, candidate=within), "float32").passed
    res = _compare(_captures(reference=oracle, reference_float32=ref32, candidate=beyond), "float32")
    assert res.first_divergent_step == 1 and res.first_divergent_at == "a.kernel"


def test_nan_in_a_weight_fails_with_counts_and_the_first_step():
    ref = _run(3, [0, 0, 0], [3.0, 2.0, 1.0])
    loss, w = _run(3, [0, 0, 0], [3.0, 2.0, np.inf])
    w["a.bias"][1:, 2] = np.nan
    res = _compare(_captures(reference=ref, candidate=(loss, w)))
    assert not res.passed and res.first_divergent_step == 2 and res.first_divergent_at == "a.bias"
    assert res.nonfinite["candidate"] == {"losses": 1, "weights": 2, "first_step": 2, "first_at": "a.bias"}
    assert "1 non-finite loss(es) and 2 non-finite weight value(s); first at step 2 (a.bias)" in res.problems[0]
    doc = res.to_dict()
    assert doc["verdict"] == "fail" and doc["losses"]["candidate"][2] == "inf"


def test_a_layer_the_reference_did_not_move_but_the_candidate_did_fails():
    ref_l, ref_w = _run(3, [0, 0, 0], [3.0, 2.0, 1.0])
    ref_w["a.bias"][:] = W0["a.bias"]
    cand = _run(3, [0, 0, 0], [3.0, 2.0, 1.0])
    res = _compare(_captures(reference=(ref_l, ref_w), candidate=cand))
    assert res.first_divergent_step == 1 and res.first_divergent_at == "a.bias"


@pytest.mark.parametrize("spec, parsed", [("seeded:20", ("seeded", 20)), (7, ("seeded", 7)), ("split", ("split", None))])
def test_parse_batches(spec, parsed):
    assert training.parse_batches(spec) == parsed


@pytest.mark.parametrize("spec", ["seeded:0", "seeded:", "seeded:2x", "split:3", "all", True])
def test_parse_batches_refuses(spec):
    with pytest.raises(training.TrainingError, match="allowed are seeded:N"):
        training.parse_batches(spec)


@pytest.mark.parametrize("kw, msg", [({"steps": 0}, "whole number >= 1"), ({"steps": 2.5}, "whole number"),
                                     ({"loss": "loss_l2"}, "allowed are loss_nll, loss_mae")])
def test_settings_refuse_bad_values(kw, msg):
    with pytest.raises(training.TrainingError, match=msg):
        training.TrainSettings(**kw)


def test_adam_refuses_bad_hyperparameters():
    with pytest.raises(training.TrainingError, match="beta_2 must be a number in"):
        training.Adam(beta_2=1.0)
    with pytest.raises(training.TrainingError, match="learning_rate must be a finite number > 0"):
        training.Adam(learning_rate=float("nan"))


def test_seeded_batches_are_the_case_s_batch_then_new_seeds_with_the_case_s_probe():
    from parity import cases
    from parity.pairs import resolve_pair

    pair, case = resolve_pair(None), cases.get_case("n64_g1")
    _, weights, stacked = training.case_batches(pair, case, "seeded:3")
    _, _, own = cases.prepare(case)
    assert stacked["diffraction"].shape == (3,) + own["diffraction"].shape
    assert np.array_equal(stacked["diffraction"][0], own["diffraction"])
    assert not np.array_equal(stacked["diffraction"][1], stacked["diffraction"][2])
    assert np.array_equal(stacked["probe_raw"], own["probe_raw"])
    _, _, split = training.case_batches(pair, case, "split")
    assert split["diffraction"].shape == (8, 1) + own["diffraction"].shape[1:]
    with pytest.raises(training.TrainingError, match="9 training steps asked for, but here provides 8 batches"):
        training.check_steps(9, split, "here")


def test_a_side_without_training_is_named_with_its_reason():
    from parity.pairs import resolve_pair

    with pytest.raises(training.TrainingUnavailable, match="side 'example_keras' cannot run training steps: "
                                                           "the side does not implement train_steps"):
        training.check_pair(resolve_pair("example"))
    training.check_pair(resolve_pair(None))  # the built-in sides can


def test_a_train_job_travels_to_the_worker_with_its_task(tmp_path):
    from parity.jobs import Job
    from parity.pool import WorkerPool
    from parity.worker import read_job

    settings = training.TrainSettings(steps=2).to_dict()
    job = Job(side="torch_impl", config={"N": 64}, weights={"w": np.ones(2)}, inputs={"diffraction": np.zeros(1)},
              task="train", train=settings)
    with WorkerPool(tmp_path / "pool") as pool:
        pool.write_job(job, tmp_path / "job")
        back = read_job(tmp_path / "job")
    assert back.task == "train" and back.train == settings
    assert Job(side="torch_impl", config={}, weights={}, inputs={}).task == "forward"


def test_one_flipped_element_in_ten_thousand_is_left_out_of_the_weight_error():
    """A layer of 20000 elements: the 2 largest element errors are left out (1 in 10^4), a third counts."""
    w0 = {"big.kernel": np.zeros(20000)}
    ref = np.stack([np.full(20000, 1e-3)])
    for flipped, passed in ((2, True), (3, False)):
        cand = ref.copy()
        cand[0, :flipped] = -1e-3  # the opposite full step
        caps = _captures(reference=(np.array([1.0]), {"big.kernel": ref}),
                         candidate=(np.array([1.0]), {"big.kernel": cand}))
        res = compare_training(caps, w0, case="c", dtype="float64", settings=training.TrainSettings(steps=1))
        assert res.layers["big.kernel"]["left_out"] == 2
        # every element: each flip is an error of 2e-3 against an update of norm 1e-3 * sqrt(20000)
        assert res.layers["big.kernel"]["rel_update_all"][0] == pytest.approx(2e-3 * np.sqrt(flipped) / (1e-3 * np.sqrt(2e4)))
        assert res.passed is passed, res.summary()


def test_the_loss_allowance_grows_with_the_terms_it_averages():
    oracle = _run(3, [0, 0, 0], [3.0, 2.0, 1.0])
    cand = _run(3, [0, 0, 0], [3.0, 2.0 * (1 + 2e-6), 1.0])  # 2e-6: 17 float32 round-offs
    runs = dict(reference=oracle, reference_float32=oracle, candidate=cand)
    s = training.TrainSettings(steps=3)
    few = compare_training(_captures(**runs), W0, case="c", dtype="float32", settings=s, loss_terms=1)
    many = compare_training(_captures(**runs), W0, case="c", dtype="float32", settings=s, loss_terms=65536)
    assert few.first_divergent_at == "loss" and not few.passed
    assert many.passed and many.loss_tolerance[0] == pytest.approx(FLOOR_ULPS * EPS32 * 256)
