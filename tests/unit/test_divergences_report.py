"""Known divergences through the report, its recheck, JUnit, the page and ``parity show``.

One hub is written per module: the built-in pair's n64_g2 with the fault catalogue's
``merge_offset_sign`` planted in the port (canvas is the root cause, err/tol 1.65e4 as the
harness measured it; every later stage propagated) and a registry naming canvas. The other
tests recheck that hub (no model runs) under other registries, or recheck the clean one-case
hub of tests/unit/conftest.py.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from parity.faults import inject
from parity.inspection import show_main
from parity.report import hub as hub_mod
from parity.report.__main__ import main

CASE = "n64_g2"
PROPAGATED = ["trimmed_object", "extracted_patches", "exit_wave", "far_field_amp", "pred_amp", "pred_intensity",
              "loss_nll", "loss_mae"]
HEAD = 'pair = "reference_tf:torch_impl"\n'
CANVAS = """
[[divergence]]
id = "merge-sign"
cases = "n64_g2"
stage = "canvas"
reason = "planted: the port merges with +offsets (fault merge_offset_sign)"
where = "parity/faults/catalogue.py (merge_offset_sign)"
measured = {{ err_over_tol = {measured}, max_abs = 0.683, command = "python -m parity.report --case n64_g2 --isolation inprocess (fault merge_offset_sign)", date = "2026-12-01" }}
"""
AMP = CANVAS.replace('"merge-sign"', '"amp-gone"').replace('stage = "canvas"', 'stage = "amp"')


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def _doc(hub):
    return json.loads((hub / hub_mod.REPORT_JSON).read_text())


def _stage(case, name):
    return next(s for s in case["stages"] if s["name"] == name)


@pytest.fixture(scope="module")
def known_hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("divergences")
    registry = _write(tmp, "registry.toml", HEAD + CANVAS.format(measured=16508.75))
    hub = tmp / "hub"
    with inject("merge_offset_sign"):
        code = main(["--case", CASE, "--hub", str(hub), "--isolation", "inprocess", "--no-figures",
                     "--divergences", str(registry), "--junit", str(tmp / "junit.xml")])
    return {"hub": hub, "code": code, "doc": _doc(hub), "registry": registry, "junit": tmp / "junit.xml"}


def test_a_known_divergence_is_reported_as_known_and_the_run_passes(known_hub):
    doc = known_hub["doc"]
    assert known_hub["code"] == 0 and doc["verdict"] == "pass" and doc["schema_version"] == 3
    (case,) = doc["cases"]
    assert case["verdict"] == "known" and case["raw_verdict"] == "fail"
    assert case["root_cause_stage"] == "canvas" and case["first_divergent_stage"] == "canvas"
    canvas = _stage(case, "canvas")
    assert canvas["divergence"]["status"] == "known" and canvas["divergence"]["entry"] == "merge-sign"
    assert canvas["verdict"] == "fail" and canvas["margin"] > 1e4  # fully reported: the raw statistics stay
    for name in PROPAGATED:
        d = _stage(case, name)["divergence"]
        assert d["status"] == "known_propagated" and d["from"] == ["canvas"], (name, d)
    assert "divergence" not in _stage(case, "amp")
    assert doc["summary"]["known"] == 1 and doc["summary"]["failed"] == 0 and doc["summary"]["passed"] == 0
    block = doc["divergences"]
    assert block["files"][-1]["path"] == str(known_hub["registry"]) and len(block["files"][-1]["sha256"]) == 64
    assert block["applied"][CASE]["entries"][0]["status"] == "known" and block["unused"] == []


def test_the_known_hub_validates_against_its_schema(known_hub):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((known_hub["hub"] / hub_mod.SCHEMA_JSON).read_text())
    jsonschema.validate(known_hub["doc"], schema)


def test_junit_and_page_say_known(known_hub):
    tc = ET.parse(known_hub["junit"]).getroot().find(".//testcase")
    skipped = tc.find("skipped")
    assert skipped is not None and tc.find("failure") is None
    assert "known divergence 'merge-sign'" in skipped.get("message")
    page = (known_hub["hub"] / hub_mod.INDEX_HTML).read_text()
    assert "Known divergences" in page and "merge-sign" in page and "KNOWN" in page


def test_recheck_applies_the_recorded_registry(known_hub, tmp_path):
    out = tmp_path / "again"
    assert main(["--recheck", str(known_hub["hub"]), "--hub", str(out), "--no-figures", "-q"]) == 0
    doc = _doc(out)
    assert doc["cases"][0]["verdict"] == "known"
    assert doc["divergences"]["entries"] == known_hub["doc"]["divergences"]["entries"]


def test_without_the_entry_the_divergence_is_new_and_fails(known_hub, tmp_path, capsys):
    out = tmp_path / "raw"
    assert main(["--recheck", str(known_hub["hub"]), "--hub", str(out), "--no-figures", "--no-divergences"]) == 1
    case = _doc(out)["cases"][0]
    assert case["verdict"] == "fail" and "divergences" not in case and _doc(out)["divergences"]["enabled"] is False
    out = tmp_path / "empty"
    empty = _write(tmp_path, "empty.toml", HEAD)
    assert main(["--recheck", str(known_hub["hub"]), "--hub", str(out), "--no-figures", "-q",
                 "--divergences", str(empty)]) == 1
    assert _doc(out)["cases"][0]["verdict"] == "fail"


def test_an_entry_whose_stage_passes_is_fixed_and_fails(known_hub, tmp_path, capsys):
    reg = _write(tmp_path, "fixed.toml", HEAD + CANVAS.format(measured=16508.75) + AMP.format(measured=5.0))
    out = tmp_path / "fixed"
    assert main(["--recheck", str(known_hub["hub"]), "--hub", str(out), "--no-figures",
                 "--divergences", str(reg)]) == 1
    text = capsys.readouterr().out
    assert "amp: fixed: remove the entry 'amp-gone'" in text and "FIXED" in text
    doc = _doc(out)
    assert doc["cases"][0]["verdict"] == "fixed" and doc["verdict"] == "fail" and doc["summary"]["fixed"] == 1
    assert any("fixed: remove the entry" in r for r in doc["verdict_reasons"])


def test_a_known_divergence_that_grew_fails(known_hub, tmp_path, capsys):
    reg = _write(tmp_path, "grown.toml", HEAD + CANVAS.format(measured=1000.0))
    out = tmp_path / "grown"
    assert main(["--recheck", str(known_hub["hub"]), "--hub", str(out), "--no-figures",
                 "--divergences", str(reg)]) == 1
    assert "known divergence 'merge-sign' grew from err/tol 1e+03 to 1.65e+04" in capsys.readouterr().out
    case = _doc(out)["cases"][0]
    assert case["verdict"] == "fail" and _stage(case, "canvas")["divergence"]["status"] == "grown"


@pytest.mark.parametrize("text, extra, words", [
    (HEAD + CANVAS.format(measured=10.0).replace('"canvas"', '"canvs"'), [], ["stage 'canvs' is not a stage"]),
    (HEAD + CANVAS.format(measured=10.0).replace('"n64_g2"', '"n65*"'), [], ["'n65*' matches no case"]),
    (HEAD + CANVAS.format(measured=10.0).replace("reason =", "reasons ="), [], ["unknown key(s) reasons"]),
    ('pair = "example"\n', [], ["is for pair 'example'"]),
    (HEAD, ["--no-divergences"], ["either --divergences FILE or --no-divergences"]),
])
def test_bad_registry_exits_2_with_one_line_and_writes_nothing(known_hub, tmp_path, capsys, text, extra, words):
    reg = _write(tmp_path, "bad.toml", text)
    out = tmp_path / "never"
    assert main(["--recheck", str(known_hub["hub"]), "--hub", str(out), "--divergences", str(reg), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for w in words:
        assert w in err, err
    assert not out.exists()


def test_parity_show_tolerates_the_known_divergence(known_hub, capsys):
    hub = str(known_hub["hub"])
    assert show_main([hub]) == 0
    assert show_main([hub, CASE]) == 0
    text = capsys.readouterr().out
    assert "known divergences: verdict KNOWN (without them: FAIL)" in text
    assert "pred_amp: known propagated: known (propagated from canvas)" in text
    assert show_main([hub, CASE, "canvas"]) == 0
    assert "known: known divergence 'merge-sign'" in capsys.readouterr().out


def test_an_empty_registry_changes_nothing_in_the_report(one_case_hub, tmp_path):
    """With no entry for the pair (the built-in pair ships none), the case entries and the
    summary figure are exactly those of the raw verdicts (--no-divergences)."""
    a, b = tmp_path / "shipped", tmp_path / "raw"
    assert main(["--recheck", str(one_case_hub["root"]), "--hub", str(a), "-q"]) == 0
    assert main(["--recheck", str(one_case_hub["root"]), "--hub", str(b), "-q", "--no-divergences"]) == 0
    da, db = _doc(a), _doc(b)
    assert da["divergences"]["enabled"] and da["divergences"]["entries"] == []
    strip = lambda cases: [{k: v for k, v in c.items() if k != "timings"} for c in cases]  # noqa: E731
    assert strip(da["cases"]) == strip(db["cases"])
    assert [s for s in da["cases"][0]["stages"]] == [s for s in one_case_hub["doc"]["cases"][0]["stages"]]
    assert (a / hub_mod.SUMMARY_PNG).read_bytes() == (b / hub_mod.SUMMARY_PNG).read_bytes()
    assert da["summary"] == db["summary"] and da["verdict"] == db["verdict"] == "pass"


def test_a_run_with_a_bad_registry_is_refused_before_anything_runs(tmp_path, capsys, monkeypatch):
    """Also outside a recheck, and for a broken shipped file: one line naming it, exit 2, no hub."""
    import parity.engine as engine
    import parity.divergences.registry as registry

    monkeypatch.setattr(engine.Engine, "run", lambda *a, **k: pytest.fail("a model was run"))
    bad = _write(tmp_path, "bad.toml", HEAD + CANVAS.format(measured=10.0).replace("where =", "were ="))
    out = tmp_path / "never"
    assert main(["--case", CASE, "--hub", str(out), "--divergences", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown key(s) were" in err and str(bad) in err and not out.exists()
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    _write(shipped, "reference_tf-torch_impl.toml", HEAD + "[[divergence]]\ncases = 3\n")
    monkeypatch.setattr(registry, "SHIPPED_DIR", shipped)
    assert main(["--case", CASE, "--hub", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "reference_tf-torch_impl.toml: divergence #1: missing" in err
    assert not out.exists()
