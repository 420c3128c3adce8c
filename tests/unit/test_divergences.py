"""parity.divergences without a model: the registry files and their checks, and the judgement of
a case (known, known_propagated, new, propagated, grown, fixed) on case entries built by hand
over the built-in pair's stage graph."""
from __future__ import annotations

import copy

import pytest

from parity import divergences as dv
from parity.pairs import resolve_pair
from parity.stages import STAGES

PAIR = resolve_pair(None)  # reference_tf:torch_impl
GRAPH = dv.stage_graph(STAGES)
DOWNSTREAM_OF_CANVAS = ["trimmed_object", "extracted_patches", "exit_wave", "far_field_amp", "pred_amp",
                        "pred_intensity", "loss_nll", "loss_mae"]

ENTRY = """
[[divergence]]
id = "merge-sign"
cases = "n64_g2*"
stage = "canvas"
reason = "the port merges with the wrong offset sign"
where = "torch_impl/physics.py:120 (merge_patches)"
measured = {{ err_over_tol = {measured}, max_abs = 0.68, command = "python -m parity.report --case n64_g2", date = "2026-12-01" }}
{extra}
"""


def _registry(tmp_path, body: str, *, pair: str = PAIR.name, shipped_dir=None, name="reg.toml"):
    path = tmp_path / name
    path.write_text(f'pair = "{pair}"\n' + body)
    return dv.registry_for(PAIR, extra=path, shipped_dir=shipped_dir or tmp_path / "none"), path


def _case(fails=(), *, name="n64_g2", dtype="float32", local_fails=(), margin=200.0, nan=()):
    """A case entry: stages in ``fails`` fail end to end (err/tol ``margin``); those also in
    ``local_fails`` fail when teacher-forced (root causes), the others are propagated."""
    stages = []
    for st in STAGES:
        failing = st.name in fails
        root = st.name in local_fails
        stages.append({"name": st.name, "verdict": "fail" if failing else "pass",
                       "label": ("root_cause" if root else "propagated") if failing else "ok",
                       "margin": margin if failing else 0.01, "local_error": margin if root else 0.01,
                       "nonfinite": {"elements": 5 if st.name in nan else 0}})
    return {"name": name, "key": name, "dtype": dtype, "verdict": "fail" if fails else "pass", "problems": [],
            "stages": stages}


def _status(case, stage):
    return (next(s for s in case["stages"] if s["name"] == stage).get("divergence") or {}).get("status")


# --------------------------------------------------------------------------- judgement
def test_known_root_cause_and_its_propagated_stages(tmp_path):
    reg, _ = _registry(tmp_path, ENTRY.format(measured=150.0, extra=""))
    case = _case(["canvas"] + DOWNSTREAM_OF_CANVAS, local_fails=["canvas"])
    got = dv.judge_case(case, reg, GRAPH)
    assert got["verdict"] == case["verdict"] == "known" and case["raw_verdict"] == "fail"
    assert _status(case, "canvas") == "known"
    for s in DOWNSTREAM_OF_CANVAS:
        assert _status(case, s) == "known_propagated"
        d = next(x for x in case["stages"] if x["name"] == s)["divergence"]
        assert d["from"] == ["canvas"] and "propagated from canvas" in d["message"]
    assert _status(case, "amp") is None  # a passing unregistered stage is left as it was
    assert [a["status"] for a in case["divergences"]] == ["known"]
    # still fully reported: the statistics of the stage are untouched
    assert next(s for s in case["stages"] if s["name"] == "canvas")["margin"] == 200.0


def test_unregistered_root_cause_is_new_and_fails(tmp_path):
    reg, _ = _registry(tmp_path, ENTRY.format(measured=150.0, extra=""))
    case = _case(["canvas", "probe", "exit_wave"], local_fails=["canvas", "probe"])
    dv.judge_case(case, reg, GRAPH)
    assert case["verdict"] == "fail"
    assert _status(case, "probe") == "new" and _status(case, "canvas") == "known"
    d = next(s for s in case["stages"] if s["name"] == "exit_wave")["divergence"]
    assert d["status"] == "propagated" and d["from"] == ["probe"] and "no entry registers" in d["message"]


