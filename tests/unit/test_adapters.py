"""The adapter contract, checked over every adapter; in-process vs subprocess identity."""
import numpy as np
import pytest

from parity import cases, stages
from parity.adapters import BACKENDS, Job, execute
from parity.adapters.worker import run_in_subprocess

CASE = cases.get_case("n64_g2_probe_big_relu")


@pytest.fixture(scope="module")
def prepared():
    return cases.prepare(CASE.with_(batch=2))


def _job(prepared, backend, dtype="float32", teacher=None):
    config, weights, inputs = prepared
    return Job(backend=backend, config=config, weights=weights, inputs=inputs, dtype=dtype, case="contract",
               teacher=teacher)


@pytest.fixture(scope="module", params=[(b, d) for b in BACKENDS for d in ("float32", "float64")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def result(request, prepared):
    backend, dtype = request.param
    return backend, dtype, execute(_job(prepared, backend, dtype))


def test_capture_has_every_stage_in_order_with_canonical_shapes(result):
    backend, dtype, res = result
    cfg = CASE.config
    assert list(res.capture.stages) == list(stages.STAGE_NAMES)
    for name, shape in stages.expected_shapes(cfg, 2).items():
        arr = res.capture.stages[name]
        assert arr.shape == shape, (backend, name)
        assert np.iscomplexobj(arr) == stages.get(name).complex, (backend, name)
        expected = {"float32": (np.float32, np.complex64), "float64": (np.float64, np.complex128)}[dtype]
        assert arr.dtype == expected[int(np.iscomplexobj(arr))], (backend, name, arr.dtype)
        assert np.all(np.isfinite(arr)), (backend, name)


def test_capture_metadata(result):
    backend, dtype, res = result
    meta = res.capture.meta
    assert meta["backend"] == backend and meta["dtype"] == dtype and meta["device"] == "cpu"
    assert meta["case"] == "contract" and meta["config"]["probe_big"] is True
    assert {"numpy"} <= set(meta["versions"]) and meta["versions"]["tensorflow" if backend == "tf" else "torch"]
    assert meta["wall_time_s"] > 0 and {"import_s", "build_s", "forward_s"} <= set(meta["timings"])
    assert isinstance(meta["determinism"], dict) and meta["determinism"]


def test_run_stage_reproduces_the_forward_pass(result, prepared):
    backend, dtype, res = result
    from parity.adapters import get_adapter

    config, weights, inputs = prepared
    adapter = get_adapter(backend)
    model = adapter.build(config, weights, dtype, "cpu")
    env_all = {**inputs, **res.capture.stages}
    tol = 1e-5 if dtype == "float32" else 1e-12
    for st in stages.STAGES:
        out = adapter.run_stage(model, st.name, {k: env_all[k] for k in st.inputs})
        ref = res.capture.stages[st.name]
        assert out.shape == ref.shape
        scale = max(float(np.max(np.abs(ref))), 1e-30)
        assert np.max(np.abs(out - ref)) <= tol * scale, (backend, st.name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_subprocess_gives_identical_numbers(prepared, backend, tmp_path):
    inproc = execute(_job(prepared, backend))
    sub = run_in_subprocess(_job(prepared, backend), tmp_path / backend)
    assert list(sub.capture.stages) == list(inproc.capture.stages)
    for name, arr in inproc.capture.stages.items():
        np.testing.assert_array_equal(sub.capture.stages[name], arr, err_msg=name)
    assert sub.capture.meta["backend"] == backend


def test_teacher_forcing_returns_local_stages(prepared):
    ref = execute(_job(prepared, "tf"))
    port = execute(_job(prepared, "torch", teacher=ref.capture.stages))
    assert set(port.local) == set(stages.STAGE_NAMES)
    # fed with the reference's inputs, the port's canvas is at least as close as end to end
    for name in ("canvas", "far_field_amp"):
        local_err = np.max(np.abs(port.local[name] - ref.capture.stages[name]))
        assert local_err <= 1e-5 * np.max(np.abs(ref.capture.stages[name]))


def test_worker_reports_a_clear_error(prepared, tmp_path):
    config, weights, inputs = prepared
    bad = {k: v for k, v in weights.items() if k != "encoder.block0.conv1.kernel"}
    job = Job(backend="torch", config=config, weights=bad, inputs=inputs, case="bad")
    with pytest.raises(RuntimeError, match=r"torch worker failed \(exit 2\): ValueError: .*missing arrays \['encoder.block0.conv1.kernel'\]"):
        run_in_subprocess(job, tmp_path / "bad")


def test_unknown_backend():
    from parity.adapters import get_adapter

    with pytest.raises(ValueError, match=r"unknown backend 'jax'; expected one of \['tf', 'torch'\]"):
        get_adapter("jax")


def test_worker_pool_gives_identical_numbers_and_reuses_processes(prepared, tmp_path):
    from parity.adapters.worker import WorkerPool

    inproc = execute(_job(prepared, "torch"))
    with WorkerPool(tmp_path) as pool:
        first = pool.run(_job(prepared, "torch"))
        pid = pool._procs["torch"].pid
        second = pool.run(_job(prepared, "torch", dtype="float64"))
        assert pool._procs["torch"].pid == pid
    for name, arr in inproc.capture.stages.items():
        np.testing.assert_array_equal(first.capture.stages[name], arr, err_msg=name)
    assert second.capture.stages["canvas"].dtype == np.complex128
