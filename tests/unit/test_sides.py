"""The side contract over every built-in side; in-process, worker and fresh-process identity;
the worker pool's timeouts and crash handling; pairs of any two sides."""
import numpy as np
import pytest

from parity import cases, sides, stages
from parity.engine import Engine
from parity.jobs import Job, execute
from parity.pairs import PairError, resolve_pair
from parity.pool import JobError, WorkerPool
from parity.tolerances import load_tolerances

CASE = cases.get_case("n64_g2_probe_big_relu")
SIDES = tuple(sides.BUILTIN_SIDES)
TEST_SIDES = {"sleepy": "tests.helpers.sides:SleepySide", "dying": "tests.helpers.sides:DyingSide",
              "failing": "tests.helpers.sides:FailingSide", "short": "tests.helpers.sides:ShortSide"}


@pytest.fixture(scope="module")
def prepared():
    return cases.prepare(CASE.with_(batch=2))


@pytest.fixture
def test_sides():
    for name, target in TEST_SIDES.items():
        sides.register_side(name, target)
    yield
    for name in TEST_SIDES:
        sides.unregister_side(name)


def _job(prepared, side, dtype="float32", teacher=None, **kw):
    config, weights, inputs = prepared
    return Job(side=side, config=config, weights=weights, inputs=inputs, dtype=dtype, case="contract",
               teacher=teacher, **kw)


