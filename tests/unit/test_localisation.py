"""A deliberately broken port fails, and localisation names the stage where the bug is."""
import pytest

import parity
import torch_impl.physics as port_physics


@pytest.fixture
def wrong_merge_sign(monkeypatch):
    """The port's merge translates by +o instead of -o (upstream pitfall 3)."""
    original = port_physics.merge_patches
    monkeypatch.setattr(port_physics, "merge_patches", lambda p, o, size: original(p, -o, size))


def test_wrong_offset_sign_is_localised_to_canvas(wrong_merge_sign):
    run = parity.run_case("n64_g2")
    result = run.result
    assert not result and result.verdict == "fail"
    assert result.first_divergent_stage == "canvas"
    assert result.root_cause_stage == "canvas"
    labels = {s.name: s.label for s in result.stages}
    assert labels["canvas"] == "root_cause"
    # everything downstream that fails does so because of the canvas, not locally
    for name in ("trimmed_object", "extracted_patches", "exit_wave", "far_field_amp", "pred_amp"):
        assert labels[name] == "propagated", (name, labels[name])
    for name in ("input_scaled", "latent", "amp", "phase", "object_patches", "probe"):
        assert labels[name] == "ok", name
    canvas = result.stage("canvas")
    assert canvas.margin > 10 and canvas.local_error > 10


def test_clean_port_passes_the_same_case():
    run = parity.run_case("n64_g2")
    assert run.result and run.result.first_divergent_stage is None
    assert all(s.label == "ok" for s in run.result.stages)
