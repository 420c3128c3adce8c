"""The PtychoPINN pair against the checkout: upstream's TensorFlow model and torch port, run
unmodified from the checkout, compared stage by stage, and our reference against upstream's.
Skips, with the reason, where no checkout (or none of upstream's imports) is there."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _report(hub, *args, env=None):
    cmd = [sys.executable, "-m", "parity.report", "--hub", str(hub), "-q", *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    doc = None
    if (hub / "parity_report.json").exists():
        doc = json.loads((hub / "parity_report.json").read_text())
    return proc, doc


@pytest.fixture(scope="module")
def upstream_hub(upstream, tmp_path_factory):
    hub = tmp_path_factory.mktemp("pp") / "hub"
    proc, doc = _report(hub, "--pair", "ptycho:ptycho_torch", "--upstream", str(upstream),
                        "--case", "pp_n64_g2_int", "pp_n64_g2_sub", "pp_n64_g1")
    assert doc is not None, proc.stderr[-3000:]
    return hub, proc, doc


def _case(doc, name):
    return next(c for c in doc["cases"] if c["name"] == name)


def _stage(case, name):
    return next(s for s in case["stages"] if s["name"] == name)


def test_integer_offsets_agree_through_pred_intensity(upstream_hub):
    _, _, doc = upstream_hub
    c = _case(doc, "pp_n64_g2_int")
    assert c["sides"] == {"reference": "ptycho", "candidate": "ptycho_torch"}
    for name in ("input_scaled", "latent", "amp", "phase", "object_patches", "canvas", "extracted_patches", "probe",
                 "exit_wave", "far_field_amp", "pred_amp", "pred_intensity"):
        st = _stage(c, name)
        assert st["verdict"] == "pass", (name, st.get("message"))
    # a real comparison: the two frameworks differ by round-off, not bit for bit
    assert 0 < float(_stage(c, "pred_amp")["max_abs"]) < 1e-2 * float(_stage(c, "pred_amp")["ref_max_abs"])


def test_sub_pixel_offsets_diverge_first_at_the_merge(upstream_hub):
    _, _, doc = upstream_hub
    c = _case(doc, "pp_n64_g2_sub")
    assert c["first_divergent_stage"] == "canvas" and c["root_cause_stage"] == "canvas"
    assert _stage(c, "object_patches")["verdict"] == "pass"
    assert float(_stage(c, "canvas")["margin"]) > 100


def test_gridsize_one_canvases_differ_in_size_and_nothing_is_forced_across_them(upstream_hub):
    _, _, doc = upstream_hub
    c = _case(doc, "pp_n64_g1")
    canvas = _stage(c, "canvas")
    assert canvas["verdict"] == "fail" and "shape" in canvas["message"].lower()
    ext = _stage(c, "extracted_patches")
    assert ext["verdict"] == "pass"  # cut from canvases of different sizes, the patches still agree
    assert "ShapeMismatch" in ext.get("local_not_checked", "")


def test_the_hub_records_what_each_side_was_given(upstream_hub, upstream):
    hub, _, doc = upstream_hub
    c = _case(doc, "pp_n64_g2_int")
    from parity.capture import load_capture

    meta = load_capture(hub / c["captures"]["candidate"]).meta
    given = meta["given"]
    assert given["ModelConfig"]["cbam_encoder"] is False and given["DataConfig"]["max_neighbor_distance"] == 14.0
    assert meta["upstream"]["commit"] != "unknown" and Path(meta["upstream"]["path"]) == upstream
    ref = load_capture(hub / c["captures"]["reference"]).meta
    assert ref["given"]["params.cfg"]["probe.big"] is False and ref["given"]["canvas"] == 78


def test_the_page_and_patch_statistics_of_both_upstream_models_are_written(upstream_hub):
    hub, _, doc = upstream_hub
    assert (hub / "index.html").exists() and "ptycho_torch" in (hub / "index.html").read_text()
    for role in ("reference", "candidate"):
        stats = json.loads((hub / "analysis" / f"{role}_patch_stats.json").read_text())
        assert stats["sides"] == [{"reference": "ptycho", "candidate": "ptycho_torch"}[role]]
        assert "amp" in stats["cases"][_case(doc, "pp_n64_g2_int")["key"]]["stages"]


def test_our_reference_is_upstreams_tensorflow_model(upstream, tmp_path):
    proc, doc = _report(tmp_path / "hub", "--pair", "reference_tf:ptycho", "--upstream", str(upstream),
                        "--case", "n64_g2", "n64_g2_probe_big_relu", "n64_g1_f64_mask")
    assert doc is not None, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert [c["name"] for c in doc["cases"]] == ["n64_g2", "n64_g2_probe_big_relu"]
    assert all(c["verdict"] == "pass" for c in doc["cases"])
    assert "float64 case cannot be expressed" in doc["not_expressible"]["n64_g1_f64_mask"]["ptycho"]
    assert "n64_g1_f64_mask: not run" in proc.stdout


def test_without_a_checkout_the_report_says_how_to_name_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PARITY_PTYCHOPINN"}
    proc, doc = _report(tmp_path / "h", "--pair", "ptycho:ptycho_torch", env=env)
    assert proc.returncode == 2 and doc is None and not (tmp_path / "h").exists()
    assert proc.stderr.strip().count("\n") == 0 and "--upstream PATH or set PARITY_PTYCHOPINN" in proc.stderr
    proc, _ = _report(tmp_path / "h", "--pair", "ptycho:ptycho_torch", "--upstream", str(tmp_path), env=env)
    assert proc.returncode == 2 and "holds no ptycho/ and no ptycho_torch/ package" in proc.stderr


def test_a_case_no_side_can_express_is_bad_input(upstream, tmp_path):
    proc, doc = _report(tmp_path / "h", "--pair", "ptycho:ptycho_torch", "--upstream", str(upstream),
                        "--case", "n64_g2_biased_softplus")
    assert proc.returncode == 2 and doc is None
    assert "cannot be expressed" in proc.stderr and "amp_activation='softplus'" in proc.stderr


_STATE_SCRIPT = r"""
import json, sys
import numpy as np
from parity import cases
from parity.sides import get_side

side = get_side(sys.argv[1])
def run(name, model=None):
    cfg, weights, inputs = cases.prepare(cases.get_case(name))
    model = model or side.build(cfg, weights, "float32", "cpu")
    return model, side.forward(model, inputs)
a, first = run("pp_n64_g2_int")
b, other = run("pp_n64_g1")          # another config, another intensity scale and canvas
_, again = run("pp_n64_g2_int", a)   # the first model again, after the second was built
same = all(np.array_equal(first[k], again[k]) for k in first)
print(json.dumps({"same": same, "differs": not np.array_equal(first["pred_amp"][:, :1], other["pred_amp"][:4, :1])}))
"""


@pytest.mark.parametrize("side", ["ptycho", "ptycho_torch"])
def test_a_model_keeps_its_own_state_after_another_is_built_in_the_same_process(upstream, side):
    """ptycho's params.cfg, its module cache of log_scale and the probe variable; torch's config objects."""
    proc = subprocess.run([sys.executable, "-c", _STATE_SCRIPT, side], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"same": True, "differs": True}
