"""Bad input end to end: every refusal names what is wrong (messages asserted, not only exit codes).

Covers the fixture, capture and weight loaders through ``run_case`` / ``prepare``, non-finite
values in the inputs and in one backend's output, mismatched stage sets, unknown case and
fault names, a hub that already holds a self-test, and a backend whose framework cannot be
imported (simulated with a ``torch`` package on PYTHONPATH that raises ImportError).
The report CLI's own bad input is tested with the report.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import parity
from parity import cases as case_registry
from parity import fixtures as fixture_store
from parity import selftest
from parity.capture import Capture, CaptureError, load_capture, save_capture
from parity.compare import compare
from parity.tolerances import load_tolerances, noise_floor_tolerances

ROOT = Path(__file__).resolve().parents[2]
SHIM_MESSAGE = "simulated: torch is not installed"


def _env(extra_path=None):
    env = dict(os.environ)
    parts = ([str(extra_path)] if extra_path else []) + [str(ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(parts + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


@pytest.fixture(scope="module")
def port_stages():
    """Every stage of the clean port on n64_g2 (no TensorFlow needed)."""
    from parity.sides import get_side

    adapter = get_side("torch_impl")
    config, weights, inputs = case_registry.prepare(case_registry.get_case("n64_g2"))
    model = adapter.build(config, weights, "float32", "cpu")
    return adapter.forward(model, inputs)


# ---- fixtures --------------------------------------------------------------------------------
@pytest.fixture
def fixture_copy(tmp_path, monkeypatch):
    """A copy of the stored fixtures that prepare()/run_case() read instead of fixtures/."""
    d = tmp_path / "fixtures"
    d.mkdir()
    shutil.copy(fixture_store.DEFAULT_DIR / fixture_store.MANIFEST_NAME, d)
    shutil.copy(fixture_store.DEFAULT_DIR / "n64_g2_int.npz", d)
    monkeypatch.setattr(fixture_store, "DEFAULT_DIR", d)
    return d


def test_truncated_fixture_fails_its_checksum_in_run_case(fixture_copy):
    path = fixture_copy / "n64_g2_int.npz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(fixture_store.FixtureError) as info:
        parity.run_case("n64_g2")
    msg = str(info.value)
    assert msg.startswith(f"fixture file {path} fails its checksum: expected sha256 ")
    assert f"({len(data) // 2} bytes on disk, manifest says {len(data)})" in msg


def test_truncated_and_corrupt_fixture_without_checksum(fixture_copy):
    spec = fixture_store.get_spec("n64_g2_int")
    path = fixture_copy / "n64_g2_int.npz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(fixture_store.FixtureError, match="is not a readable .npz archive \\(corrupt or truncated\\?\\)"):
        fixture_store.load_fixture("n64_g2_int", fixture_copy, verify=False)
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 200)
    with pytest.raises(fixture_store.FixtureError, match=f"fixture file {path} is not a readable .npz archive"):
        fixture_store.read_npz(path, spec)


def test_pickle_bearing_fixture_is_refused(fixture_copy):
    spec = fixture_store.get_spec("n64_g2_int")
    path = fixture_copy / "evil.npz"
    np.savez(path, X=np.array([{"a": 1}], dtype=object))
    with pytest.raises(fixture_store.FixtureError) as info:
        fixture_store.read_npz(path, spec)
    assert f"fixture file {path} holds a pickled (object) array, which is refused" in str(info.value)


# ---- captures --------------------------------------------------------------------------------
def test_truncated_capture(tmp_path, port_stages):
    path = save_capture(tmp_path / "c.npz", Capture(stages=port_stages, meta={"backend": "torch"}))
    assert set(load_capture(path).stages) == set(port_stages)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CaptureError) as info:
        load_capture(path)
    assert str(info.value).startswith(f"capture file {path} ")
    assert "corrupt or truncated" in str(info.value)


@pytest.mark.parametrize("content, says", [
    (b"", "is empty"),
    (b"this is not an archive", "is not a zip archive"),
    (pickle.dumps({"latent": 1}), "holds pickled data (refusing to load; captures never contain pickles)"),
])
def test_corrupt_capture(tmp_path, content, says):
    path = tmp_path / "c.npz"
    path.write_bytes(content)
    with pytest.raises(CaptureError) as info:
        load_capture(path)
    assert str(info.value) == f"capture file {path} {says}; expected an .npz written by save_capture"


def test_pickle_bearing_capture_npz(tmp_path):
    path = tmp_path / "c.npz"
    np.savez(path, __meta__=np.array("{}"), latent=np.array([{"x": 1}], dtype=object))
    with pytest.raises(CaptureError) as info:
        load_capture(path)
    assert str(info.value) == (f"capture file {path}: array 'latent' holds Python objects (pickle); "
                               f"captures hold numeric arrays only (refusing to load)")


def test_capture_with_unknown_stage(tmp_path):
    path = tmp_path / "c.npz"
    np.savez(path, __meta__=np.array("{}"), bogus=np.zeros(3))
    with pytest.raises(CaptureError, match=r"holds unknown stage name\(s\) \['bogus'\]"):
        load_capture(path)


# ---- weights ---------------------------------------------------------------------------------
@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(case_registry, "WEIGHTS_DIR", tmp_path)
    return tmp_path


def _bad_weights_case(name):
    return case_registry.Case(f"bad_{name}", "n64_g2_int", case_registry._m(n_filters_scale=1), f"file:{name}")


def test_weights_with_a_missing_array(weights_dir):
    case = _bad_weights_case("missing")
    weights = case_registry.init_weights(case.config, 1)
    del weights["encoder.block0.conv1.bias"]
    np.savez(weights_dir / "missing.npz", **weights)
    with pytest.raises(ValueError) as info:
        parity.run_case(case)
    assert str(info.value) == ("weight set does not fit the model config: missing arrays "
                               "['encoder.block0.conv1.bias']")


def test_weights_with_a_misshaped_array(weights_dir):
    from torch_impl import ForwardModel, ModelConfig

    case = _bad_weights_case("misshaped")
    weights = case_registry.init_weights(case.config, 1)
    weights["encoder.block0.conv1.kernel"] = weights["encoder.block0.conv1.kernel"].transpose(0, 1, 3, 2)
    np.savez(weights_dir / "misshaped.npz", **weights)
    expected = ("weight set does not fit the model config: mis-shaped arrays [encoder.block0.conv1.kernel: "
                "expected shape (3, 3, 4, 32), got (3, 3, 32, 4)]")
    with pytest.raises(ValueError) as info:
        parity.run_case(case)
    assert str(info.value) == expected
    with pytest.raises(ValueError) as info:  # the port refuses the same set with the same words
        ForwardModel(ModelConfig.from_dict(case.config.to_dict()), weights)
    assert str(info.value) == expected


def test_pickle_bearing_weights_file(weights_dir):
    from torch_impl.weights import load_weights_npz

    path = weights_dir / "evil.npz"
    np.savez(path, w=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match=f"weights file {path} holds pickled objects, which are refused"):
        parity.run_case(_bad_weights_case("evil"))
    with pytest.raises(ValueError, match=f"weights file {path} holds pickled objects, which are refused"):
        load_weights_npz(path)


# ---- non-finite values -----------------------------------------------------------------------
def _poisoned_prepare(monkeypatch, key, index_values):
    real = case_registry.prepare

    def prepare(case):
        config, weights, inputs = real(case)
        inputs = dict(inputs)
        arr = np.array(inputs[key], copy=True)
        for idx, value in index_values:
            arr[idx] = value
        inputs[key] = arr
        return config, weights, inputs

    monkeypatch.setattr(case_registry, "prepare", prepare)


def test_nan_and_inf_in_the_inputs_fail_with_counts(monkeypatch):
    _poisoned_prepare(monkeypatch, "diffraction",
                      [((0, 0, 10, 10), np.nan), ((0, 0, 10, 11), np.nan), ((1, 2, 5, 5), np.inf)])
    run = parity.run_case("n64_g2")
    res = run.result
    assert res.verdict == "fail" and res.first_divergent_stage == "input_scaled"
    st = res.stage("input_scaled")
    assert st.nonfinite["elements"] == 3
    assert ("Non-finite: reference 2 NaN, 1 Inf; candidate 2 NaN, 1 Inf (3 elements); NaN or Inf always fails"
            in st.message)
    assert "FAILED" in res.summary().splitlines()[0]


def test_nan_offsets_are_refused_by_the_port(monkeypatch):
    _poisoned_prepare(monkeypatch, "offsets", [((0, 1, 0), np.nan)])
    with pytest.raises(ValueError, match="offsets must be finite, got NaN or Inf"):
        parity.run_case("n64_g2")


def test_nan_in_one_backends_output_fails_with_counts(monkeypatch):
    from torch_impl import physics

    real = physics.far_field_amplitude

    def poisoned(psi):
        out = real(psi).clone()
        out[0, 0, 0, :2] = float("nan")
        out[1, 3, 7, 7] = float("-inf")
        return out

    monkeypatch.setattr(physics, "far_field_amplitude", poisoned)
    res = parity.run_case("n64_g2").result
    assert res.verdict == "fail" and res.first_divergent_stage == "far_field_amp"
    st = res.stage("far_field_amp")
    assert st.label == "root_cause"
    assert ("Non-finite: reference 0 NaN, 0 Inf; candidate 2 NaN, 1 Inf (3 elements); NaN or Inf always fails"
            in st.message)


def test_nan_in_a_capture_compared_directly(port_stages):
    tol = load_tolerances()
    cand = {k: np.array(v, copy=True) for k, v in port_stages.items()}
    cand["pred_amp"][0, 0, 0, 0] = np.nan
    res = compare(port_stages, cand, tol, case="direct")
    assert res.verdict == "fail" and res.first_divergent_stage == "pred_amp"
    assert "candidate 1 NaN, 0 Inf (1 elements)" in res.stage("pred_amp").message


# ---- stage sets ------------------------------------------------------------------------------
def test_mismatched_stage_sets(port_stages):
    tol = load_tolerances()
    cand = dict(port_stages)
    del cand["probe"]
    cand["bogus"] = np.zeros(3, np.float32)
    res = compare(port_stages, cand, tol, case="sets")
    assert res.verdict == "fail" and res.first_divergent_stage == "probe"
    assert "stage probe is missing from the candidate" in res.problems
    assert any(p.startswith("unknown stage 'bogus' in the candidate capture; known stages are") for p in res.problems)
    assert res.stage("probe").message.splitlines()[:2] == ["case sets, stage probe: FAILED (structural)",
                                                           "Stage probe is missing from the candidate"]
    short = {k: v for k, v in port_stages.items() if k != "latent"}
    with pytest.raises(ValueError, match=r"stage sets differ; only in oracle64: \['latent'\], only in ref32: \[\]"):
        noise_floor_tolerances(port_stages, short)


def test_shape_mismatch_is_a_structural_failure(port_stages):
    cand = dict(port_stages)
    cand["canvas"] = cand["canvas"][:, :-2, :-2]
    res = compare(port_stages, cand, load_tolerances(), case="shape")
    st = res.stage("canvas")
    assert st.verdict == "fail" and st.problem.startswith("shape mismatch: reference (4, 78, 78) vs candidate (4, 76, 76)")


# ---- names -----------------------------------------------------------------------------------
def test_unknown_case_in_run_case():
    with pytest.raises(KeyError) as info:
        parity.run_case("nope")
    msg = str(info.value).strip('"')
    assert msg.startswith("unknown case 'nope'; known cases are [") and "'n64_g2'" in msg and "'n64_g2_f64_smooth'" in msg


def test_unknown_fault_on_the_command_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "parity.selftest", "--fault", "nope", "--hub", str(tmp_path / "h")],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("parity.selftest: error: unknown fault 'nope'; known faults are: conv_kernel_transposed, ")
    from parity.faults import FAULT_NAMES

    assert all(name in lines[0] for name in FAULT_NAMES)
    assert not (tmp_path / "h").exists()


def test_unknown_case_on_the_command_line(tmp_path, capsys):
    assert selftest.main(["--case", "n64_g2", "nope", "--hub", str(tmp_path / "h")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("parity.selftest: error: unknown case 'nope'; known cases are: n64_g2, n64_g1, ")
    assert "\n" not in err and not (tmp_path / "h").exists()


def test_bad_seed_count(tmp_path, capsys):
    assert selftest.main(["--false-alarm-seeds", "-1", "--hub", str(tmp_path / "h")]) == 2
    assert capsys.readouterr().err.strip() == "parity.selftest: error: --false-alarm-seeds must be >= 0, got -1"


# ---- hub -------------------------------------------------------------------------------------
def test_existing_selftest_hub_is_refused_without_force(tmp_path, capsys):
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "selftest.json").write_text('{"old": true}')
    (hub / "notes.txt").write_text("mine")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in hub.iterdir()}
    assert selftest.main(["--hub", str(hub), "--fault", "fftshift_missing", "--case", "n64_g2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"parity.selftest: error: hub {hub} already holds selftest.json; choose another --hub "
                   f"or pass --force to replace it")
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in hub.iterdir()} == before


def test_hub_that_is_a_file(tmp_path, capsys):
    hub = tmp_path / "hub"
    hub.write_text("x")
    assert selftest.main(["--hub", str(hub)]) == 2
    assert capsys.readouterr().err.strip() == (f"parity.selftest: error: hub {hub} exists and is not a folder; "
                                               f"give a folder path for --hub")
    assert hub.read_text() == "x"


# ---- a backend that cannot be imported -------------------------------------------------------
@pytest.fixture
def no_torch(tmp_path):
    shim = tmp_path / "shim"
    (shim / "torch").mkdir(parents=True)
    (shim / "torch" / "__init__.py").write_text(f"raise ImportError({SHIM_MESSAGE!r})\n")
    return shim


def test_selftest_without_torch(tmp_path, no_torch):
    hub = tmp_path / "hub"
    proc = subprocess.run([sys.executable, "-m", "parity.selftest", "--hub", str(hub), "--case", "n64_g2",
                           "--fault", "fftshift_missing"],
                          cwd=ROOT, env=_env(no_torch), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.strip().splitlines() if l.startswith("parity.selftest")]
    assert len(lines) == 1 and lines[0].startswith("parity.selftest: error: a side cannot be used: side torch_impl")
    assert lines[0].endswith(f"side 'torch_impl' is not installed: {SHIM_MESSAGE}")
    assert not hub.exists()


def test_worker_without_torch(tmp_path, no_torch):
    from parity.jobs import Job
    from parity.pool import WorkerPool

    config, weights, inputs = case_registry.prepare(case_registry.get_case("n64_g2"))
    job_dir = tmp_path / "job"
    WorkerPool(tmp_path / "pool").write_job(Job(side="torch_impl", config=config, weights=weights, inputs=inputs,
                                                case="n64_g2"), job_dir)
    proc = subprocess.run([sys.executable, "-m", "parity.worker", str(job_dir)],
                          cwd=ROOT, env=_env(no_torch), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3  # the worker's code for "backend not installed"
    assert (job_dir / "error.txt").read_text() == f"side 'torch_impl' is not installed: {SHIM_MESSAGE}"
    assert not (job_dir / "capture.npz").exists()


def test_run_in_subprocess_without_torch(tmp_path, no_torch, monkeypatch):
    from parity.jobs import Job
    from parity.pool import WorkerPool
    from parity.sides import SideUnavailable

    config, weights, inputs = case_registry.prepare(case_registry.get_case("n64_g2"))
    monkeypatch.setenv("PYTHONPATH", _env(no_torch)["PYTHONPATH"])
    with WorkerPool(fresh=True) as pool, pytest.raises(SideUnavailable) as info:
        pool.run(Job(side="torch_impl", config=config, weights=weights, inputs=inputs, label="candidate n64_g2"))
    assert str(info.value) == (f"side torch_impl, job 'candidate n64_g2': side 'torch_impl' is not installed: "
                               f"{SHIM_MESSAGE}")
