"""torch_impl config, weights, network and ForwardModel (forward-model.md §1, §3, §7, §8)."""
from __future__ import annotations

import importlib
import math
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import torch_impl
from torch_impl import ForwardModel, ModelConfig, check_weights, init_weights, weight_spec
from torch_impl import model as tmodel
from torch_impl.network import Generator
from torch_impl.weights import (
    from_torch_state,
    load_weights_npz,
    save_weights_npz,
    to_torch_state,
)

ROOT = Path(__file__).resolve().parents[2]


# ---- the reference's pure-Python modules, loaded without its package __init__ (no TensorFlow) --
def _reference_module(name):
    pkg_name = "_reference_tf_pure"
    if pkg_name not in sys.modules:
        pkg = types.ModuleType(pkg_name)
        pkg.__path__ = [str(ROOT / "reference_tf")]
        sys.modules[pkg_name] = pkg
    if not (ROOT / "reference_tf" / f"{name}.py").exists():
        pytest.skip(f"reference_tf/{name}.py is not there")
    return importlib.import_module(f"{pkg_name}.{name}")


def _parity_stages():
    if not (ROOT / "parity" / "stages.py").exists():
        pytest.skip("parity/stages.py is not there")
    return importlib.import_module("parity.stages")


# ---- helpers ---------------------------------------------------------------------------------
def batch(config, b=2, seed=0, zero_mean=True):
    r = np.random.default_rng(seed)
    n, c = config.N, config.C
    x = np.abs(r.normal(size=(b, c, n, n)))
    x *= (n / 2) / np.sqrt(np.mean(np.sum(x**2, axis=(-2, -1))))  # mean energy (N/2)^2
    diffraction = config.scale * x
    offsets = r.uniform(-3, 3, size=(b, c, 2))
    if zero_mean:
        offsets -= offsets.mean(axis=1, keepdims=True)
    yy, xx = np.mgrid[:n, :n] - n / 2 + 0.5
    probe = np.exp(-(xx**2 + yy**2) / (2 * (n / 6) ** 2)) * np.exp(0.3j * r.normal(size=(n, n)))
    return diffraction, offsets, probe


CONFIGS = [  # n_filters_scale=1 where the width does not matter, to keep the suite fast
    dict(),
    dict(probe_big=True),
    dict(gridsize=1, n_filters_scale=1),
    dict(gridsize=3, n_filters_scale=1),
    dict(object_big=False, n_filters_scale=1),
    dict(gridsize=1, object_big=False, n_filters_scale=1),
    dict(pad_object=False, n_filters_scale=1),
    dict(amp_activation="swish", n_filters_scale=1),
    dict(amp_activation="softplus", probe_mask=True, n_filters_scale=1),
    dict(amp_activation="relu", gaussian_smoothing_sigma=0.8, n_filters_scale=1),
    dict(N=128, gridsize=1, n_filters_scale=1, probe_big=True),
    dict(N=128, n_filters_scale=1, pad_object=False, object_big=False),
]


# ---- config ----------------------------------------------------------------------------------
def test_config_matches_reference():
    ref = _reference_module("config")
    from dataclasses import fields

    ours = [(f.name, f.default) for f in fields(ModelConfig)]
    theirs = [(f.name, f.default) for f in fields(ref.ModelConfig)]
    assert ours == theirs
    for kw in CONFIGS + [dict(N=256, gridsize=3, offset=6, max_position_jitter=3, intensity_scale=2.5)]:
        a, b = ModelConfig(**kw), ref.ModelConfig(**kw)
        assert a.to_dict() == b.to_dict()
        for prop in ("C", "K", "M", "scale", "encoder_filters", "decoder_filters", "border_filters"):
            assert getattr(a, prop) == getattr(b, prop), (kw, prop)
    bad = [
        dict(N=96), dict(N=64.0), dict(gridsize=4), dict(n_filters_scale=0), dict(object_big=1),
        dict(amp_activation="tanh"), dict(probe_scale=0), dict(probe_scale=float("inf")),
        dict(gaussian_smoothing_sigma=-1.0), dict(offset=-1), dict(max_position_jitter=2.5),
        dict(nphotons=0), dict(intensity_scale=-1.0), dict(probe_big=True, pad_object=False),
        dict(probe_mask="yes"),
    ]
    for kw in bad:
        with pytest.raises(ValueError) as ours_err:
            ModelConfig(**kw)
        with pytest.raises(ValueError) as ref_err:
            ref.ModelConfig(**kw)
        assert str(ours_err.value) == str(ref_err.value)
        assert next(iter(kw)) in str(ours_err.value)
    with pytest.raises(ValueError, match="unknown field"):
        ModelConfig.from_dict({"N": 64, "bogus": 1})


