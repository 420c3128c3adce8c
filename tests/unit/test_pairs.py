"""Pairs: any two registered sides, and a pair defined only in tests with a stage list of its
own (no edit of parity/stages.py), through run_case, the report and its recheck."""
import json

import pytest

from parity import pairs, sides
from parity.pairs import PairError, resolve_pair
from parity.report import hub as hub_mod
from parity.report.__main__ import main
from parity.run import run_case

TEST_SIDES = {"sqrt": "tests.helpers.sides:SqrtSide", "sqrt_buggy": "tests.helpers.sides:BuggySqrtSide"}


@pytest.fixture
def sqrt_pair():
    from tests.helpers.sides import sqrt_pair

    for name, target in TEST_SIDES.items():
        sides.register_side(name, target)
    pairs.register_pair("sqrt", sqrt_pair)
    yield
    for name in TEST_SIDES:
        sides.unregister_side(name)
    pairs._PAIRS.pop("sqrt", None)


def test_default_pair_and_spelling():
    p = resolve_pair(None)
    assert (p.reference, p.candidate, p.name) == ("reference_tf", "torch_impl", "reference_tf:torch_impl")
    assert resolve_pair("builtin").spec == "reference_tf:torch_impl"
    assert resolve_pair("torch_impl:reference_tf").reference == "torch_impl"  # any side takes either role
    for bad in ("a:b:c", ":torch_impl", "nope"):
        with pytest.raises(PairError):
            resolve_pair(bad)


def test_a_pair_with_its_own_stages_runs_and_localises(sqrt_pair):
    pair = resolve_pair("sqrt")
    assert "pred_sqrt" in pair.stage_names and "loss_mae" not in pair.stage_names
    clean = run_case("n64_g1", pair="sqrt:sqrt")  # the built-in cases, this pair's stages
    assert clean.result and [s.name for s in clean.result.stages] == list(pair.stage_names)
    assert all(s.max_abs == 0 for s in clean.result.stages)
    bug = run_case("n64_g1", pair="sqrt")
    res = bug.result
    assert not res and res.first_divergent_stage == "pred_sqrt" and res.root_cause_stage == "pred_sqrt"
    assert [s.name for s in res.stages if not s] == ["pred_sqrt"]


def test_the_report_and_its_recheck_take_the_pairs_stages(sqrt_pair, tmp_path):
    out = tmp_path / "hub"
    assert main(["--pair", "sqrt", "--case", "n64_g1", "--hub", str(out), "--no-figures"]) == 1
    doc = json.loads((out / hub_mod.REPORT_JSON).read_text())
    assert doc["pair"]["name"] == "sqrt" and "pred_sqrt" in doc["pair"]["stages"]
    case = doc["cases"][0]
    assert case["first_divergent_stage"] == "pred_sqrt" and case["sides"] == {"reference": "sqrt",
                                                                                 "candidate": "sqrt_buggy"}
    assert (out / "captures/n64_g1/candidate.sqrt_buggy.npz").is_file()
    again = tmp_path / "again"
    assert main(["--recheck", str(out), "--hub", str(again), "--no-figures"]) == 1
    redo = json.loads((again / hub_mod.REPORT_JSON).read_text())["cases"][0]
    assert [s["max_abs"] for s in redo["stages"]] == [s["max_abs"] for s in case["stages"]]