def test_registered_stage_that_passes_is_fixed_and_fails(tmp_path):
    reg, _ = _registry(tmp_path, ENTRY.format(measured=150.0, extra=""))
    case = _case([])
    dv.judge_case(case, reg, GRAPH)
    assert case["verdict"] == "fixed" and case["raw_verdict"] == "pass"
    (applied,) = case["divergences"]
    assert applied["status"] == "fixed" and "fixed: remove the entry 'merge-sign'" in applied["message"]
    assert not dv.verdict_ok(case["verdict"])


def test_registered_stage_that_passes_locally_is_fixed(tmp_path):
    """The registered stage now fails only because an earlier stage does: its own divergence is gone."""
    reg, _ = _registry(tmp_path, ENTRY.format(measured=150.0, extra=""))
    case = _case(["object_patches", "canvas"], local_fails=["object_patches"])
    dv.judge_case(case, reg, GRAPH)
    assert _status(case, "canvas") == "fixed" and _status(case, "object_patches") == "new"
    assert case["verdict"] == "fail"


@pytest.mark.parametrize("measured, factor, status", [(150.0, "", "known"), (19.0, "", "grown"),
                                                       (19.0, "grow_factor = 20", "known"),
                                                       (150.0, "grow_factor = 1.4", "known"),
                                                       (100.0, "grow_factor = 1.5", "grown")])
def test_a_known_divergence_that_grew_fails(tmp_path, measured, factor, status):
    reg, _ = _registry(tmp_path, ENTRY.format(measured=measured, extra=factor))
    case = _case(["canvas"], local_fails=["canvas"], margin=200.0)
    dv.judge_case(case, reg, GRAPH)
    assert _status(case, "canvas") == status
    assert case["verdict"] == ("known" if status == "known" else "fail")
    if status == "grown":
        assert f"grew from err/tol {measured:g} to 200" in case["divergences"][0]["message"]


def test_nan_never_counts_as_known(tmp_path):
    reg, _ = _registry(tmp_path, ENTRY.format(measured=150.0, extra=""))
    case = _case(["canvas", "trimmed_object"], local_fails=["canvas"], nan=["canvas"])
    dv.judge_case(case, reg, GRAPH)
    assert _status(case, "canvas") == "new" and case["verdict"] == "fail"
    case = _case(["canvas", "trimmed_object"], local_fails=["canvas"], nan=["trimmed_object"])
    dv.judge_case(case, reg, GRAPH)
    assert _status(case, "canvas") == "known" and _status(case, "trimmed_object") == "new"
    assert case["verdict"] == "fail"


def test_not_teacher_forced_stage_is_not_assumed_propagated(tmp_path):
    reg, _ = _registry(tmp_path, ENTRY.format(measured=150.0, extra=""))
    case = _case(["canvas", "trimmed_object"], local_fails=["canvas"])
    next(s for s in case["stages"] if s["name"] == "trimmed_object")["label"] = "not_checked"
    dv.judge_case(case, reg, GRAPH)
    assert _status(case, "trimmed_object") == "new" and case["verdict"] == "fail"


def test_a_case_no_entry_matches_is_left_exactly_as_it_was(tmp_path):
    reg, _ = _registry(tmp_path, ENTRY.format(measured=150.0, extra=""))
    for case in (_case(["canvas"], name="n64_g1", local_fails=["canvas"]), _case([], name="n64_g1")):
        before = copy.deepcopy(case)
        assert dv.judge_case(case, reg, GRAPH) is None and case == before


def test_dtype_restricts_an_entry(tmp_path):
    reg, _ = _registry(tmp_path, ENTRY.format(measured=150.0, extra='dtype = "float32"'))
    case = _case(["canvas"], dtype="float64", local_fails=["canvas"])
    assert dv.judge_case(case, reg, GRAPH) is None and case["verdict"] == "fail"
    case = _case(["canvas"], dtype="float32", local_fails=["canvas"])
    assert dv.judge_case(case, reg, GRAPH)["verdict"] == "known"


def test_a_disabled_registry_applies_nothing(tmp_path):
    reg = dv.registry_for(PAIR, enabled=False)
    case = _case(["canvas"], local_fails=["canvas"])
    block = dv.judge_cases([case], reg, STAGES)
    assert case["verdict"] == "fail" and "divergences" not in case
    assert block["enabled"] is False and block["applied"] == {} and block["counts"]["fail"] == 1