def test_config_defaults_and_round_trip():
    c = ModelConfig()
    assert (c.N, c.gridsize, c.C, c.K, c.M) == (64, 2, 4, 4, 78)
    assert ModelConfig(gridsize=1).M == 74
    assert c.scale == pytest.approx(math.sqrt(1e9) / 32)
    assert c.border_filters == 64 and ModelConfig(N=128).border_filters == 32 and ModelConfig(N=256).border_filters == 16
    assert ModelConfig.from_dict(c.to_dict()) == c
    with pytest.raises(Exception):
        c.N = 128  # frozen


# ---- weights ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw,count",
    [
        (dict(gridsize=1), 2_252_026),
        (dict(gridsize=1, probe_big=True), 2_331_772),
        (dict(gridsize=2), 2_257_000),
        (dict(gridsize=2, probe_big=True), 2_340_208),
        (dict(N=128, gridsize=2), 4_643_880),
        (dict(N=128, gridsize=2, probe_big=True), 4_667_056),
    ],
)
def test_parameter_counts(kw, count):
    config = ModelConfig(**kw)
    gen = Generator(config)
    assert sum(p.numel() for p in gen.parameters()) == count
    assert sum(int(np.prod(s)) for s in weight_spec(config).values()) == count


def test_weight_spec_and_init_match_reference():
    ref = _reference_module("weights")
    rconf = _reference_module("config")
    for kw in CONFIGS + [dict(N=256)]:
        ours = weight_spec(ModelConfig(**kw))
        theirs = ref.weight_spec(rconf.ModelConfig(**kw))
        assert list(ours.items()) == list(theirs.items())
    a = init_weights(ModelConfig(), 123)
    b = ref.init_weights(rconf.ModelConfig(), 123)
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == np.float64 and np.array_equal(a[k], b[k])


def test_torch_state_layout_and_no_flip():
    config = ModelConfig(gridsize=1)
    w = init_weights(config, 5)
    state = to_torch_state(config, w)
    k = w["encoder.block0.conv1.kernel"]  # (kh, kw, in, out)
    tw = state["encoder.block0.conv1.weight"]  # (out, in, kh, kw)
    assert tuple(tw.shape) == (k.shape[3], k.shape[2], k.shape[0], k.shape[1])
    assert tw[7, 0, 0, 2].item() == k[0, 2, 0, 7]
    assert "decoder_amp.base.block1.conv2.weight" in state and "decoder_phase.last.conv1.bias" in state
    # a torch conv with the converted kernel is the HWIO cross-correlation (no flip)
    r = np.random.default_rng(0)
    x = r.normal(size=(1, 6, 6))
    kern = r.normal(size=(3, 3, 1, 2))
    out = F.conv2d(torch.from_numpy(x)[None], torch.from_numpy(kern.transpose(3, 2, 0, 1).copy()), padding=1)[0].numpy()
    xp = np.pad(x[0], 1)
    ref = np.array([[[np.sum(xp[i : i + 3, j : j + 3] * kern[:, :, 0, o]) for j in range(6)] for i in range(6)] for o in range(2)])
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kw", [dict(), dict(probe_big=True), dict(pad_object=False, gridsize=1)])
def test_weight_round_trip_bitwise(kw):
    config = ModelConfig(**kw)
    w64 = init_weights(config, 7)
    back = from_torch_state(config, to_torch_state(config, w64))
    assert list(back) == list(w64)
    for k in w64:
        assert back[k].dtype == np.float64 and np.array_equal(back[k], w64[k])
    m64 = ForwardModel(config, w64, dtype="float64")
    for k, v in m64.export_weights().items():
        assert v.dtype == np.float64 and np.array_equal(v, w64[k]), k
    w32 = {k: v.astype(np.float32) for k, v in w64.items()}
    m32 = ForwardModel(config, w32, dtype="float32")
    for k, v in m32.export_weights().items():
        assert v.dtype == np.float32 and np.array_equal(v, w32[k]), k
    # a float64 set loaded into a float32 model is rounded to nearest, like numpy's astype
    for k, v in ForwardModel(config, w64).export_weights().items():
        assert np.array_equal(v, w32[k])


