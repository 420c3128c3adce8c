"""Backward parity through the engine, the pool and the report: a side without gradients, NaN
gradients, the --backward report and its bad input."""
import json

import numpy as np
import pytest

from parity import sides
from parity.run import run_case

TEST_SIDES = {"nograd": "tests.helpers.sides:NoGradSide", "nangrad": "tests.helpers.sides:NanGradSide"}


@pytest.fixture
def gradient_sides():
    for name, target in TEST_SIDES.items():
        sides.register_side(name, target)
    yield
    for name in TEST_SIDES:
        sides.unregister_side(name)


def test_backward_of_a_side_without_gradients_is_not_available(gradient_sides):
    run = run_case("n64_g1", pair="reference_tf:nograd", task="backward", isolation="workers")
    assert run.result.passed  # the forward is compared as usual
    b = run.backward
    assert b.verdict == "not_available" and "nograd" in b.reason and "no autograd" in b.reason
    assert run.candidate.meta["gradients"]["unavailable"] == "this test side has no autograd"


def test_backward_nan_gradients_fail_at_the_first_stage_they_appear(gradient_sides):
    run = run_case("n64_g1", pair="reference_tf:nangrad", task="backward", isolation="workers")
    assert run.result.passed  # exact forward
    for loss in ("loss_nll", "loss_mae"):
        lb = run.backward.losses[loss]
        assert lb.verdict == "fail"
        assert lb.adjoint.first_divergent_stage == "grad:exit_wave"
        assert next(iter(lb.nonfinite["candidate"])) == "exit_wave"
        assert lb.nonfinite["candidate"]["exit_wave"] == int(np.prod(lb.adjoint.stage("grad:exit_wave").shape))
        assert not lb.nonfinite["reference"]
    assert "NaN/Inf in the candidate's gradients" in run.backward.summary()
    assert "first at grad:exit_wave" in run.backward.summary()


def test_backward_report_cli(tmp_path, capsys):
    from parity.report.__main__ import main

    hub = tmp_path / "hub"
    code = main(["--backward", "--case", "n64_g1", "--hub", str(hub), "-q"])
    out = capsys.readouterr().out
    assert code == 0, out
    doc = json.loads((hub / "parity_report.json").read_text())
    assert doc["schema_version"] == 3 and doc["backward"]["verdict"] == "pass"
    case = doc["cases"][0]["backward"]
    assert case["verdict"] == "pass" and set(case["losses"]) == {"loss_nll", "loss_mae"}
    assert case["losses"]["loss_nll"]["stages"][0]["name"] == "grad:loss_nll"
    for rel in doc["backward"]["figures"].values():
        assert (hub / rel).is_file() and rel in doc["artifacts"]
    assert "Backward parity: PASS" in (hub / "index.html").read_text()
    assert "backward: PASS  1/1 cases passed" in out
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(doc, json.loads((hub / "parity_report.schema.json").read_text()))


def test_backward_with_recheck_is_bad_input(tmp_path, capsys):
    from parity.report.__main__ import main

    code = main(["--backward", "--recheck", str(tmp_path), "--hub", str(tmp_path / "new")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "--backward cannot be combined with --recheck" in err
    assert not (tmp_path / "new").exists()
