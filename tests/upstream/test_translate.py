"""The case config -> upstream configs translation, the refusals, the weight maps and the
checkout lookup: plain Python, no checkout needed."""
import os

import pytest

from parity import cases
from parity.pairs import resolve_pair
from parity.upstream import checkout, translate, weightmap


def _cfg(name, **changes):
    cfg = cases.get_case(name).config.to_dict()
    cfg.update(changes)
    return cfg


@pytest.mark.parametrize("changes, side, says", [
    ({"amp_activation": "softplus"}, "ptycho_torch", "amp_activation='softplus' cannot be expressed"),
    ({"amp_activation": "relu"}, "ptycho_torch", "into SiLU"),
    ({"pad_object": False}, "ptycho_torch", "pad_object=False cannot be expressed"),
    ({"gaussian_smoothing_sigma": 0.8}, "ptycho_torch", "does not smooth the exit wave"),
    ({"object_big": False}, "ptycho_torch", "object_big=False cannot be expressed"),
    ({"N": 128, "probe_big": True}, "ptycho_torch", "probe_big at N=128 cannot be expressed"),
])
def test_a_config_the_torch_port_cannot_express_is_refused_with_the_reason(changes, side, says):
    reason = translate.refusal(side, _cfg("pp_n64_g2_int", **changes), "float32")
    assert reason is not None and says in reason
    assert translate.refusal("ptycho", _cfg("pp_n64_g2_int", **changes), "float32") is None


def test_float64_is_refused_by_both_upstream_sides():
    for side in translate.SIDES:
        assert "float64 case cannot be expressed" in translate.refusal(side, _cfg("pp_n64_g2_int"), "float64")


def test_swish_is_silu_and_the_canvas_is_aligned_where_it_can_be():
    setup = translate.torch_setup(_cfg("pp_n64_g2_int", amp_activation="swish"), "float32")
    assert setup["ModelConfig"]["amp_activation"] == "silu"
    assert setup["ModelConfig"]["cbam_encoder"] is False
    assert setup["DataConfig"]["probe_scale"] == 1.0  # the forward's second division is a no-op
    assert translate.canvas_sizes(_cfg("pp_n64_g2_int")) == {"ptycho": 78, "ptycho_torch": 78}
    g1 = translate.torch_setup(_cfg("pp_n64_g1"), "float32")
    assert translate.canvas_sizes(_cfg("pp_n64_g1")) == {"ptycho": 74, "ptycho_torch": 64}
    assert any("canvas" in n for n in g1["notes"]) and g1["ModelConfig"]["use_legacy_decoder_channel_override"]
    s = translate.scale_of(_cfg("pp_n64_g2_int"))
    assert setup["forward"]["input_scale_factor"] == pytest.approx(1 / s)
    assert translate.tf_params(_cfg("pp_n64_g2_int"), "float32")["intensity_scale"] == pytest.approx(s)


def test_hard_disk_is_the_mask_of_the_forward_model():
    d = translate.hard_disk(64)
    assert d.shape == (64, 64) and d[32, 32] == 1 and d[0, 0] == 0
    assert abs(d.sum() / (3.14159265 * 16 ** 2) - 1) < 0.02  # a disk of radius N/4
    assert (d == d[::-1]).all() and (d == d.T).all()


@pytest.mark.parametrize("changes, expected", [
    # creation order of ptycho's Conv2D layers, read off the built models (N=64: 3 encoder blocks)
    ({}, {"encoder.block0.conv1.kernel": "conv2d/kernel", "decoder_amp.last.conv1.kernel": "conv2d_6/kernel",
          "decoder_amp.block0.conv1.kernel": "conv2d_8/kernel", "decoder_phase.last.conv1.kernel": "conv2d_12/kernel",
          "decoder_phase.block1.conv2.bias": "conv2d_17/bias"}),
    ({"probe_big": True}, {"decoder_amp.last.conv2.kernel": "conv2d_7/kernel",
                           "decoder_amp.last.up.conv1.kernel": "conv2d_12/kernel",
                           "decoder_phase.last.conv1.kernel": "conv2d_14/kernel",
                           "decoder_phase.last.up.conv2.kernel": "conv2d_21/kernel"}),
    ({"pad_object": False, "gridsize": 1}, {"decoder_amp.last.conv2.kernel": "conv2d_7/kernel",
                                            "decoder_phase.last.conv2.kernel": "conv2d_15/kernel",
                                            "decoder_phase.last.up.conv1.kernel": "conv2d_20/kernel"}),
])
def test_the_neutral_weights_map_onto_ptychos_convolutions_in_creation_order(changes, expected):
    wmap = weightmap.ptycho_map(_cfg("pp_n64_g2_int", **changes))
    got = {e.source: e.target for e in wmap.entries}
    for neutral, target in expected.items():
        assert got[neutral] == target


def test_the_torch_map_leaves_only_unused_parameters_untransferred():
    wmap = weightmap.ptycho_torch_map(_cfg("pp_n64_g2_int"), prefix="model.")
    targets = {e.target for e in wmap.entries}
    assert "model.autoencoder.decoder_amp.amp.conv1.weight" in targets
    assert "model.autoencoder.decoder_amp.amp.conv2.weight" in wmap.not_transferred  # no probe_big: unused
    big = weightmap.ptycho_torch_map(_cfg("pp_n64_g2_int", probe_big=True), prefix="model.")
    assert "model.autoencoder.decoder_amp.amp.conv_up_block.conv1.weight" in {e.target for e in big.entries}
    assert not any("conv2" in t and "amp.conv2" in t for t in big.not_transferred)


def test_the_checkout_lookup_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv(checkout.ENV, raising=False)
    with pytest.raises(checkout.CheckoutMissing, match="pass --upstream PATH or set PARITY_PTYCHOPINN"):
        checkout.locate()
    with pytest.raises(checkout.CheckoutMissing, match="is not a folder"):
        checkout.locate(str(tmp_path / "nowhere"))
    (tmp_path / "ptycho").mkdir()
    (tmp_path / "ptycho" / "__init__.py").write_text("")
    with pytest.raises(checkout.CheckoutMissing, match="no ptycho_torch/ package"):
        checkout.locate(str(tmp_path))
    (tmp_path / "ptycho_torch").mkdir()
    (tmp_path / "ptycho_torch" / "__init__.py").write_text("")
    (tmp_path / "SNAPSHOT.md").write_text("commit " + "ab" * 20 + " (a date)")
    assert checkout.locate(str(tmp_path)) == tmp_path.resolve()
    assert checkout.describe(tmp_path.resolve())["commit"] == "ab" * 20


def test_the_pair_of_the_upstream_sides_refuses_what_they_cannot_express():
    pair = resolve_pair("ptycho:ptycho_torch")
    refused = pair.refusals(cases.suite("default"))
    assert "n64_g2_biased_softplus" in refused and "ptycho_torch" in refused["n64_g2_biased_softplus"]
    assert set(refused["n64_g2_f64_smooth"]) == {"ptycho", "ptycho_torch"}
    assert "n64_g2" not in refused and "n128_g2" not in refused
    assert not resolve_pair("reference_tf:torch_impl").refusals(cases.suite("default"))
