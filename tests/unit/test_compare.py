"""parity.compare and parity.messages: structure checks, labels, JSON round trip, messages."""
import json
import math

import numpy as np
import pytest

from parity import messages
from parity.capture import Capture
from parity.compare import compare
from parity.results import CaseResult, StageResult
from parity.stages import STAGE_NAMES, STAGES
from parity.tolerances import Tolerance, load_tolerances

DIMS = dict(B=2, C=4, K=4, N=8, M=16, n=1)
TABLE = load_tolerances()


def captures(dtype=np.float32, seed=0):
    """A reference capture of every stage and an identical candidate."""
    rng = np.random.default_rng(seed)
    cdtype = np.result_type(dtype, np.complex64)
    ref = {}
    for s in STAGES:
        shape = s.concrete_shape(**DIMS)
        a = rng.standard_normal(shape) + 1.5
        ref[s.name] = (a + 1j * rng.standard_normal(shape)).astype(cdtype) if s.complex else a.astype(dtype)
    cand = {k: v.copy() for k, v in ref.items()}
    return (Capture(ref, {"backend": "tf", "case": "c1", "device": "cpu"}),
            Capture(cand, {"backend": "torch", "case": "c1", "device": "cpu"}))


def walk_types(obj):
    """Every leaf of a to_dict() is a plain JSON type."""
    if isinstance(obj, dict):
        assert all(type(k) is str for k in obj)
        for v in obj.values():
            walk_types(v)
    elif isinstance(obj, list):
        for v in obj:
            walk_types(v)
    else:
        assert obj is None or type(obj) in (str, int, float, bool), (type(obj), obj)


# --------------------------------------------------------------------------- basics
def test_identical_captures_pass():
    ref, cand = captures()
    res = compare(ref, cand, TABLE)
    assert res and res.verdict == "pass" and bool(res.stage("canvas"))
    assert [s.name for s in res.stages] == list(STAGE_NAMES)
    assert res.first_divergent_stage is None and res.root_cause_stage is None and res.problems == []
    assert all(s.label == "ok" and s.margin == 0.0 for s in res.stages)
    assert res.name == "c1" and res.backends == {"reference": "tf", "candidate": "torch"}
    patch_stages = [s.name for s in STAGES if s.patch_shaped]
    assert sorted(res.patch_errors) == sorted(patch_stages)
    assert sorted(res.patch_stats["reference"]) == sorted(patch_stages)
    assert set(res.patch_stats["candidate"]["exit_wave"]) == {"amplitude", "phase", "shape"}
    assert res.patch_stats["reference"]["amp"]["per_patch"]["mean"].shape == (2, 4)
    assert res.stage("amp").tolerance["source"] == "defaults.float32"


def test_missing_and_extra_stages_are_listed_and_failed():
    ref, cand = captures()
    del cand.stages["probe"]
    cand.stages["bogus"] = np.zeros(3)
    res = compare(ref, cand, TABLE)
    assert not res and res.first_divergent_stage == "probe"
    assert "stage probe is missing from the candidate" in res.problems
    assert any("unknown stage 'bogus' in the candidate capture" in p for p in res.problems)
    assert res.stage("probe").verdict == "fail" and res.stage("bogus").verdict == "fail"
    assert [s.name for s in res.stages][-1] == "bogus"
    assert res.stage("canvas").verdict == "pass"


def test_shape_mismatch_names_both_shapes_and_never_broadcasts():
    ref, cand = captures()
    cand.stages["trimmed_object"] = cand.stages["trimmed_object"][:1]       # (1, 8, 8) would broadcast
    res = compare(ref, cand, TABLE)
    sr = res.stage("trimmed_object")
    assert sr.verdict == "fail" and sr.max_abs is None
    assert "shape mismatch: reference (2, 8, 8) vs candidate (1, 8, 8)" in sr.problem
    assert sr.message.splitlines() == [
        "case c1, stage trimmed_object: FAILED (structural)",
        "Shape mismatch: reference (2, 8, 8) vs candidate (1, 8, 8); arrays are never broadcast or reshaped",
        messages.STRUCTURAL_HINT,
    ]
    assert any("(2, 8, 8)" in p and "(1, 8, 8)" in p for p in res.problems)


