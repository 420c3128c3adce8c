"""Backward-only faults (parity.faults.backward) and the gradient probe (parity.faults.gradprobe).

Port only (no TensorFlow). Each backward-only fault, on every default case where it applies:
every forward stage is bit for bit the clean port's (so no forward comparison can see it),
and the gradient of each of its losses first goes wrong, in reverse pipeline order, at its
expected weight or stage, by more than MARGIN times the clean port's own float32-vs-float64
gradient difference there; everything before that point is bit for bit the clean gradient.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from parity import cases as case_registry
from parity import faults
from parity.faults import gradprobe
from parity.stages import STAGE_NAMES

torch = pytest.importorskip("torch")

DEFAULT = case_registry.suite("default")
BACKWARD = faults.BACKWARD_FAULTS
PAIRS = [(f, c) for f in BACKWARD for c in DEFAULT if f.applicable(c)]
_CLEAN = {}


def _clean(case) -> gradprobe.CleanCase:
    if case.name not in _CLEAN:
        _CLEAN[case.name] = gradprobe.CleanCase(case)
    return _CLEAN[case.name]


def _diff(before, after):
    keys = set(before) | set(after)
    return sorted(k for k in keys if before.get(k, None) is not after.get(k, None))


# ---- catalogue -----------------------------------------------------------------------------
def test_backward_catalogue_has_at_least_six_backward_only_faults():
    assert len(BACKWARD) >= 6
    assert all(f.kind == "backward" and f.backward_only for f in BACKWARD)
    assert not any(f.backward_only for f in faults.FAULTS)
    # the forward self-test's catalogue does not hold them; the one namespace does
    assert not set(faults.BACKWARD_FAULT_NAMES) & set(faults.FAULT_NAMES)
    assert all(faults.get_fault(f.name) is f for f in BACKWARD)
    assert set(faults.ALL_FAULTS) == set(faults.FAULTS) | set(BACKWARD)


@pytest.mark.parametrize("fault", BACKWARD, ids=lambda f: f.name)
def test_backward_fault_is_documented_and_applicable_somewhere(fault):
    assert fault.description and "\n" not in fault.description
    assert fault.expected_stage in STAGE_NAMES and fault.notes
    assert fault.losses and set(fault.losses) <= set(gradprobe.LOSSES)
    applicable = [c for c in DEFAULT if fault.applicable(c)]
    assert applicable, f"no default case exposes {fault.name}"
    if fault.expected_weight:
        from torch_impl.weights import weight_spec

        assert all(fault.expected_weight in weight_spec(c.config) for c in applicable)
    d = fault.to_dict()
    assert d["kind"] == "backward" and d["expected_weight"] == fault.expected_weight
    assert d["losses"] == list(fault.losses)


def test_backward_fault_record_is_validated():
    patches = lambda: []  # noqa: E731
    with pytest.raises(ValueError, match="kind must be one of"):
        faults.Fault("x", "d", "amp", patches, kind="sideways")
    with pytest.raises(ValueError, match="expected_weight is for backward faults only"):
        faults.Fault("x", "d", "amp", patches, expected_weight="encoder.block0.conv1.kernel")
    with pytest.raises(ValueError, match="losses must be a non-empty subset"):
        faults.Fault("x", "d", "amp", patches, kind="backward", losses=("loss_l2",))
    assert faults.Fault("x", "d", "amp", patches).kind == "forward"


@pytest.mark.parametrize("fault", BACKWARD, ids=lambda f: f.name)
def test_backward_fault_is_reversible(fault):
    before = faults.snapshot()
    with faults.inject(fault.name):
        assert _diff(before, faults.snapshot()), "the fault patched nothing"
    assert _diff(before, faults.snapshot()) == []
    with pytest.raises(RuntimeError, match="boom"):
        with faults.inject(fault):
            raise RuntimeError("boom")
    assert _diff(before, faults.snapshot()) == []


def test_unknown_fault_message_names_backward_faults_too():
    with pytest.raises(faults.UnknownFault) as info:
        faults.get_fault("nope")
    assert all(name in str(info.value) for name in faults.BACKWARD_FAULT_NAMES)


# ---- the probe -----------------------------------------------------------------------------
def test_backward_probe_forward_is_the_ports_forward_and_leaves_no_gradient_state():
    clean = _clean(case_registry.get_case("n64_g2"))
    g = clean.gradients("loss_nll")
    assert set(g.stages) == set(STAGE_NAMES) == set(clean.forward)
    assert all(gradprobe.same(g.stages[s], clean.forward[s]) for s in STAGE_NAMES)
    params = list(clean.model.generator.parameters())
    assert not any(p.requires_grad or p.grad is not None for p in params)
    assert set(g.weights) == set(clean.weights)
    assert all(g.weights[k].shape == np.shape(clean.weights[k]) for k in clean.weights)  # neutral layout
    assert np.iscomplexobj(g.adjoints["exit_wave"]) and not np.iscomplexobj(g.adjoints["amp"])
    # a stage the loss does not depend on has a zero gradient
    assert not np.any(g.adjoints["trimmed_object"]) and not np.any(g.adjoints["loss_mae"])
    assert g.adjoints["loss_nll"] == 1.0
    again = gradprobe.gradients(clean.model, clean.inputs, "loss_nll")  # deterministic, alone or with loss_mae
    assert all(gradprobe.same(g.get(e), again.get(e)) for e in gradprobe.adjoint_order(g.weights))
    with pytest.raises(ValueError, match=r"losses must be a non-empty subset of \['loss_nll', 'loss_mae'\]"):
        gradprobe.gradients(clean.model, clean.inputs, "loss_l2")


def test_backward_probe_loss_gradients_are_the_hand_computed_ones():
    clean = _clean(case_registry.get_case("n64_g1_f64_mask"))
    xs = clean.inputs["diffraction"]
    nll, mae = clean.gradients("loss_nll"), clean.gradients("loss_mae")
    pred_i, pred_a = nll.stages["pred_intensity"], mae.stages["pred_amp"]
    np.testing.assert_allclose(nll.adjoints["pred_intensity"], (1 - xs ** 2 / pred_i) / xs.size, rtol=1e-12)
    np.testing.assert_allclose(nll.adjoints["pred_amp"], 2 * pred_a * (1 - xs ** 2 / pred_i) / xs.size, rtol=1e-9)
    np.testing.assert_array_equal(mae.adjoints["pred_amp"], np.sign(pred_a - xs) / xs.size)
    # far_field_amp -> pred_amp is the scale s; the complex exit wave's gradient is torch's dL/dRe + i dL/dIm
    s = clean.case.config.scale
    np.testing.assert_allclose(nll.adjoints["far_field_amp"], s * nll.adjoints["pred_amp"], rtol=1e-12)


def test_backward_probe_weight_gradient_matches_a_finite_difference():
    clean = _clean(case_registry.get_case("n64_g1_f64_mask"))
    name = "decoder_phase.last.conv1.bias"
    g = clean.gradients("loss_nll").weights[name][0]
    h = 1e-4  # the loss is ~3.5e6: a smaller step loses the difference to round-off
    losses = []
    for sign in (1, -1):
        w = {k: np.array(v, dtype=np.float64) for k, v in clean.weights.items()}
        w[name][0] += sign * h
        model = clean.adapter.build(clean.config, w, "float64", "cpu")
        losses.append(float(clean.adapter.forward(model, clean.inputs)["loss_nll"]))
    assert g != 0 and math.isclose((losses[0] - losses[1]) / (2 * h), g, rel_tol=1e-5)


def test_adjoint_order_is_reverse_pipeline_with_each_stages_weights_after_it():
    from torch_impl.weights import weight_spec

    spec = list(weight_spec(case_registry.get_case("n64_g2_probe_big_relu").config))
    order = gradprobe.adjoint_order(spec)
    assert [n for k, n in order if k == "stage"] == list(reversed(STAGE_NAMES))
    assert sorted(n for k, n in order if k == "weight") == sorted(spec)
    at = {e: i for i, e in enumerate(order)}
    assert at[("stage", "phase")] < at[("weight", "decoder_phase.last.conv2.kernel")] < at[("stage", "amp")]
    assert at[("weight", "decoder_amp.last.conv2.kernel")] < at[("weight", "decoder_amp.last.conv2.bias")] \
        < at[("weight", "decoder_amp.last.up.conv2.kernel")] < at[("weight", "decoder_amp.block0.conv1.kernel")]
    assert at[("stage", "latent")] < at[("weight", "encoder.block0.conv1.kernel")] < at[("stage", "input_scaled")]


def test_relative_errors_never_pass_nan_or_inf():
    a = np.array([1.0, 2.0])
    assert gradprobe.relative_errors(a, a) == (0.0, 0.0)
    assert gradprobe.relative_errors(np.array([1.0, np.nan]), a) == (math.inf, math.inf)
    assert gradprobe.relative_errors(a, np.array([np.inf, 1.0])) == (math.inf, math.inf)
    assert gradprobe.relative_errors(a, np.zeros(2)) == (math.inf, math.inf)
    mx, l2 = gradprobe.relative_errors(np.array([1.0, 2.5]), a)
    assert mx == pytest.approx(0.25) and l2 == pytest.approx(0.5 / math.sqrt(5))
    with pytest.raises(ValueError, match="shapes differ"):
        gradprobe.relative_errors(a, np.zeros(3))
    finding = gradprobe.Finding("f", "c", "float32", "loss_nll", "amp", "amp", True, 0.0, "amp", "amp",
                                (math.inf, math.inf), (1e-6, 1e-6))
    assert finding.caught and finding.to_dict()["caught"]
    assert not dataclasses.replace(finding, forward_exact=False).caught
    assert not dataclasses.replace(finding, first="phase").caught
    assert not dataclasses.replace(finding, error=(5e-6, 5e-6)).caught


def test_hand_written_far_field_backward_without_the_mistakes_is_autograds():
    """The far-field faults' custom Function is the correct backward but for the one mistake."""
    from parity.faults.backward import far_field_function
    from torch_impl import physics

    psi = torch.randn(2, 3, 16, 16, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    weight = torch.rand(2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grads = {}
    for name, fn in (("autograd", physics.far_field_amplitude),
                     ("correct", far_field_function()(physics, physics.far_field_amplitude)),
                     ("inverse", far_field_function(adjoint_scale=False)(physics, physics.far_field_amplitude)),
                     ("conjugate", far_field_function(conjugate=True)(physics, physics.far_field_amplitude))):
        x = psi.clone().requires_grad_(True)
        out = fn(x)
        assert torch.equal(out, physics.far_field_amplitude(psi))  # the forward is exact
        (grads[name],) = torch.autograd.grad((out * weight).sum(), x)
    torch.testing.assert_close(grads["correct"], grads["autograd"], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grads["inverse"] * 16 ** 2, grads["autograd"], rtol=1e-12, atol=1e-14)
    assert not torch.allclose(grads["conjugate"], grads["autograd"])


# ---- each fault: forward exact, gradient first wrong where declared --------------------------
@pytest.mark.parametrize("fault,case", PAIRS, ids=[f"{f.name}-{c.name}" for f, c in PAIRS])
def test_backward_fault_passes_forward_and_is_caught_at_its_expected_place(fault, case):
    clean = _clean(case)
    before = faults.snapshot()
    findings = gradprobe.check_fault(fault, clean)
    assert _diff(before, faults.snapshot()) == [], "something stayed patched"
    assert [f.loss for f in findings] == list(fault.losses)
    for f in findings:
        assert f.forward_exact and f.forward_max_diff == 0.0, f.to_dict()
        assert f.first == (fault.expected_weight or fault.expected_stage), f.to_dict()
        assert f.first_stage == fault.expected_stage, f.to_dict()
        assert f.ratio > gradprobe.MARGIN, f.to_dict()
        assert f.caught
    # the clean model gives the clean gradients again
    again = gradprobe.gradients(clean.model, clean.inputs, fault.losses[0])
    ref = clean.gradients(fault.losses[0])
    assert all(gradprobe.same(ref.get(e), again.get(e)) for e in gradprobe.adjoint_order(ref.weights))


# ---- the forward self-test's comparison cannot see them -------------------------------------
FORWARD_CASES = ("n64_g2", "n64_g2_probe_big_relu")  # between them, every backward fault applies


def test_backward_faults_pass_the_forward_comparison_against_the_reference():
    pytest.importorskip("tensorflow")
    from parity.selftest import run_selftest

    cases = [case_registry.get_case(n) for n in FORWARD_CASES]
    assert all(any(f.applicable(c) for c in cases) for f in BACKWARD)
    doc = run_selftest(faults=list(faults.BACKWARD_FAULT_NAMES), cases=list(FORWARD_CASES), false_alarm_seeds=0,
                       catalogue=BACKWARD, isolation="inprocess")
    assert [c["verdict"] for c in doc["clean"]] == ["pass", "pass"]
    for row in doc["faults"]:
        fault = faults.get_fault(row["name"])
        assert row["cases_run"] == [c.name for c in cases if fault.applicable(c)], row["name"]
        assert not row["detected"] and row["caught_by"] == [], row["name"]  # the forward suite cannot see it
        assert all(r["verdict"] == "pass" and r["first_divergent_stage"] is None for r in row["runs"]), row["name"]
