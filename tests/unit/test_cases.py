"""The case registry: suites cover every configuration axis; prepare() is deterministic."""
import numpy as np
import pytest

from parity import cases
from reference_tf.config import ALLOWED_ACTIVATIONS


def _configs(suite):
    return [(c, c.config) for c in cases.suite(suite)]


def test_default_suite_covers_every_configuration_axis():
    cfgs = _configs("default")
    seen = lambda f: {getattr(cfg, f) for _, cfg in cfgs}  # noqa: E731
    assert {64, 128} <= seen("N")
    assert {1, 2} <= seen("gridsize")
    for flag in ("object_big", "probe_big", "pad_object", "probe_mask"):
        assert seen(flag) == {True, False}, flag
    assert seen("amp_activation") == set(ALLOWED_ACTIVATIONS)
    assert any(cfg.gaussian_smoothing_sigma > 0 for _, cfg in cfgs)
    kinds = {cases.fixture_store.get_spec(c.fixture).offsets_kind for c, _ in cfgs}
    assert {"integer", "subpixel", "biased"} <= kinds
    assert any(c.weights.startswith("file:") for c, _ in cfgs), "a trained weight set is used"


def test_nightly_suite_adds_the_expensive_axes():
    nightly = _configs("nightly")
    default_names = {c.name for c in cases.suite("default")}
    assert default_names < {c.name for c, _ in nightly}
    assert any(cfg.N == 256 for _, cfg in nightly)
    assert any(cfg.gridsize == 3 for _, cfg in nightly)
    assert any(c.dtype == "float64" for c, _ in nightly)
    batch = {c.name: cases.fixture_store.get_spec(c.fixture).B * cfg.C for c, cfg in nightly}
    assert max(batch.values()) >= 64


def test_biased_fixture_has_nonzero_batch_mean_offsets():
    _, _, inputs = cases.prepare(cases.get_case("n64_g2_biased_softplus"))
    assert np.abs(inputs["offsets"].mean(axis=(0, 1))).max() > 0.5
    _, _, inputs = cases.prepare(cases.get_case("n64_g2"))
    assert np.abs(inputs["offsets"].mean(axis=(0, 1))).max() == 0
    assert np.all(inputs["offsets"] == np.round(inputs["offsets"]))
    _, _, inputs = cases.prepare(cases.get_case("n64_g2_sub_swish"))
    assert np.any(inputs["offsets"] != np.round(inputs["offsets"]))


def test_prepare_is_deterministic_and_scaled():
    a = cases.prepare(cases.get_case("n64_g1"))
    b = cases.prepare(cases.get_case("n64_g1"))
    for k in a[2]:
        np.testing.assert_array_equal(a[2][k], b[2][k])
    cfg = cases.get_case("n64_g1").config
    x = cases.fixture_store.load_fixture("n64_g1_int").X.astype(np.float64)
    np.testing.assert_array_equal(a[2]["diffraction"], cfg.scale * x)
    # X is normalised to mean energy (N/2)^2 per pattern (forward-model.md §2)
    assert np.mean(np.sum(x**2, axis=(-2, -1))) == pytest.approx((cfg.N / 2) ** 2, rel=1e-5)


def test_input_seed_variant_changes_inputs_only():
    base = cases.get_case("n64_g2_sub_swish")
    v = base.with_(input_seed=123)
    assert v.name == "n64_g2_sub_swish@input_seed=123"
    a, b = cases.prepare(base)[2], cases.prepare(v)[2]
    assert not np.array_equal(a["diffraction"], b["diffraction"])
    assert cases.prepare(v)[0] == cases.prepare(base)[0]


def test_unknown_names():
    with pytest.raises(KeyError, match="unknown case 'nope'; known cases are"):
        cases.get_case("nope")
    with pytest.raises(ValueError, match="unknown suite 'weekly'"):
        cases.suite("weekly")
