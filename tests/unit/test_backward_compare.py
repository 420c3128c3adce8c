"""parity.backward: gradients of two runs compared per adjoint stage and per weight (NumPy only),
and the tolerance table's backward layers."""
from types import SimpleNamespace

import numpy as np
import pytest

from parity import gradients as G
from parity.backward import adjoint_stage_list, compare_backward, weight_tolerances
from parity.capture import Capture
from parity.stages import BUILTIN
from parity.tolerances import ToleranceTable, load_tolerances

GRAPH = tuple((s.name, tuple(s.inputs)) for s in BUILTIN)
SHAPES = {"input_scaled": (1, 1, 4, 4), "latent": (1, 2, 2, 2), "amp": (1, 1, 4, 4), "phase": (1, 1, 4, 4),
          "object_patches": (1, 1, 4, 4), "canvas": (1, 6, 6), "trimmed_object": (1, 4, 4),
          "extracted_patches": (1, 1, 4, 4), "probe": (4, 4), "exit_wave": (1, 1, 4, 4), "far_field_amp": (1, 1, 4, 4),
          "pred_amp": (1, 1, 4, 4), "pred_intensity": (1, 1, 4, 4), "loss_nll": (), "loss_mae": ()}
WEIGHTS = {"enc.conv1.kernel": (3, 3, 1, 2), "enc.conv1.bias": (2,)}


def _grads(seed=0):
    rng = np.random.default_rng(seed)
    flat = {}
    for loss in G.LOSSES:
        for name in G.adjoint_order(GRAPH, loss):
            shape = SHAPES[name]
            v = rng.normal(size=shape) + (1j * rng.normal(size=shape) if BUILTIN.get(name).complex else 0)
            flat[G.key(loss, "stage", name)] = np.asarray(v if name != loss else 1.0)
        for name, shape in WEIGHTS.items():
            flat[G.key(loss, "weight", name)] = rng.normal(size=shape)
    return flat


def _run(flat, side="s"):
    return SimpleNamespace(gradients=flat, capture=Capture(stages={}, meta={"side": side}))


def _with_local(cand, ref):
    """The candidate's local backward = the reference's values (a clean backward everywhere)."""
    out = dict(cand)
    for k, v in ref.items():
        loss, kind, name = k.split("/", 2)
        if kind == "stage" and name != loss:
            out[G.key(loss, "local", name)] = v
        if kind == "weight":
            out[G.key(loss, "local_weight", name)] = v
    return out


def test_backward_identical_gradients_pass_in_reverse_pipeline_order():
    ref = _grads()
    b = compare_backward(_run(ref), _run(_with_local(ref, ref)), case="c", dtype="float64")
    assert b.verdict == "pass" and bool(b) and set(b.losses) == set(G.LOSSES)
    names = [s.name for s in b.losses["loss_nll"].adjoint.stages]
    assert names[:3] == ["grad:loss_nll", "grad:pred_intensity", "grad:pred_amp"] and names[-1] == "grad:input_scaled"
    assert [s.name for s in b.losses["loss_nll"].weights.stages] == list(WEIGHTS)


def test_backward_first_divergent_stage_and_root_cause_from_the_local_backward():
    ref = _grads()
    cand = dict(ref)
    for name in ("canvas", "object_patches", "amp", "phase", "latent", "input_scaled"):  # all upstream of the bug
        cand[G.key("loss_nll", "stage", name)] = ref[G.key("loss_nll", "stage", name)] * 1.01
    cand = _with_local(cand, ref)
    # the backward of extracted_patches (reading canvas) is wrong: its local cotangent of canvas is off
    cand[G.key("loss_nll", "local", "canvas")] = ref[G.key("loss_nll", "stage", "canvas")] * 1.01
    b = compare_backward(_run(ref), _run(cand), case="c", dtype="float64")
    lb = b.losses["loss_nll"]
    assert b.verdict == "fail" and lb.verdict == "fail" and b.losses["loss_mae"].verdict == "pass"
    assert lb.adjoint.first_divergent_stage == "grad:canvas"
    assert lb.adjoint.root_cause_stage == "grad:canvas"
    assert lb.adjoint.stage("grad:latent").label == "propagated"
    assert "loss_nll FAIL at grad:canvas" in b.summary()


def test_backward_nan_gradient_fails_with_counts_and_the_first_stage():
    ref = _grads()
    cand = dict(ref)
    for name in ("exit_wave", "extracted_patches", "canvas"):
        a = ref[G.key("loss_mae", "stage", name)].copy()
        a.flat[0] = np.nan
        cand[G.key("loss_mae", "stage", name)] = a
    b = compare_backward(_run(ref), _run(cand), case="c", dtype="float32")
    lb = b.losses["loss_mae"]
    assert lb.verdict == "fail"
    assert lb.nonfinite["candidate"] == {"exit_wave": 1, "extracted_patches": 1, "canvas": 1}
    assert lb.to_dict()["first_nonfinite_stage"]["candidate"] == "exit_wave"
    assert lb.adjoint.first_divergent_stage == "grad:exit_wave"
    assert "NaN/Inf in the candidate's gradients: 3 elements, first at grad:exit_wave" in b.summary()