def test_judge_cases_block_records_files_entries_and_unused(tmp_path):
    body = ENTRY.format(measured=150.0, extra="") + ENTRY.format(measured=3.0, extra="").replace(
        '"merge-sign"', '"probe-norm"').replace('stage = "canvas"', 'stage = "probe"').replace('"n64_g2*"', '"n128*"')
    reg, path = _registry(tmp_path, body)
    cases = [_case(["canvas"], local_fails=["canvas"]), _case([], name="n64_g1")]
    block = dv.judge_cases(cases, reg, STAGES)
    assert block["files"][0]["path"] == str(path) and len(block["files"][0]["sha256"]) == 64
    assert block["files"][0]["origin"] == "given"
    assert [e["id"] for e in block["entries"]] == ["merge-sign", "probe-norm"]
    assert block["unused"] == ["probe-norm"] and list(block["applied"]) == ["n64_g2"]
    assert block["counts"] == {"pass": 1, "known": 1, "fixed": 0, "fail": 0}
    again = dv.Registry.from_dict(block)  # what a recheck applies
    assert [e.to_dict() for e in again.entries] == block["entries"]


# --------------------------------------------------------------------------- the files
def test_given_file_replaces_a_shipped_entry_and_adds_others(tmp_path):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / dv.file_name(PAIR.name)).write_text(f'pair = "{PAIR.name}"\n' + ENTRY.format(measured=150.0, extra=""))
    assert dv.file_name(PAIR.name) == "reference_tf-torch_impl.toml"
    only = dv.registry_for(PAIR, shipped_dir=shipped)
    assert [e.err_over_tol for e in only.entries] == [150.0] and only.files[0]["origin"] == "shipped"
    body = ENTRY.format(measured=99.0, extra="") + ENTRY.format(measured=3.0, extra="").replace(
        '"merge-sign"', '"other"').replace('stage = "canvas"', 'stage = "probe"')
    reg, _ = _registry(tmp_path, body, shipped_dir=shipped)
    assert [(e.id, e.err_over_tol) for e in reg.entries] == [("merge-sign", 99.0), ("other", 3.0)]
    assert [f["origin"] for f in reg.files] == ["shipped", "given"]


def test_no_shipped_file_is_an_empty_registry_that_says_so():
    reg = dv.registry_for(PAIR)
    assert reg.entries == () and reg.enabled and "no shipped registry for pair reference_tf:torch_impl" in reg.note


GOOD = ('cases = "n64_g2"\nstage = "canvas"\nreason = "r"\nwhere = "w"\n'
        'measured = { err_over_tol = 5.0, command = "parity report --case n64_g2", date = "2026-12-01" }\n')


@pytest.mark.parametrize("body, words", [
    ("[[divergence]]\n" + GOOD + "colour = 1\n", ["divergence #1", "unknown key(s) colour", "allowed are"]),
    ("[[divergence]]\n" + GOOD.replace('reason = "r"\n', ""), ["divergence #1", "missing reason"]),
    ("[[divergence]]\n" + GOOD.replace('"canvas"', '"canvass"'), ["stage 'canvass' is not a stage of pair",
                                                                  "its stages are input_scaled"]),
    ("[[divergence]]\n" + GOOD.replace('"n64_g2"', '"n999*"'), ["'n999*' matches no case of pair", "n64_g1"]),
    ("[[divergence]]\n" + GOOD.replace("err_over_tol = 5.0", "err_over_tol = 0.5"), ["err_over_tol must be"]),
    ("[[divergence]]\n" + GOOD.replace("err_over_tol = 5.0", 'err_over_tol = "nan"'), ["err_over_tol must be"]),
    ("[[divergence]]\n" + GOOD.replace(', command = "parity report --case n64_g2"', ""), ["measured lacks command"]),
    ("[[divergence]]\n" + GOOD.replace("date =", "when ="), ["unknown key(s) when in measured"]),
    ("[[divergence]]\n" + GOOD.replace('command = "parity report --case n64_g2"', 'command = "forward-model.md says so"'),
     ["is not a command of the harness"]),
    ("[[divergence]]\n" + GOOD.replace('"2026-12-01"', '"last week"'), ["must be a date YYYY-MM-DD"]),
    ("[[divergence]]\n" + GOOD + 'dtype = "float16"\n', ["dtype 'float16'", "float32, float64"]),
    ("[[divergence]]\n" + GOOD + "grow_factor = 0.5\n", ["grow_factor must be"]),
    ("[[divergence]]\n" + GOOD + "[[divergence]]\n" + GOOD.replace('"n64_g2"', '"n64_g*"'),
     ["both claim stage canvas of case n64_g2"]),
    ("[[divergence]]\n" + GOOD + 'id = "x"\n' + "[[divergence]]\n" + GOOD.replace('"canvas"', '"probe"') + 'id = "x"\n',
     ["two entries have the id 'x'"]),
    ("[[divergence]\n", ["not valid TOML"]),
    ("tolerance = 3\n", ["unknown top-level key(s) tolerance"]),
])
def test_bad_registry_files_are_one_line_errors(tmp_path, body, words):
    with pytest.raises(dv.DivergenceError) as err:
        _registry(tmp_path, body)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "reg.toml") in msg
    for w in words:
        assert w in msg, msg


