"""reference_tf: configs, stage shapes, dtypes, weights and bad input."""
import itertools

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from parity import stages  # noqa: E402
from reference_tf import ForwardModel, ModelConfig  # noqa: E402
from reference_tf.model import STAGE_TABLE  # noqa: E402
from reference_tf.weights import (  # noqa: E402
    check_weights,
    init_weights,
    load_weights_npz,
    parameter_count,
    save_weights_npz,
)

RNG = np.random.default_rng(7)


def _inputs(cfg, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    d = np.abs(rng.normal(size=(batch, cfg.N, cfg.N, cfg.C))) * cfg.scale
    o = rng.uniform(-3, 3, size=(batch, cfg.C, 2))
    p = np.exp(1j * rng.normal(size=(cfg.N, cfg.N))) * (1 + rng.uniform(size=(cfg.N, cfg.N)))
    return d, o, p


def _native_shape(canonical):
    if len(canonical) == 4:
        b, c, h, w = canonical
        return (b, h, w, c)
    if len(canonical) == 3:
        return canonical + (1,)
    return canonical


def test_stage_table_mirrors_parity_stages():
    assert [n for n, _ in STAGE_TABLE] == list(stages.STAGE_NAMES)
    assert {n: i for n, i in STAGE_TABLE} == {s.name: s.inputs for s in stages.STAGES}


@pytest.mark.parametrize(
    "N,g,probe_big,expected",
    [(64, 1, False, 2252026), (64, 1, True, 2331772), (64, 2, False, 2257000), (64, 2, True, 2340208),
     (128, 2, False, 4643880), (128, 2, True, 4667056)],
)
def test_parameter_counts_match_forward_model_doc(N, g, probe_big, expected):
    cfg = ModelConfig(N=N, gridsize=g, probe_big=probe_big)
    assert parameter_count(cfg) == expected
    if N == 64:
        model = ForwardModel(cfg, seed=0)
        assert model.generator.count_params() == expected


CONFIGS = [
    dict(),
    dict(gridsize=1),
    dict(gridsize=3),
    dict(probe_big=True),
    dict(pad_object=False),
    dict(object_big=False),
    dict(object_big=False, gridsize=1),
    dict(amp_activation="swish"),
    dict(amp_activation="softplus", probe_mask=True),
    dict(amp_activation="relu", gaussian_smoothing_sigma=0.6),
    dict(N=128, gridsize=1, probe_big=True),
    dict(n_filters_scale=1, offset=6, max_position_jitter=7),
]


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()) or "default")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_stage_has_the_declared_shape_and_dtype(kw, dtype):
    cfg = ModelConfig(**kw)
    model = ForwardModel(cfg, seed=3, dtype=dtype)
    taps = {}
    out = model.forward(*_inputs(cfg), taps=taps)
    assert list(taps) == list(stages.STAGE_NAMES)
    for name, shape in stages.expected_shapes(cfg, 2).items():
        t = taps[name]
        assert tuple(t.shape) == _native_shape(shape), name
        assert t.dtype.is_complex == stages.get(name).complex, name
        assert t.dtype.real_dtype.name == dtype, name
        assert np.all(np.isfinite(t.numpy())), name
    assert set(out) == {"trimmed_object", "pred_amp", "pred_intensity", "loss_nll", "loss_mae"}


@pytest.mark.slow
def test_n256_runs():
    cfg = ModelConfig(N=256, gridsize=1)
    taps = {}
    ForwardModel(cfg, seed=0).forward(*_inputs(cfg, batch=1), taps=taps)
    assert tuple(taps["latent"].shape) == (1, 8, 8, 256)
    assert tuple(taps["canvas"].shape) == (1, 266, 266, 1)


def test_pad_object_border_is_exactly_zero_without_probe_big():
    cfg = ModelConfig(gridsize=1)
    taps = {}
    ForwardModel(cfg, seed=1).forward(*_inputs(cfg), taps=taps)
    amp = taps["amp"].numpy()
    assert np.all(amp[:, :16] == 0) and np.all(amp[:, :, -16:] == 0)
    assert np.all(amp[:, 16:48, 16:48] > 0)


def test_float32_close_to_float64():
    cfg = ModelConfig()
    w = init_weights(cfg, 5)
    t32, t64 = {}, {}
    ForwardModel(cfg, w, dtype="float32").forward(*_inputs(cfg), taps=t32)
    ForwardModel(cfg, w, dtype="float64").forward(*_inputs(cfg), taps=t64)
    for name in stages.STAGE_NAMES:
        a, b = t32[name].numpy(), t64[name].numpy()
        rel = np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)
        assert rel < 1e-4, (name, rel)
        if name not in ("loss_nll", "loss_mae"):
            assert not np.array_equal(a.astype(b.dtype), b) or name in ("probe",), name


def test_two_models_with_different_configs_live_in_one_process():
    a_cfg, b_cfg = ModelConfig(N=64, gridsize=2), ModelConfig(N=64, gridsize=1, intensity_scale=3.0)
    a, b = ForwardModel(a_cfg, seed=1), ForwardModel(b_cfg, seed=2)
    ta1, tb, ta2 = {}, {}, {}
    a.forward(*_inputs(a_cfg), taps=ta1)
    b.forward(*_inputs(b_cfg), taps=tb)
    a.forward(*_inputs(a_cfg), taps=ta2)
    for name in stages.STAGE_NAMES:
        np.testing.assert_array_equal(ta1[name].numpy(), ta2[name].numpy())
    d, _, _ = _inputs(b_cfg)
    np.testing.assert_allclose(tb["input_scaled"].numpy(), d / 3.0, rtol=1e-6)