def test_complex_vs_real_mismatch():
    ref, cand = captures()
    cand.stages["canvas"] = np.abs(cand.stages["canvas"])
    cand.stages["amp"] = cand.stages["amp"].astype(np.complex64)
    res = compare(ref, cand, TABLE)
    assert res.stage("canvas").problem == ("dtype kind mismatch: reference complex64 is complex but candidate "
                                           "float32 is real (stage canvas is complex)")
    assert "reference float32 is real but candidate complex64 is complex" in res.stage("amp").problem
    ref.stages["probe"] = ref.stages["probe"].real.copy()
    cand.stages["probe"] = cand.stages["probe"].real.copy()
    res = compare(ref, cand, TABLE)
    assert res.stage("probe").problem == "stage probe is complex but both captures hold float32/float32 arrays"


def test_unsupported_candidate_precision_fails_the_stage_without_raising():
    ref, cand = captures()
    cand.stages["amp"] = cand.stages["amp"].astype(np.float16)
    cand.stages["phase"] = cand.stages["phase"].astype(np.int32)
    res = compare(ref, cand, TABLE)
    assert "no tolerances for dtype float16" in res.stage("amp").problem
    assert "candidate dtype int32 is not floating point" in res.stage("phase").problem


def test_numeric_mismatch_never_raises():
    ref, cand = captures()
    for name, a in cand.stages.items():
        cand.stages[name] = np.full_like(a, np.nan)
    cand.stages["amp"][0, 0, 0, 0] = np.inf
    res = compare(ref, cand, TABLE)
    assert not res and all(s.verdict == "fail" for s in res.stages)
    assert res.stage("amp").nonfinite["cand_inf"] == 1


def test_programmer_errors_raise():
    ref, cand = captures()
    with pytest.raises(ValueError, match=r"tolerances name unknown stage\(s\) \['canvass'\]"):
        compare(ref, cand, {"canvass": Tolerance(0, 0, 0)})
    with pytest.raises(ValueError, match=r"no tolerance given for stage\(s\) \['latent'"):
        compare(ref, cand, {"input_scaled": Tolerance(0, 0, 0)})
    with pytest.raises(ValueError, match=r"unknown stage\(s\) \['ampp'\] in stages="):
        compare(ref, cand, TABLE, stages=["ampp"])
    with pytest.raises(ValueError, match=r"local names unknown stage\(s\) \['ampp'\]"):
        compare(ref, cand, TABLE, local={"ampp": np.zeros(1)})
    with pytest.raises(TypeError):
        compare([1], cand, TABLE)


def test_stage_subset_dict_tolerances_and_single_tolerance():
    ref, cand = captures()
    cand.stages["latent"] = cand.stages["latent"] + 1e-3
    res = compare(ref.stages, cand.stages, {"amp": Tolerance(0, 0, 0), "latent": Tolerance(0, 1e-2, 0)},
                  stages=["latent", "amp"], case="sub")
    assert [s.name for s in res.stages] == ["latent", "amp"] and res and res.name == "sub"
    res = compare(ref, cand, Tolerance(0, 0, 1e-2))
    assert res and res.stage("latent").tolerance["atol_scaled"] == 1e-2