def test_check_weights_names_every_problem():
    config = ModelConfig()
    w = init_weights(config, 0)
    del w["encoder.block0.conv1.bias"]
    w["decoder_amp.extra.kernel"] = np.zeros(3)
    w["encoder.block1.conv2.kernel"] = np.zeros((3, 3, 2, 2))
    w["encoder.block2.conv1.bias"] = np.zeros(256, dtype=np.int64)
    with pytest.raises(ValueError) as err:
        check_weights(config, w)
    msg = str(err.value)
    assert "missing arrays ['encoder.block0.conv1.bias']" in msg
    assert "unexpected arrays ['decoder_amp.extra.kernel']" in msg
    assert "encoder.block1.conv2.kernel: expected shape (3, 3, 128, 128), got (3, 3, 2, 2)" in msg
    assert "encoder.block2.conv1.bias has dtype int64" in msg
    w = init_weights(config, 0)
    w["decoder_phase.last.conv1.kernel"][0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="decoder_phase.last.conv1.kernel holds NaN"):
        ForwardModel(config, w)
    # a probe_big set does not fit a plain config
    with pytest.raises(ValueError, match="unexpected arrays"):
        ForwardModel(config, init_weights(ModelConfig(probe_big=True), 0))


def test_npz_io(tmp_path):
    config = ModelConfig(gridsize=1)
    w = init_weights(config, 3)
    path = tmp_path / "w.npz"
    save_weights_npz(path, w)
    back = load_weights_npz(path)
    assert set(back) == set(w) and all(np.array_equal(back[k], w[k]) for k in w)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_weights_npz(tmp_path / "nope.npz")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_weights_npz(tmp_path / "text.npz")
    (tmp_path / "trunc.npz").write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_weights_npz(tmp_path / "trunc.npz")
    import pickle

    (tmp_path / "p.npz").write_bytes(pickle.dumps(w))
    with pytest.raises(ValueError, match="refused"):
        load_weights_npz(tmp_path / "p.npz")
    np.savez(tmp_path / "obj.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled objects"):
        load_weights_npz(tmp_path / "obj.npz")