def test_run_twice_bitwise():
    cfg = ModelConfig(probe_big=True)
    m = ForwardModel(cfg, seed=4)
    t1, t2 = {}, {}
    m.forward(*_inputs(cfg), taps=t1)
    m.forward(*_inputs(cfg), taps=t2)
    for name in stages.STAGE_NAMES:
        np.testing.assert_array_equal(t1[name].numpy(), t2[name].numpy())


def test_weights_npz_round_trip_and_export(tmp_path):
    cfg = ModelConfig(probe_big=True)
    w = init_weights(cfg, 11)
    path = tmp_path / "w.npz"
    save_weights_npz(path, w)
    loaded = load_weights_npz(path)
    assert all(np.array_equal(loaded[k], w[k]) for k in w)
    model = ForwardModel(cfg, loaded, dtype="float64")
    exported = model.export_weights()
    assert set(exported) == set(w) and all(np.array_equal(exported[k], w[k]) for k in w)


def test_glorot_uniform_init_is_seeded_and_bounded():
    cfg = ModelConfig()
    a, b, c = init_weights(cfg, 1), init_weights(cfg, 1), init_weights(cfg, 2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["encoder.block0.conv1.kernel"], c["encoder.block0.conv1.kernel"])
    k = a["encoder.block1.conv2.kernel"]
    limit = np.sqrt(6 / (9 * 128 + 9 * 128))
    assert np.abs(k).max() <= limit and np.abs(k).max() > 0.9 * limit
    assert not np.any(a["encoder.block1.conv2.bias"])


def test_keras_weights_file_is_accepted(tmp_path):
    cfg = ModelConfig(gridsize=1)
    a = ForwardModel(cfg, seed=1)
    path = tmp_path / "trained.weights.h5"
    a.save_keras_weights(path)
    b = ForwardModel(cfg, seed=2)
    b.load_keras_weights(path)
    wa, wb = a.export_weights(), b.export_weights()
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    other = ForwardModel(ModelConfig(gridsize=2), seed=3)
    with pytest.raises(ValueError, match="does not fit"):
        other.load_keras_weights(path)
    with pytest.raises(ValueError, match="must end in"):
        other.load_keras_weights(tmp_path / "x.h5")


@pytest.mark.parametrize(
    "kw,field",
    [(dict(N=96), "N"), (dict(gridsize=4), "gridsize"), (dict(amp_activation="silu"), "amp_activation"),
     (dict(gaussian_smoothing_sigma=-1.0), "gaussian_smoothing_sigma"), (dict(probe_scale=0), "probe_scale"),
     (dict(n_filters_scale=0), "n_filters_scale"), (dict(offset=-1), "offset"), (dict(object_big=1), "object_big"),
     (dict(intensity_scale=float("nan")), "intensity_scale")],
)
def test_bad_config_names_the_field(kw, field):
    with pytest.raises(ValueError, match=rf"ModelConfig\.{field}=.*expected"):
        ModelConfig(**kw)


def test_bad_weights_name_the_arrays(tmp_path):
    cfg = ModelConfig()
    w = init_weights(cfg, 0)
    del w["encoder.block0.conv1.bias"]
    w["extra.kernel"] = np.zeros(3)
    w["decoder_amp.last.conv1.kernel"] = np.zeros((3, 3, 60, 1))
    with pytest.raises(ValueError) as err:
        check_weights(cfg, w)
    msg = str(err.value)
    assert "missing arrays ['encoder.block0.conv1.bias']" in msg
    assert "unexpected arrays ['extra.kernel']" in msg
    assert "decoder_amp.last.conv1.kernel: expected shape (3, 3, 60, 4), got (3, 3, 60, 1)" in msg
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_weights_npz(bad)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled objects"):
        load_weights_npz(pickled)


def test_bad_inputs_are_refused_with_shapes():
    cfg = ModelConfig()
    m = ForwardModel(cfg, seed=0)
    d, o, p = _inputs(cfg)
    with pytest.raises(ValueError, match=r"diffraction must have shape \(B, 64, 64, 4\).*got \(2, 4, 64, 64\)"):
        m.forward(np.transpose(d, (0, 3, 1, 2)), o, p)
    with pytest.raises(ValueError, match=r"offsets must have shape \(2, 4, 2\), got \(2, 4\)"):
        m.forward(d, o[..., 0], p)
    with pytest.raises(ValueError, match=r"probe_raw must have shape \(64, 64\), got \(32, 32\)"):
        m.forward(d, o, p[:32, :32])
    with pytest.raises(ValueError, match="diffraction must be real floating"):
        m.forward(d.astype(np.int64), o, p)
    with pytest.raises(KeyError, match="unknown stage 'canvass'"):
        m.stage("canvass", {})
    with pytest.raises(ValueError, match="dtype='float16' is not supported"):
        ForwardModel(cfg, seed=0, dtype="float16")