def test_dtype_and_device_select_tolerances(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(TABLE_TEXT)
    table = load_tolerances(path)
    ref, cand = captures()
    cand.meta["device"] = "cuda:0"
    res = compare(ref, cand, table)
    assert res.device == "cuda:0" and res.stage("amp").tolerance["rtol"] == 1e-3
    res = compare(ref, cand, table, dtype="float64", device="cpu")
    assert res.stage("amp").tolerance["rtol"] == 1e-10 and res.dtype == "float64"


TABLE_TEXT = """
[defaults.float32]
rtol = 1e-5
atol = 0.0
atol_scaled = 1e-5
[defaults.float64]
rtol = 1e-10
atol = 0.0
atol_scaled = 1e-10
[device_overrides.cuda.float32."*"]
rtol = 1e-3
reason = "GPU"
"""


# --------------------------------------------------------------------------- labels and order
def test_root_cause_and_propagated_labels():
    ref, cand = captures()
    cand.stages["canvas"][1, 3, 4] += 0.5
    cand.stages["extracted_patches"][0, 1, 2, 3] += 0.5
    local = {"canvas": cand.stages["canvas"].copy(),                # the port's canvas is wrong by itself
             "extracted_patches": ref.stages["extracted_patches"].copy(),   # fine given the ref canvas
             "probe": ref.stages["probe"].copy()}
    res = compare(ref, cand, TABLE, local=local)
    assert res.stage("canvas").label == "root_cause"
    assert res.stage("extracted_patches").label == "propagated"
    assert res.stage("probe").label == "ok" and res.stage("probe").local_error == 0.0
    assert res.stage("canvas").local_error == pytest.approx(res.stage("canvas").margin)
    assert res.first_divergent_stage == "canvas" and res.root_cause_stage == "canvas"
    res = compare(ref, cand, TABLE)
    assert res.stage("canvas").label == "not_checked" and res.root_cause_stage is None


def test_local_failure_fails_a_stage_that_passes_end_to_end():
    ref, cand = captures()
    bad = ref.stages["probe"].copy()
    bad[0, 0] += 1.0
    res = compare(ref, cand, TABLE, local={"probe": bad})
    sr = res.stage("probe")
    assert sr.verdict == "fail" and sr.label == "root_cause" and sr.max_abs == 0.0
    assert res.root_cause_stage == "probe" and not res


def test_local_shape_mismatch_is_a_local_failure():
    ref, cand = captures()
    res = compare(ref, cand, TABLE, local={"probe": np.zeros((4, 4), np.complex64)})
    assert res.stage("probe").label == "root_cause"
    assert "reference (8, 8) vs local (4, 4)" in res.stage("probe").local["problem"]


def test_first_divergent_stage_follows_stage_order():
    ref, cand = captures()
    cand.stages["pred_amp"] += 1.0
    cand.stages["amp"] += 1.0
    res = compare(ref, cand, TABLE)
    assert res.first_divergent_stage == "amp"
    assert [s.name for s in res.failed] == ["amp", "pred_amp"]


def _nan_in(stage_names, seed=5):
    """Captures whose candidate differs by ~1e-7 relative and has one NaN in each named stage;
    the teacher-forced (local) stages are the candidate's without the NaN."""
    ref, cand = captures()
    rng = np.random.default_rng(seed)
    for name in stage_names:
        a = cand.stages[name]
        cand.stages[name] = (a * (1 + 1e-7 * rng.standard_normal(a.shape))).astype(a.dtype)
    local = {k: v.copy() for k, v in cand.stages.items()}
    for name in stage_names:
        cand.stages[name].flat[11] = np.nan
    return ref, cand, local


def test_nonfinite_stage_has_no_minimum_passing_tolerance():
    ref, cand, local = _nan_in(["amp"])
    res = compare(ref, cand, TABLE, local=local, case="c1")
    sr = res.stage("amp")
    assert not sr and sr.nonfinite["cand_nan"] == 1 and sr.margin < 1   # the finite elements pass
    assert sr.min_passing_tolerance is None and sr.to_dict()["min_passing_tolerance"] is None
    lines = sr.message.splitlines()
    assert "Minimum passing tolerance: none (non-finite values)" in lines
    assert not any("the current tolerance" in line for line in lines)
    # no earlier stage failed: the NaN is this stage's, not one propagated to it
    assert sr.label == "root_cause" and res.root_cause_stage == "amp" and res.first_divergent_stage == "amp"
    local_line = next(line for line in lines if line.startswith("Local (teacher-forced) comparison"))
    assert "propagated" not in local_line and local_line.endswith(
        "-> root cause (non-finite values end to end, none with the reference's inputs)")
    back = CaseResult.from_dict(json.loads(json.dumps(res.to_dict(), allow_nan=False)))
    assert back.stage("amp").min_passing_tolerance is None and back.stage("amp").message == sr.message


def test_nonfinite_values_after_an_earlier_failure_are_propagated():
    ref, cand, local = _nan_in(["amp", "object_patches"])
    res = compare(ref, cand, TABLE, local=local)
    assert res.stage("amp").label == "root_cause"
    sr = res.stage("object_patches")
    assert sr.label == "propagated" and sr.min_passing_tolerance is None
    assert "-> error propagated from an earlier stage" in sr.message
    assert res.root_cause_stage == "amp"


def test_nonfinite_stage_without_local_comparison_is_not_checked():
    ref, cand, _ = _nan_in(["amp"])
    sr = compare(ref, cand, TABLE).stage("amp")
    assert sr.label == "not_checked" and "Minimum passing tolerance: none (non-finite values)" in sr.message


# --------------------------------------------------------------------------- JSON
def test_to_dict_from_dict_round_trip_plain_json():
    ref, cand = captures()
    cand.stages["canvas"][0, 0, 0] = np.nan
    cand.stages["amp"][1, 2, 3, 4] += 0.25
    res = compare(ref, cand, TABLE, local={"amp": cand.stages["amp"]})
    d = res.to_dict()
    walk_types(d)
    text = json.dumps(d, allow_nan=False)
    back = CaseResult.from_dict(json.loads(text))
    assert back.to_dict() == d
    assert back.stage("amp").worst_index == (1, 2, 3, 4) and isinstance(back.stage("amp").worst_index, tuple)
    assert back.stage("canvas").nonfinite["cand_nan"] == 1
    assert isinstance(back.patch_stats["reference"]["amp"]["per_patch"]["mean"], np.ndarray)
    assert back.patch_errors["amp"]["worst"][0] == (1, 2, 0.25)
    assert d["schema"] == "parity.case_result" and d["schema_version"] == 1
    assert bool(back) is False and back.first_divergent_stage == "amp"


def test_nonfinite_numbers_are_encoded_as_strings():
    sr = StageResult(name="amp", verdict="fail", margin=math.inf, max_rel=math.nan)
    d = sr.to_dict()
    assert d["margin"] == "inf" and d["max_rel"] == "nan"
    back = StageResult.from_dict(d)
    assert back.margin == math.inf and math.isnan(back.max_rel)


def test_from_dict_rejects_other_documents():
    with pytest.raises(ValueError, match="not a parity.case_result v1 document"):
        CaseResult.from_dict({"schema": "other", "name": "x", "verdict": "pass"})


# --------------------------------------------------------------------------- messages
def test_stage_failure_message_line_by_line():
    ref = {"amp": np.ones((2, 4, 8, 8), np.float32)}
    cand = {"amp": ref["amp"].copy()}
    cand["amp"][1, 2, 3, 4] = 1.5
    cand["amp"][0, 1, 0, 0] = 1.25
    res = compare(ref, cand, TABLE, stages=["amp"], case="n64_g2_int")
    sr = res.stage("amp")
    lines = messages.format_stage_failure(res.name, sr, res.patch_errors["amp"]).splitlines()
    assert lines == [
        "case n64_g2_int, stage amp: FAILED "
        "(float32, tolerance rtol=1e-05 atol=0 atol_scaled=1e-05 [defaults.float32])",
        "Mismatched elements: 2 / 512 (0.39%)",
        "Greatest absolute difference: 0.5 at index (1, 2, 3, 4) (up to 2e-05 allowed)",
        "Greatest relative difference: 0.5 at index (1, 2, 3, 4) (up to 2e-05 allowed)",
        f"Relative L2 error: {math.sqrt(0.25 + 0.0625) / math.sqrt(512):.3g}; stage-relative max error: 0.5",
        "Minimum passing tolerance: rtol=0.25 atol=0 atol_scaled=0.25 (x2.5e+04 the current tolerance)",
        "ULP distance (float32 grid): max 4.19e+06, p99 0",
        "Worst patches (b, k: max abs): (1, 2: 0.5), (0, 1: 0.25)",
        messages.ACCEPT_HINT,
    ]
    assert sr.message == "\n".join(lines)


def test_message_optional_lines():
    ref = np.ones((2, 4, 8, 8)) + 0j
    ref[0, 0, 0, :2] = [0.0, 1e-9]
    cand = ref.copy()
    cand[1, 0, 1, 1] = 1j
    cand[1, 3, 0, 0] = np.nan
    res = compare({"exit_wave": ref}, {"exit_wave": cand}, {"exit_wave": Tolerance(0.0, 1e-3, 0.0)},
                  stages=["exit_wave"], case="c", local={"exit_wave": cand})
    lines = res.stage("exit_wave").message.splitlines()
    assert lines[0] == "case c, stage exit_wave: FAILED (complex128, tolerance rtol=0 atol=0.001 atol_scaled=0)"
    assert lines[1] == "Mismatched elements: 2 / 512 (0.39%)"
    assert ("Near-zero reference values: 1 exactly zero, 1 tiny (0 < |ref| <= 1e-06); "
            "not used for the relative difference") in lines
    assert (f"Amplitude difference: 0 at index (0, 0, 0, 0); phase difference (amplitude-weighted): "
            f"max {math.pi / 2:.3g} rad at index (1, 0, 1, 1), mean {math.pi / 2 / 509.000000001:.3g} rad") in lines
    assert "ULP distance (float64 grid): max 6.37e+15, p99 0" in lines
    assert "Local (teacher-forced) comparison: FAILED, margin 1.41e+03 -> root cause" in lines
    assert lines[-3] == "Worst patches (b, c: max abs): (1, 3: inf), (1, 0: 1.41)"   # NaN patch first
    assert lines[-2] == ("Non-finite: reference 0 NaN, 0 Inf; candidate 1 NaN, 0 Inf (1 elements); "
                         "NaN or Inf always fails")
    assert lines[-1] == messages.ACCEPT_HINT


def test_passing_stage_message_and_case_summary():
    ref, cand = captures()
    cand.stages["amp"][1, 2, 3, 4] += 0.25
    res = compare(ref, cand, TABLE, case="n8")
    assert res.stage("phase").message == ("case n8, stage phase: passed (float32, tolerance rtol=1e-05 atol=0 "
                                          "atol_scaled=1e-05 [defaults.float32]); margin 0, max abs difference 0")
    lines = res.summary().splitlines()
    assert lines[0] == "case n8: FAILED (1 of 15 stages failed; first divergent stage: amp)"
    assert lines[1].split() == ["stage", "verdict", "label", "margin", "max_abs", "rel_max", "rel_l2"]
    assert lines[4].split()[:3] == ["amp", "fail", "not_checked"]
    assert len(lines) == 2 + len(STAGE_NAMES)
    ok = compare(ref, captures()[1], TABLE, case="n8")
    assert ok.summary().splitlines()[0] == "case n8: passed (15 stages; largest margin 0 at stage input_scaled)"


def test_summary_lists_problems():
    ref, cand = captures()
    del cand.stages["loss_mae"]
    lines = compare(ref, cand, TABLE).summary().splitlines()
    assert lines[1:3] == ["Problems:", "  - stage loss_mae is missing from the candidate"]


def test_format_helpers():
    assert messages.fmt(None) == "n/a" and messages.fmt(math.inf) == "inf" and messages.fmt(0.0123) == "0.0123"
    assert messages.fmt(3.2e-05) == "3.2e-05" and messages.fmt(7) == "7"
    assert messages.fmt_percent(123 / 24336) == "0.51%" and messages.fmt_percent(1e-6) == "0.0001%"
    assert messages.fmt_index(()) == "()" and messages.fmt_index((1, 40, 41)) == "(1, 40, 41)"


def test_noise_floor_workflow_against_float64_oracle():
    from parity.tolerances import noise_floor_tolerances
    rng = np.random.default_rng(7)
    names = ["amp", "canvas"]
    oracle = {"amp": rng.standard_normal((2, 4, 8, 8)),
              "canvas": rng.standard_normal((2, 16, 16)) + 1j * rng.standard_normal((2, 16, 16))}
    noise = {k: 1e-6 * rng.standard_normal(v.shape) for k, v in oracle.items()}
    ref32 = {k: (oracle[k] + noise[k]).astype(np.complex64 if k == "canvas" else np.float32) for k in names}
    tols = noise_floor_tolerances(oracle, ref32)                              # k = 3
    good = {k: (oracle[k] + 2 * noise[k]).astype(ref32[k].dtype) for k in names}
    bad = {k: (oracle[k] + 10 * noise[k]).astype(ref32[k].dtype) for k in names}
    res = compare(oracle, good, tols, stages=names, case="floor")
    assert res, res.summary()
    assert res.stage("amp").tolerance["source"] == "noise_floor.amp" and res.stage("amp").ulp["grid"] == "float32"
    res = compare(oracle, bad, tols, stages=names, case="floor")
    assert not res and res.first_divergent_stage == "amp"
    assert "noise floor" in res.stage("amp").tolerance["reason"]
