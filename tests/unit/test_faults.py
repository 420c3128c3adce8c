"""parity.faults: the catalogue, reversibility, and that each fault changes the port where declared.

Port only (no TensorFlow): every fault runs on its cheapest applicable default case and is
compared bitwise with the clean port; the first stage that changes must be the fault's
expected stage, and a fault declared ``network=False`` must leave the network stages bitwise
unchanged (the self-test reuses the clean network stages for those faults).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from parity import cases as case_registry
from parity import faults
from parity.stages import STAGE_NAMES

torch = pytest.importorskip("torch")

REQUIRED = (
    "conv_kernel_transposed", "same_padding_off_by_one", "upsample_bilinear", "amp_activation_silu",
    "phase_missing_pi", "complex_a_plus_i_phi", "merge_offset_sign", "merge_no_epsilon", "merge_comask_numerator",
    "merge_no_recentre", "canvas_no_jitter_buffer", "translate_align_corners", "channel_order_column_major",
    "probe_norm_ones_mask", "probe_double_scale", "probe_mask_missing", "smoothing_zero_padding",
    "fftshift_missing", "fft_norm_n_squared", "intensity_scale_multiplied", "decoder_outer_slice_k",
    "float32_far_field",
)
# Cheapest default cases first (n = 1 or small batches); the rest follow in suite order.
CHEAP_FIRST = ("n64_g2", "n64_g1_f64_mask", "n64_g2_f64_smooth", "n64_g2_sub_swish", "n64_g2_biased_softplus",
               "n64_g2_mask_smooth")
DEFAULT = case_registry.suite("default")


def _cheapest(fault):
    pool = [c for c in DEFAULT if fault.applicable(c)]
    if fault.must_show:
        pool = [c for c in pool if c.name in fault.must_show] or pool
    rank = {n: i for i, n in enumerate(CHEAP_FIRST)}
    return min(pool, key=lambda c: rank.get(c.name, len(rank)))


# ---- catalogue -----------------------------------------------------------------------------
def test_catalogue_holds_the_required_faults():
    assert set(REQUIRED) <= set(faults.FAULT_NAMES)
    assert len(set(faults.FAULT_NAMES)) == len(faults.FAULTS)


@pytest.mark.parametrize("fault", faults.FAULTS, ids=lambda f: f.name)
def test_fault_is_documented_and_applicable_somewhere(fault):
    assert fault.description and "\n" not in fault.description
    assert fault.expected_stage in STAGE_NAMES
    assert fault.applies.text
    applicable = [c.name for c in DEFAULT if fault.applicable(c)]
    assert applicable, f"no default case exposes {fault.name}: a gap in the suite"
    assert set(fault.must_show) <= set(applicable)
    d = fault.to_dict()
    assert d["name"] == fault.name and d["expected_stage"] == fault.expected_stage


def test_unknown_fault_names_every_known_fault():
    with pytest.raises(faults.UnknownFault) as info:
        faults.get_fault("nope")
    msg = str(info.value)
    assert msg.startswith("unknown fault 'nope'; known faults are: ")
    assert all(name in msg for name in faults.FAULT_NAMES)
    assert "\n" not in msg
    with pytest.raises(KeyError, match="unknown fault 'nope'"):
        with faults.inject("nope"):
            pass  # pragma: no cover


def test_bad_expected_stage_is_refused():
    with pytest.raises(ValueError, match="unknown expected stage 'nowhere'"):
        faults.Fault("x", "d", "nowhere", lambda: [])


def test_applicability_predicates():
    get = faults.get_fault
    names = lambda f: {c.name for c in DEFAULT if get(f).applicable(c)}  # noqa: E731
    assert names("merge_no_recentre") == {"n64_g2_biased_softplus"}
    assert names("smoothing_zero_padding") == {"n64_g2_f64_smooth"}
    assert names("float32_far_field") == {c.name for c in DEFAULT if c.dtype == "float64"}
    assert "n64_g2_sub_swish" not in names("amp_activation_silu")
    assert not any(case_registry.CASES[n].config.gridsize == 1 for n in names("merge_offset_sign"))
    combined = get("merge_offset_sign").applies & get("float32_far_field").applies
    assert "and" in combined.text and not any(combined(c) for c in DEFAULT if c.dtype == "float32")


# ---- reversibility -------------------------------------------------------------------------
def _diff(before, after):
    keys = set(before) | set(after)
    return sorted(k for k in keys if before.get(k, None) is not after.get(k, None))


@pytest.mark.parametrize("fault", faults.FAULTS, ids=lambda f: f.name)
def test_fault_is_reversible(fault):
    before = faults.snapshot()
    with faults.inject(fault.name) as f:
        assert f is fault
        assert _diff(before, faults.snapshot()), "the fault patched nothing"
    assert _diff(before, faults.snapshot()) == []
    with pytest.raises(RuntimeError, match="boom"):
        with faults.inject(fault):
            raise RuntimeError("boom")
    assert _diff(before, faults.snapshot()) == []


def test_faults_nest_and_unwind():
    before = faults.snapshot()
    with faults.inject("merge_offset_sign"), faults.inject("channel_order_column_major"):
        pass
    assert _diff(before, faults.snapshot()) == []


def test_half_applied_fault_is_restored():
    from torch_impl import physics

    original = physics.merge_patches
    broken = dataclasses.replace(
        faults.get_fault("merge_no_epsilon"), name="broken",
        patches=lambda: [(physics, "merge_patches", None), (physics, "no_such_function", None)])
    before = faults.snapshot()
    with pytest.raises(AttributeError, match="no attribute 'no_such_function'"):
        with faults.inject(broken):
            pass  # pragma: no cover
    assert physics.merge_patches is original
    assert _diff(before, faults.snapshot()) == []


# ---- each fault changes the port where it says -------------------------------------------
_CLEAN = {}


def _port(case):
    """(adapter, clean model, inputs, clean stages) of a case, cached."""
    if case.name not in _CLEAN:
        from parity.sides import get_side

        adapter = get_side("torch_impl")
        config, weights, inputs = case_registry.prepare(case)
        model = adapter.build(config, weights, case.dtype, "cpu")
        _CLEAN[case.name] = (adapter, model, config, weights, inputs, adapter.forward(model, inputs))
    return _CLEAN[case.name]


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("fault", faults.FAULTS, ids=lambda f: f.name)
def test_fault_changes_the_port_first_at_its_expected_stage(fault):
    case = _cheapest(fault)
    adapter, model, config, weights, inputs, clean = _port(case)
    with faults.inject(fault):
        if fault.network:
            model = adapter.build(config, weights, case.dtype, "cpu")
        faulty = adapter.forward(model, inputs)
    changed = [s for s in STAGE_NAMES if not _same(clean[s], faulty[s])]
    assert changed, f"{fault.name} does not change the port on {case.name}"
    assert changed[0] == fault.expected_stage, (fault.name, case.name, changed)
    if not fault.network:
        assert not set(changed) & set(faults.NETWORK_STAGES)
    # and the clean model is clean again
    again = adapter.forward(_port(case)[1], inputs)
    assert all(_same(clean[s], again[s]) for s in STAGE_NAMES)


def test_canvas_fault_keeps_the_port_self_consistent():
    case = case_registry.get_case("n64_g2")
    adapter, model, _, _, inputs, clean = _port(case)
    with faults.inject("canvas_no_jitter_buffer"):
        faulty = adapter.forward(model, inputs)
    cfg = case.config
    assert faulty["canvas"].shape[-1] == cfg.N + (cfg.gridsize - 1) * cfg.offset
    assert clean["canvas"].shape[-1] == cfg.M
    assert faulty["trimmed_object"].shape == clean["trimmed_object"].shape


def test_inject_all_checks_every_name_first_and_restores():
    before = faults.snapshot()
    with pytest.raises(faults.UnknownFault):
        with faults.inject_all(["fftshift_missing", "nope"]):
            pass  # pragma: no cover
    assert _diff(before, faults.snapshot()) == []
    with faults.inject_all(["fftshift_missing", "merge_offset_sign"]) as applied:
        assert [f.name for f in applied] == ["fftshift_missing", "merge_offset_sign"]
        assert _diff(before, faults.snapshot())
    assert _diff(before, faults.snapshot()) == []


def test_job_faults_run_through_execute():
    from parity.jobs import Job, execute

    case = case_registry.get_case("n64_g2")
    adapter, model, config, weights, inputs, clean = _port(case)
    job = Job(side="torch_impl", config=config, weights=weights, inputs=inputs, case=case.name,
              faults=("phase_missing_pi",))  # build-time: the job builds inside the block
    out = execute(job).capture
    assert out.meta["faults"] == ["phase_missing_pi"]
    changed = [s for s in STAGE_NAMES if not _same(clean[s], out.stages[s])]
    assert changed[0] == "phase"