# ---- stage table -----------------------------------------------------------------------------
def test_stage_table_agrees_with_parity_stages():
    stages = _parity_stages()
    assert tmodel.STAGE_NAMES == stages.STAGE_NAMES
    for s in stages.STAGES:
        assert tmodel.STAGE_INPUTS[s.name] == s.inputs
        shape, is_complex = tmodel.TENSOR_SPECS[s.name]
        assert shape == s.shape and is_complex == s.complex, s.name
    assert tmodel.BATCH_INPUTS == stages.BATCH_INPUTS


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_stage_shapes_and_dtypes(kw, dtype):
    stages = _parity_stages()
    config = ModelConfig(**kw)
    model = ForwardModel(config, seed=1, dtype=dtype)
    d, o, p = batch(config, b=2)
    taps = {}
    out = model.forward(d, o, p, taps=taps)
    assert list(taps) == list(stages.STAGE_NAMES)
    real, cplx = tmodel.DTYPES[dtype]
    for name, shape in stages.expected_shapes(config, 2).items():
        assert tuple(taps[name].shape) == shape, name
        assert taps[name].dtype == (cplx if stages.get(name).complex else real), name
        assert not taps[name].requires_grad
        assert bool(torch.isfinite(taps[name]).all()), name
    assert set(out) == {"pred_amp", "pred_intensity", "trimmed_object", "loss_nll", "loss_mae"}
    for k, v in out.items():
        assert torch.equal(v, taps[k])


def test_stage_semantics_float64():
    config = ModelConfig()
    model = ForwardModel(config, seed=2, dtype="float64")
    d, o, p = batch(config, b=3, zero_mean=False)
    taps = {}
    model.forward(d, o, p, taps=taps)
    s = config.scale
    np.testing.assert_allclose(taps["input_scaled"].numpy(), d / s, rtol=1e-15)
    a, ph = taps["amp"].numpy(), taps["phase"].numpy()
    assert a.min() >= 0 and a.max() <= 1 and np.abs(ph).max() <= np.pi
    np.testing.assert_allclose(taps["object_patches"].numpy(), a * np.exp(1j * ph), atol=1e-14)
    np.testing.assert_array_equal(taps["trimmed_object"].numpy(), taps["canvas"].numpy()[:, 7:71, 7:71])
    pa = taps["pred_amp"].numpy()
    np.testing.assert_allclose(pa, s * taps["far_field_amp"].numpy(), rtol=1e-15)
    np.testing.assert_allclose(taps["pred_intensity"].numpy(), pa**2, rtol=1e-15)
    np.testing.assert_allclose(taps["loss_nll"].item(), np.mean(pa**2 - d**2 * np.log(pa**2)), rtol=1e-12)
    np.testing.assert_allclose(taps["loss_mae"].item(), np.mean(np.abs(pa - d)), rtol=1e-12)
    pn = taps["probe"].numpy()
    c = np.arange(64) - 32 + 0.5
    disk = np.hypot(c[:, None], c[None, :]) < 16
    np.testing.assert_allclose(np.mean(np.abs(pn * disk)), 1 / config.probe_scale, rtol=1e-13)
    # the border of x1 is exactly zero without probe_big
    assert np.all(a[..., :16, :] == 0) and np.all(a[..., :, 48:] == 0)


def test_teacher_forcing_reproduces_every_stage():
    config = ModelConfig(probe_big=True, gaussian_smoothing_sigma=0.5, probe_mask=True, n_filters_scale=1)
    model = ForwardModel(config, seed=3)
    d, o, p = batch(config, b=2)
    taps = {}
    model.forward(d, o, p, taps=taps)
    env = {"diffraction": d, "offsets": o, "probe_raw": p}
    env.update({k: v.numpy() for k, v in taps.items()})  # numpy inputs are accepted too
    for name in tmodel.STAGE_NAMES:
        sub = {k: env[k] for k in tmodel.STAGE_INPUTS[name]}
        assert torch.equal(model.stage(name, sub), taps[name]), name


def test_amp_stage_runs_only_the_amplitude_decoder(monkeypatch):
    config = ModelConfig(gridsize=1)
    model = ForwardModel(config, seed=4)
    latent = torch.randn(2, 256, 8, 8)

    def boom(*_):
        raise AssertionError("must not run")

    monkeypatch.setattr(model.generator.encoder, "forward", boom)
    monkeypatch.setattr(model.generator.decoder_phase, "forward", boom)
    amp = model.stage("amp", {"latent": latent})
    assert amp.shape == (2, 1, 64, 64)