def test_backward_side_without_gradients_is_not_available_with_the_reason():
    ref = _grads()
    cand = SimpleNamespace(gradients=None, capture=Capture(stages={}, meta={
        "side": "nograd", "gradients": {"unavailable": "this test side has no autograd"}}))
    b = compare_backward(_run(ref), cand, case="c")
    assert b.verdict == "not_available" and not b.available and not bool(b)
    assert "nograd" in b.reason and "no autograd" in b.reason
    assert "backward not available" in b.summary()
    assert b.to_dict()["verdict"] == "not_available"


def test_backward_noise_floor_judges_against_the_float64_oracle():
    oracle = _grads(1)
    ref32 = {k: np.asarray(v) * (1 + 1e-6) for k, v in oracle.items()}
    good = {k: np.asarray(v) * (1 + 2e-6) for k, v in oracle.items()}
    bad = dict(good)
    bad[G.key("loss_nll", "stage", "probe")] = oracle[G.key("loss_nll", "stage", "probe")] * (1 + 1e-4)
    ok = compare_backward(_run(oracle), _run(good), noise_floor=(_run(oracle), _run(ref32), 3.0), case="c")
    assert ok.verdict == "pass" and ok.tolerance_mode == "noise_floor"
    no = compare_backward(_run(oracle), _run(bad), noise_floor=(_run(oracle), _run(ref32), 3.0), case="c")
    assert no.losses["loss_nll"].adjoint.first_divergent_stage == "grad:probe"


def test_backward_adjoint_stage_list_names_consumers_as_inputs():
    asl = adjoint_stage_list(BUILTIN, "loss_nll")
    assert asl.names[0] == "grad:loss_nll"
    assert asl.get("grad:latent").inputs == ("grad:amp", "grad:phase")
    assert asl.get("grad:canvas").complex and asl.get("grad:canvas").shape == ("B", "M", "M")


def test_backward_weight_tolerance_takes_the_layer_scale():
    table = load_tolerances()
    ref = {"enc.conv1.kernel": np.full((3, 3, 1, 2), 100.0), "enc.conv1.bias": np.array([1e-3, -1e-3]),
           "dec.conv1.bias": np.array([2.0])}
    tol = weight_tolerances(table, ref, "float32", "cpu")
    base = table.for_stage("grad:weights", "float32")
    assert tol["enc.conv1.bias"].atol == pytest.approx(base.atol + base.atol_scaled * 100.0)
    assert tol["dec.conv1.bias"].atol == pytest.approx(base.atol + base.atol_scaled * 2.0)
    assert tol["enc.conv1.bias"].atol_scaled == 0


def _table(extra):
    data = {"defaults": {"float32": {"rtol": 1e-5, "atol": 0.0, "atol_scaled": 1e-5},
                         "float64": {"rtol": 1e-10, "atol": 0.0, "atol_scaled": 1e-10}}}
    data.update(extra)
    return ToleranceTable.from_dict(data, path="t.toml")


def test_backward_tolerance_layers_resolve_in_order():
    t = _table({"backward": {"float32": {"atol_scaled": 1e-3, "reason": "gradients"},
                             "loss_mae": {"float32": {"atol_scaled": 3e-2, "reason": "sign flips"}}},
                "stages": {"grad:pred_amp": {"float32": {"max_mismatch_fraction": 1e-3, "reason": "flips"}}}})
    assert t.for_stage("grad:canvas", "float32").atol_scaled == 1e-3
    assert t.for_stage("grad:canvas", "float32", loss="loss_mae").atol_scaled == 3e-2
    pa = t.for_stage("grad:pred_amp", "float32", loss="loss_mae")
    assert pa.atol_scaled == 3e-2 and pa.max_mismatch_fraction == 1e-3
    assert t.for_stage("canvas", "float32").atol_scaled == 1e-5  # forward stages never see the backward layers
    assert t.for_stage("grad:weights", "float64").atol_scaled == 1e-10


@pytest.mark.parametrize("extra, match", [
    ({"backward": {"float16": {"atol": 1.0, "reason": "x"}}}, r"\[backward.float16\].*neither a dtype"),
    ({"backward": {"float32": {"atol": 1.0}}}, r"\[backward.float32\]: an override needs a reason"),
    ({"backward": {"loss_mae": {"float32": {"atol": 1.0}}}}, r"\[backward.loss_mae.float32\]: an override needs"),
    ({"stages": {"grad:bogus": {"float32": {"atol": 1.0, "reason": "x"}}}}, r"unknown stage 'grad:bogus'"),
])
def test_backward_tolerance_table_errors_name_the_table(extra, match):
    with pytest.raises(ValueError, match=match):
        _table(extra)


def test_backward_default_table_has_reviewed_gradient_entries():
    t = load_tolerances()
    for dtype in ("float32", "float64"):
        tol = t.for_stage("grad:exit_wave", dtype)
        assert "backward." in tol.source and tol.reason