@pytest.fixture(scope="module", params=[(s, d) for s in SIDES for d in ("float32", "float64")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def result(request, prepared):
    side, dtype = request.param
    return side, dtype, execute(_job(prepared, side, dtype))


def test_capture_has_every_stage_in_order_with_canonical_shapes(result):
    side, dtype, res = result
    cfg = CASE.config
    assert list(res.capture.stages) == list(stages.STAGE_NAMES)
    for name, shape in stages.expected_shapes(cfg, 2).items():
        arr = res.capture.stages[name]
        assert arr.shape == shape, (side, name)
        assert np.iscomplexobj(arr) == stages.get(name).complex, (side, name)
        expected = {"float32": (np.float32, np.complex64), "float64": (np.float64, np.complex128)}[dtype]
        assert arr.dtype == expected[int(np.iscomplexobj(arr))], (side, name, arr.dtype)
        assert np.all(np.isfinite(arr)), (side, name)


def test_capture_metadata(result):
    side, dtype, res = result
    meta = res.capture.meta
    assert meta["side"] == side and meta["dtype"] == dtype and meta["device"] == "cpu"
    assert meta["framework"] == sides.side_class(side).framework
    assert meta["case"] == "contract" and meta["config"]["probe_big"] is True
    assert {"numpy"} <= set(meta["versions"]) and meta["versions"][meta["framework"]]
    assert meta["wall_time_s"] > 0 and {"import_s", "build_s", "forward_s"} <= set(meta["timings"])
    assert isinstance(meta["determinism"], dict) and meta["determinism"]


def test_run_stage_reproduces_the_forward_pass(result, prepared):
    side_name, dtype, res = result
    config, weights, inputs = prepared
    side = sides.get_side(side_name)
    model = side.build(config, weights, dtype, "cpu")
    env_all = {**inputs, **res.capture.stages}
    tol = 1e-5 if dtype == "float32" else 1e-12
    for st in stages.STAGES:
        out = side.run_stage(model, st.name, {k: env_all[k] for k in st.inputs})
        ref = res.capture.stages[st.name]
        assert out.shape == ref.shape
        scale = max(float(np.max(np.abs(ref))), 1e-30)
        assert np.max(np.abs(out - ref)) <= tol * scale, (side_name, st.name)


@pytest.mark.parametrize("side", SIDES)
def test_workers_and_fresh_processes_give_identical_numbers(prepared, side):
    inproc = execute(_job(prepared, side))
    for fresh in (False, True):
        with WorkerPool(fresh=fresh) as pool:
            out = pool.run(_job(prepared, side))
        assert list(out.capture.stages) == list(inproc.capture.stages)
        for name, arr in inproc.capture.stages.items():
            np.testing.assert_array_equal(out.capture.stages[name], arr, err_msg=name)
        assert out.capture.meta["side"] == side


def test_teacher_forcing_returns_local_stages(prepared):
    ref = execute(_job(prepared, "reference_tf"))
    cand = execute(_job(prepared, "torch_impl", teacher=ref.capture.stages))
    assert set(cand.local) == set(stages.STAGE_NAMES)
    # fed with the reference's inputs, the candidate's canvas is at least as close as end to end
    for name in ("canvas", "far_field_amp"):
        local_err = np.max(np.abs(cand.local[name] - ref.capture.stages[name]))
        assert local_err <= 1e-5 * np.max(np.abs(ref.capture.stages[name]))


def test_worker_reports_a_clear_error(prepared):
    config, weights, inputs = prepared
    bad = {k: v for k, v in weights.items() if k != "encoder.block0.conv1.kernel"}
    job = Job(side="torch_impl", config=config, weights=bad, inputs=inputs, case="bad", label="candidate bad")
    with WorkerPool() as pool, pytest.raises(JobError) as info:
        pool.run(job)
    err = info.value
    assert err.side == "torch_impl" and err.kind == "error" and err.label == "candidate bad"
    assert "missing arrays ['encoder.block0.conv1.kernel']" in err.reason
    assert str(err).startswith("side torch_impl, job 'candidate bad': ValueError: ")


def test_unknown_side_lists_the_known_ones():
    with pytest.raises(sides.UnknownSide, match=r"unknown side 'jax'; known sides are: reference_tf, torch_impl"):
        sides.get_side("jax")
    with pytest.raises(PairError, match=r"unknown side 'jax'; known sides are: reference_tf, torch_impl"):
        resolve_pair("jax:torch_impl")


def test_worker_pool_reuses_its_process_and_writes_weights_once(prepared):
    inproc = execute(_job(prepared, "torch_impl"))
    with WorkerPool() as pool:
        first = pool.run(_job(prepared, "torch_impl"))
        pid = pool._workers[("torch_impl", "cpu")].proc.pid
        second = pool.run(_job(prepared, "torch_impl", dtype="float64"))
        assert pool._workers[("torch_impl", "cpu")].proc.pid == pid
        assert len(list((pool.root / "weights").iterdir())) == 1  # one weight set, written once
        assert second.capture.meta["model_cached"] is False
        third = pool.run(_job(prepared, "torch_impl", dtype="float64"))
    for name, arr in inproc.capture.stages.items():
        np.testing.assert_array_equal(first.capture.stages[name], arr, err_msg=name)
    assert second.capture.stages["canvas"].dtype == np.complex128
    assert third.capture.meta["model_cached"] is True  # same side, config, weights, dtype: built once


# ---- sides that hang, crash or disagree ---------------------------------------------------------
def test_a_hanging_side_times_out_and_the_pool_goes_on(prepared, test_sides):
    with WorkerPool(job_timeout=30) as pool:
        with pytest.raises(JobError) as info:
            pool.run(_job(prepared, "sleepy", label="candidate contract float32 cpu"))
        ok = pool.run(_job(prepared, "torch_impl"))
        assert pool.restarts == 1
    err = info.value
    assert err.kind == "timeout" and err.side == "sleepy" and err.label == "candidate contract float32 cpu"
    assert "no answer after 30 s (job timeout); the worker was killed" in err.reason
    assert "sleepy side: about to sleep forever" in err.tail
    assert ok.capture.stages["canvas"].shape[0] == 2


def test_a_side_that_exits_mid_job_is_reported_and_restarted(prepared, test_sides):
    with WorkerPool() as pool:
        with pytest.raises(JobError) as info:
            pool.run(_job(prepared, "dying"))
        with pytest.raises(JobError):  # a fresh worker answers the next job (and dies again)
            pool.run(_job(prepared, "dying"))
        assert pool.restarts == 2
    err = info.value
    assert err.kind == "crash" and err.side == "dying"
    assert "the worker died (exit code 17) while running the job" in err.reason
    assert "dying side: exiting mid-job" in err.tail and "dying side: exiting mid-job" in str(err)


def test_a_pair_whose_sides_disagree_on_the_stage_list_is_refused(test_sides):
    with pytest.raises(PairError, match=r"sides torch_impl and short disagree on the stage list: only torch_impl "
                                        r"has \['loss_mae'\]"):
        resolve_pair("torch_impl:short")


def test_an_errored_case_does_not_stop_the_plan(test_sides):
    with Engine(resolve_pair("reference_tf:failing"), isolation="workers") as engine:
        plan = engine.plan()
        plan.add_case(cases.get_case("n64_g1"), tolerances=load_tolerances())
        (out,) = engine.run(plan)
    assert out.result is None and out.errors[0]["side"] == "failing"
    assert "RuntimeError: this side cannot build its model" in out.error


@pytest.mark.parametrize("spec", ["torch_impl:torch_impl", "reference_tf:reference_tf"])
def test_a_side_against_itself_agrees_exactly(spec):
    from parity.run import run_case

    run = run_case("n64_g2", pair=spec)
    assert run.result, run.result.summary()
    assert all(s.max_abs == 0 for s in run.result.stages), [(s.name, s.max_abs) for s in run.result.stages]
    assert run.result.backends == {"reference": spec.split(":")[0], "candidate": spec.split(":")[1]}