def _np_act(name, x):
    return {
        "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
        "swish": lambda v: v / (1 + np.exp(-v)),
        "softplus": lambda v: np.log1p(np.exp(v)),
        "relu": lambda v: np.maximum(v, 0),
    }[name](x)


def _np_conv(x, kernel, bias):
    """'same' 3x3 cross-correlation, x (B, Cin, H, W), kernel (3, 3, Cin, Cout) neutral layout."""
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    h, w = x.shape[-2:]
    out = np.zeros((x.shape[0], kernel.shape[3], h, w))
    for i in range(3):
        for j in range(3):
            out += np.einsum("bchw,co->bohw", xp[:, :, i : i + h, j : j + w], kernel[i, j])
    return out + bias[None, :, None, None]


def _np_convup(x, w, prefix):
    x = np.maximum(_np_conv(x, w[f"{prefix}.conv1.kernel"], w[f"{prefix}.conv1.bias"]), 0)
    x = np.maximum(_np_conv(x, w[f"{prefix}.conv2.kernel"], w[f"{prefix}.conv2.bias"]), 0)
    return x.repeat(2, axis=-2).repeat(2, axis=-1)


def _random_weights(config, seed):
    """Glorot kernels and non-zero biases, so every bias is exercised."""
    r = np.random.default_rng(seed)
    w = init_weights(config, seed)
    return {k: (v if k.endswith("kernel") else r.uniform(-0.1, 0.1, v.shape)) for k, v in w.items()}


@pytest.mark.parametrize("act", ["sigmoid", "swish", "softplus", "relu"])
@pytest.mark.parametrize("variant", ["pad", "probe_big", "full"])
def test_last_decoder_stage_against_numpy(act, variant):
    kw = {"pad": {}, "probe_big": {"probe_big": True}, "full": {"pad_object": False}}[variant]
    config = ModelConfig(gridsize=1, n_filters_scale=1, amp_activation=act, **kw)
    w = _random_weights(config, 11)
    model = ForwardModel(config, w, dtype="float64")
    z = np.random.default_rng(1).normal(size=(2, 32, 32, 32))
    for head, fn in (("decoder_amp", lambda v: _np_act(act, v)), ("decoder_phase", lambda v: np.pi * np.tanh(v))):
        dec = getattr(model.generator, head)
        got = dec.last(torch.from_numpy(z)).numpy()
        if variant == "full":
            ref = fn(_np_conv(_np_convup(z, w, f"{head}.last.up"), w[f"{head}.last.conv2.kernel"], w[f"{head}.last.conv2.bias"]))
        else:
            x1 = fn(_np_conv(z[:, :-4], w[f"{head}.last.conv1.kernel"], w[f"{head}.last.conv1.bias"]))
            ref = np.pad(x1, ((0, 0), (0, 0), (16, 16), (16, 16)))
            if variant == "probe_big":
                x2 = _np_conv(_np_convup(z[:, -4:], w, f"{head}.last.up"), w[f"{head}.last.conv2.kernel"], w[f"{head}.last.conv2.bias"])
                border = np.ones((64, 64))
                border[16:48, 16:48] = 0
                ref = ref + x2 / (1 + np.exp(-x2)) * border  # swish in both heads
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


