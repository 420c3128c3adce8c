"""The report's --train-steps section: JSON (schema-valid), figure, page and terminal line; bad
training flags are one line and exit 2 with nothing written; without the flags the report
holds no trace of them."""
from __future__ import annotations

import json

import pytest

from parity.report import ReportOptions
from parity.report import hub as hub_mod
from parity.report.__main__ import main

jsonschema = pytest.importorskip("jsonschema")

CASE = "n64_g1_f64_mask"  # float64, two samples: two runs of two steps


@pytest.fixture(scope="module")
def trained_hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("train") / "hub"
    code = main(["--case", CASE, "--hub", str(root), "--train-steps", "2", "--train-batches", "split", "-q"])
    return {"root": root, "code": code, "doc": json.loads((root / hub_mod.REPORT_JSON).read_text())}


def test_training_section_in_the_report(trained_hub, capsys):
    doc, root = trained_hub["doc"], trained_hub["root"]
    assert trained_hub["code"] == 0, doc["verdict_reasons"]
    t = doc["training"]
    assert t["schema"] == "parity.training" and t["status"] == "decided" and t["verdict"] == "pass"
    assert (t["case"], t["dtype"], t["steps"], t["batches"], t["tolerance_mode"]) == (CASE, "float64", 2, "split",
                                                                                       "table")
    assert t["settings"]["adam"] == {"learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
    assert len(t["losses"]["reference"]) == 2 and len(t["per_step"]) == 2 and t["max_loss_rel_diff"] < 1e-13
    assert (root / t["figure"]).is_file() and t["figure"] in doc["artifacts"]
    assert (root / t["figure"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    schema = json.loads((root / hub_mod.SCHEMA_JSON).read_text())
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    page = (root / hub_mod.INDEX_HTML).read_text()
    assert f"Training steps ({CASE}, float64, K=2): PASS" in page and t["figure"] in page
    assert doc["config"]["options"]["train_steps"] == 2


def test_training_line_in_the_terminal_summary(trained_hub):
    from parity.report.__main__ import summary_table
    from parity.report.training import summary_line

    lines = summary_table(trained_hub["doc"]).splitlines()
    assert any(ln.startswith(f"training {CASE} float64 loss_nll K=2: PASS; loss curves' largest relative difference")
               for ln in lines), lines
    assert summary_line({"status": "unavailable", "case": "c", "dtype": "float32", "steps": 3,
                         "reason": "side 'x' cannot run training steps: why"}) == \
        "training c float32 K=3: unavailable (side 'x' cannot run training steps: why)"


def test_without_training_flags_the_options_record_nothing_of_them():
    d = ReportOptions().to_dict()
    assert not [k for k in d if k.startswith("train")]
    assert ReportOptions(train_steps=3).to_dict()["train_batches"] == "seeded:20"


@pytest.mark.parametrize("args, words", [
    (["--train-steps", "21"], ["--train-steps 21 is more than the 20 batches", "allowed are 1..20"]),
    (["--train-steps", "3", "--train-batches", "split"], ["more than the 2 batches", "split", "1..2"]),
    (["--train-steps", "0"], ["--train-steps must be a whole number >= 1"]),
    (["--train-steps", "2", "--train-batches", "seeded:0"], ["--train-batches", "seeded:N", "split"]),
    (["--train-steps", "2", "--train-case", "nope"], ["unknown --train-case 'nope'", "n64_g2"]),
    (["--train-steps", "2", "--train-loss", "loss_l2"], ["--train-loss", "loss_nll", "loss_mae"]),
    (["--train-steps", "two"], ["--train-steps", "invalid int value"]),
    (["--train-steps", "2", "--recheck", "{missing}"], ["--train-steps cannot be combined with --recheck"]),
])
def test_bad_training_flags_exit_2_with_one_line(args, words, tmp_path, capsys):
    out = tmp_path / "out"
    args = [str(tmp_path / "missing") if a == "{missing}" else a for a in args]
    base = [] if "--recheck" in args else ["--case", CASE]
    assert main([*base, "--hub", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for w in words:
        assert w in err[0], (w, err[0])
    assert not out.exists()