def test_a_file_for_another_pair_is_refused(tmp_path):
    with pytest.raises(dv.DivergenceError, match="the file is for pair 'ptycho:ptycho_torch' but this run's pair is"):
        _registry(tmp_path, "", pair="ptycho:ptycho_torch")


def test_a_toml_date_is_accepted(tmp_path):
    reg, _ = _registry(tmp_path, "[[divergence]]\n" + GOOD.replace('"2026-12-01"', "2026-12-01"))
    assert reg.entries[0].measured["date"] == "2026-12-01"


# --------------------------------------------------------------------------- shapes and errors
SHAPE_ENTRY = """
[[divergence]]
id = "canvas-size"
cases = "n64_g1"
stage = "canvas"
reason = "the candidate's canvas has no buffer"
where = "somewhere.py:1"
measured = {{ {what}, command = "python -m parity.report --case n64_g1", date = "2026-12-01" }}
"""
MISMATCH = "shape mismatch: reference (8, 74, 74) vs candidate (8, 64, 64); arrays are never broadcast or reshaped"


def _shape_case(problem=MISMATCH):
    case = _case(["canvas"] if problem else [], name="n64_g1", local_fails=["canvas"] if problem else [])
    canvas = next(s for s in case["stages"] if s["name"] == "canvas")
    if problem:
        canvas.update(margin=None, local_error=None, label="not_checked", problem=problem)
        case["problems"] = [f"stage canvas: {problem}"]
    return case


def test_a_registered_shape_mismatch_is_known_until_the_shapes_agree_or_change(tmp_path):
    reg, _ = _registry(tmp_path, SHAPE_ENTRY.format(what='shape = "reference (8, 74, 74) vs candidate (8, 64, 64)"'))
    case = _shape_case()
    assert dv.judge_case(case, reg, GRAPH)["verdict"] == "known" and _status(case, "canvas") == "known"
    changed = _shape_case(MISMATCH.replace("(8, 64, 64)", "(8, 68, 68)"))
    assert dv.judge_case(changed, reg, GRAPH)["verdict"] == "fail" and _status(changed, "canvas") == "grown"
    agree = _shape_case(problem=None)
    got = dv.judge_case(agree, reg, GRAPH)
    assert got["verdict"] == "fixed" and "the shapes agree now" in got["entries"][0]["message"]


def test_a_registered_error_makes_a_case_that_raises_known_and_fixed_when_it_runs(tmp_path):
    reg, _ = _registry(tmp_path, SHAPE_ENTRY.format(what='error = "ExtractPatchesPositionLayer"'))
    crashed = {"name": "n64_g1", "key": "n64_g1", "dtype": "float32", "verdict": "fail", "stages": [],
               "error": "side ptycho: AssertionError in ExtractPatchesPositionLayer.call()"}
    assert dv.judge_case(crashed, reg, GRAPH)["verdict"] == "known" and crashed["raw_verdict"] == "fail"
    other = dict(crashed, error="side ptycho: worker died (exit code 9)", verdict="fail")
    assert dv.judge_case(other, reg, GRAPH) is None and other["verdict"] == "fail"  # another crash stays a failure
    runs = _case([], name="n64_g1")
    got = dv.judge_case(runs, reg, GRAPH)
    assert got["verdict"] == "fixed" and "the case runs now" in got["entries"][0]["message"]


def test_measured_names_exactly_one_size(tmp_path):
    with pytest.raises(dv.DivergenceError, match="exactly one of err_over_tol"):
        _registry(tmp_path, SHAPE_ENTRY.format(what='shape = "a", error = "b"'))
    with pytest.raises(dv.DivergenceError, match="gives no size"):
        _registry(tmp_path, SHAPE_ENTRY.format(what='max_abs = 1.0'))