def test_generator_against_numpy_oracle():
    config = ModelConfig(gridsize=1, n_filters_scale=1, probe_big=True)
    w = _random_weights(config, 12)
    model = ForwardModel(config, w, dtype="float64")
    x = np.abs(np.random.default_rng(2).normal(size=(1, 1, 64, 64)))
    latent, amp, phase = (v.numpy() for v in model.generator(torch.from_numpy(x)))
    h = x
    for i in range(3):
        h = np.maximum(_np_conv(h, w[f"encoder.block{i}.conv1.kernel"], w[f"encoder.block{i}.conv1.bias"]), 0)
        h = np.maximum(_np_conv(h, w[f"encoder.block{i}.conv2.kernel"], w[f"encoder.block{i}.conv2.bias"]), 0)
        b, c, hh, ww = h.shape
        h = h.reshape(b, c, hh // 2, 2, ww // 2, 2).max(axis=(3, 5))
    np.testing.assert_allclose(latent, h, rtol=1e-10, atol=1e-12)
    z = h
    for i in range(2):
        z = _np_convup(z, w, f"decoder_amp.block{i}")
    x1 = _np_act("sigmoid", _np_conv(z[:, :-4], w["decoder_amp.last.conv1.kernel"], w["decoder_amp.last.conv1.bias"]))
    np.testing.assert_allclose(amp[..., 16:48, 16:48], x1, rtol=1e-10, atol=1e-12)
    assert phase.shape == (1, 1, 64, 64)


def test_outer_slice_is_the_last_four_channels():
    config = ModelConfig(gridsize=2, probe_big=True)
    model = ForwardModel(config, seed=6, dtype="float64")
    last = model.generator.decoder_amp.last
    z = torch.randn(1, 64, 32, 32, dtype=torch.float64)
    base = last(z)
    z2 = z.clone()
    z2[:, -4:] += 1.0  # outer only: the centre is unchanged
    changed = last(z2) != base
    assert not changed[..., 16:48, 16:48].any() and changed.any()
    z3 = z.clone()
    z3[:, 0] += 1.0  # inner only: the border is unchanged
    changed = last(z3) != base
    assert changed[..., 16:48, 16:48].any()
    changed[..., 16:48, 16:48] = False
    assert not changed.any()


# ---- determinism, dtypes, errors -------------------------------------------------------------
def test_determinism_and_flags():
    config = ModelConfig(probe_big=True)
    model = ForwardModel(config, seed=9)
    flags = tmodel.determinism_flags()
    assert flags["deterministic_algorithms"] and flags["cudnn_deterministic"] and not flags["cudnn_benchmark"]
    assert not flags["cuda_matmul_allow_tf32"] and not flags["cudnn_allow_tf32"]
    assert isinstance(flags["num_threads"], int)
    d, o, p = batch(config, b=2)
    t1, t2 = {}, {}
    model.forward(d, o, p, taps=t1)
    model.forward(d, o, p, taps=t2)
    for k in t1:
        assert torch.equal(t1[k], t2[k]), k
    other = ForwardModel(config, seed=9)
    assert torch.equal(other.forward(d, o, p)["pred_amp"], t1["pred_amp"])


def test_float32_close_to_float64():
    config = ModelConfig(n_filters_scale=1)
    w = init_weights(config, 10)
    d, o, p = batch(config, b=2)
    a = ForwardModel(config, w, dtype="float32").forward(d, o, p)
    b = ForwardModel(config, w, dtype="float64").forward(d, o, p)
    for k in ("pred_amp", "trimmed_object"):
        ref = b[k].numpy()
        np.testing.assert_allclose(a[k].numpy(), ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_input_errors():
    config = ModelConfig()
    model = ForwardModel(config, seed=0)
    d, o, p = batch(config, b=2)
    cases = [
        ((d[:, :3], o, p), r"diffraction must have shape \(B, 4, 64, 64\), got \(2, 3, 64, 64\)"),
        ((d[0], o, p), r"diffraction must have shape \(B, 4, 64, 64\), got \(4, 64, 64\)"),
        ((d.astype(complex), o, p), "diffraction must be real floating, got dtype complex128"),
        ((d.astype(np.int32), o, p), "diffraction must be real floating, got dtype int32"),
        ((d, o[:1], p), r"offsets must have shape \(2, 4, 2\), got \(1, 4, 2\)"),
        ((d, o[..., :1], p), r"offsets must have shape \(2, 4, 2\), got \(2, 4, 1\)"),
        ((d, np.full_like(o, np.nan), p), "offsets must be finite"),
        ((d, o, p[:32]), r"probe_raw must have shape \(64, 64\), got \(32, 64\)"),
        ((d, o, p[None]), r"probe_raw must have shape \(64, 64\), got \(1, 64, 64\)"),
        ((d, o, torch.ones(64, 64, dtype=torch.int64)), "probe_raw must be complex .* got dtype int64"),
    ]
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg):
            model.forward(*args)
    model.forward(d, o, np.abs(p))  # a real-valued raw probe is accepted (cast to complex)
    with pytest.raises(KeyError, match="unknown stage 'bogus'; known stages are .*'input_scaled'"):
        model.stage("bogus", {})
    with pytest.raises(KeyError, match=r"stage 'canvas' needs .*missing \['offsets'\]"):
        model.stage("canvas", {"object_patches": np.zeros((2, 4, 64, 64), complex)})
    with pytest.raises(ValueError, match="object_patches must be complex, got dtype float64"):
        model.stage("canvas", {"object_patches": np.zeros((2, 4, 64, 64)), "offsets": o})
    with pytest.raises(ValueError, match=r"offsets must have shape \(3, 4, 2\), got \(2, 4, 2\)"):
        model.stage("canvas", {"object_patches": np.zeros((3, 4, 64, 64), complex), "offsets": o})
    with pytest.raises(ValueError, match=r"latent must have shape \(B, 256, 8, 8\)"):
        model.stage("amp", {"latent": np.zeros((2, 128, 8, 8))})


def test_constructor_errors():
    config = ModelConfig(gridsize=1)
    with pytest.raises(ValueError, match="weight set or a seed"):
        ForwardModel(config)
    with pytest.raises(ValueError, match="not both"):
        ForwardModel(config, init_weights(config, 0), seed=0)
    with pytest.raises(ValueError, match="dtype='float16'"):
        ForwardModel(config, seed=0, dtype="float16")
    with pytest.raises(TypeError):
        ForwardModel("config", seed=0)
    assert ForwardModel(config.to_dict(), seed=0, dtype=torch.float64).dtype == "float64"
    assert set(torch_impl.__all__) >= {"ModelConfig", "ForwardModel", "weight_spec", "check_weights"}


def test_torch_impl_imports_neither_reference_nor_parity():
    for path in (ROOT / "torch_impl").glob("*.py"):
        text = path.read_text()
        for banned in ("reference_tf", "tensorflow", "parity"):
            assert f"import {banned}" not in text and f"from {banned}" not in text, (path.name, banned)


def test_forward_speed():
    config = ModelConfig()
    model = ForwardModel(config, seed=0)
    d, o, p = batch(config, b=8)
    model.forward(d, o, p)  # warm-up
    start = time.perf_counter()
    model.forward(d, o, p)
    assert time.perf_counter() - start < 5.0  # ~0.1-0.2 s on two CPU cores


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    config = ModelConfig()
    w = init_weights(config, 0)
    d, o, p = batch(config, b=2)
    cpu = ForwardModel(config, w, dtype="float64").forward(d, o, p)
    gpu = ForwardModel(config, w, dtype="float64", device="cuda").forward(d, o, p)
    for k, v in cpu.items():
        assert gpu[k].device.type == "cuda"
        torch.testing.assert_close(gpu[k].cpu(), v, rtol=1e-9, atol=1e-9)


@pytest.mark.slow
def test_n256_counts_and_shapes():
    stages = _parity_stages()
    for kw in (dict(N=256), dict(N=256, gridsize=1, probe_big=True, n_filters_scale=1)):
        config = ModelConfig(**kw)
        assert sum(p.numel() for p in Generator(config).parameters()) == sum(
            int(np.prod(s)) for s in weight_spec(config).values()
        )
        model = ForwardModel(config, seed=0)
        taps = {}
        model.forward(*batch(config, b=1), taps=taps)
        for name, shape in stages.expected_shapes(config, 1).items():
            assert tuple(taps[name].shape) == shape, name
