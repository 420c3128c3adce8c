"""parity.report end to end: the hub, the JSON contract, exit codes, refusal, recheck, drift,
interruption, figures, the page and --help.

One hub is generated per session (``--case n64_g1 --devices cpu,cuda --junit``, with the figure
worker) and reused; the other tests recheck it (no model runs) or run one small case with
``--no-figures``.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from parity.report import hub as hub_mod
from parity.report.__main__ import build_parser, main
from parity.jsonable import decode_float

jsonschema = pytest.importorskip("jsonschema")

CASE = "n64_g1"
TIGHT = """
[defaults.float32]
rtol = 0.0
atol = 0.0
atol_scaled = 1e-12

[defaults.float64]
rtol = 0.0
atol = 0.0
atol_scaled = 1e-18
"""


def _snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _no_models(monkeypatch):
    """Make any attempt to run a side fail loudly."""
    import parity.engine as engine
    import parity.jobs as jobs
    import parity.pool as pool

    def boom(*a, **k):
        raise AssertionError("a model was run")

    monkeypatch.setattr(jobs, "execute", boom)
    monkeypatch.setattr(engine, "execute", boom)
    monkeypatch.setattr(pool.WorkerPool, "submit", boom)


@pytest.fixture(scope="session")
def session_hub(tmp_path_factory):
    """A hub holding the user's own files before the report is written into it."""
    root = tmp_path_factory.mktemp("report") / "hub"
    (root / "plans").mkdir(parents=True)
    (root / "plans" / "plan.md").write_text("my plan\n")
    (root / "analysis").mkdir()
    (root / "analysis" / "artifact_inventory.txt").write_text("user inventory\n")
    junit = root.parent / "junit.xml"
    code = main(["--case", CASE, "--devices", "cpu,cuda", "--hub", str(root), "--junit", str(junit)])
    doc = json.loads((root / hub_mod.REPORT_JSON).read_text())
    return {"root": root, "code": code, "doc": doc, "junit": junit}


@pytest.fixture
def tight_toml(tmp_path):
    p = tmp_path / "tight.toml"
    p.write_text(TIGHT)
    return p


# --------------------------------------------------------------------------- the hub
def test_run_writes_the_hub(session_hub):
    root, doc = session_hub["root"], session_hub["doc"]
    assert session_hub["code"] == 0
    assert doc["verdict"] == "pass" and doc["parity_verdict"] == "pass"
    assert not (root / hub_mod.RUNNING).exists()
    for rel in (hub_mod.REPORT_JSON, hub_mod.SCHEMA_JSON, hub_mod.INDEX_HTML, hub_mod.SUMMARY_PNG, hub_mod.CONFIG_JSON,
                "analysis/reference_patch_stats.json", "analysis/candidate_patch_stats.json",
                "analysis/reference_patch_grid.png", "analysis/candidate_patch_grid.png",
                f"captures/{CASE}/reference.reference_tf.npz", f"captures/{CASE}/candidate.torch_impl.npz",
                f"captures/{CASE}/local.torch_impl.npz", f"analysis/{CASE}/error_by_stage.png"):
        assert (root / rel).is_file(), rel
    for stage in ("amp", "phase", "canvas", "exit_wave", "far_field_amp"):
        assert (root / f"analysis/{CASE}/{stage}.png").is_file()
    # every listed artifact exists; the user's files are untouched and not listed
    assert all((root / rel).is_file() for rel in doc["artifacts"])
    assert (root / "plans" / "plan.md").read_text() == "my plan\n"
    assert (root / "analysis" / "artifact_inventory.txt").read_text() == "user inventory\n"
    assert "plans/plan.md" not in doc["artifacts"]


def test_case_entry_contract(session_hub):
    doc = session_hub["doc"]
    case = next(c for c in doc["cases"] if c["device"] == "cpu")
    assert case["name"] == CASE and case["dtype"] == "float32" and case["config"]["gridsize"] == 1
    from parity.stages import STAGE_NAMES

    assert [s["name"] for s in case["stages"]] == list(STAGE_NAMES)
    fields = {"name", "shape", "dtype", "verdict", "tolerance", "max_abs", "max_rel", "rel_l2", "mismatch_fraction",
              "worst_index", "min_passing_tolerance", "local_error", "label"}
    for st in case["stages"]:
        assert fields <= set(st)
    t = case["timings"]
    for k in ("prepare_s", "import_s", "build_s", "forward_s", "local_s", "compare_s", "figures_s", "write_s",
              "other_s", "total_s"):
        assert k in t
    top = doc["timings"]
    assert 0 < top["forward_s"] < top["wall_s"] and 0 <= top["harness_fraction"] < 1
    prov = doc["provenance"]
    assert prov["tensorflow"] and prov["torch"] and prov["fixture_hashes"] and prov["command"].startswith("python -m")
    assert "TF_ENABLE_ONEDNN_OPTS" in prov and prov["isolation"] == "workers" and prov["tolerance_mode"] == "per_case"
    assert case["tolerance_mode"] == "table" and case["isolation"] == "workers"
    # a case entry is a CaseResult document
    from parity.results import CaseResult

    back = CaseResult.from_dict(case)
    assert back.verdict == "pass" and [s.name for s in back.stages] == list(STAGE_NAMES)
    assert [s.to_dict()["max_abs"] for s in back.stages] == [s["max_abs"] for s in case["stages"]]


def test_devices_seam(session_hub):
    doc = session_hub["doc"]
    devs = {d["device"]: d for d in doc["devices"]}
    assert devs["cpu"]["status"] == "available" and devs["cpu"]["cases"] == [CASE]
    cuda = devs["cuda"]
    if cuda["status"] == "unavailable":  # the usual CPU-only machine: reported, not failed
        assert cuda["reason"] and cuda["verdict"] is None and cuda["cases"] == []
        assert doc["verdict"] == "pass"
    else:
        assert any(c["device"] == "cuda" for c in doc["cases"])


def test_json_validates_against_its_schema(session_hub):
    root = session_hub["root"]
    schema = json.loads((root / hub_mod.SCHEMA_JSON).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(session_hub["doc"], schema, cls=jsonschema.Draft202012Validator)
    # strict JSON: no NaN/Infinity tokens
    text = (root / hub_mod.REPORT_JSON).read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_schema_rejects_a_broken_report(session_hub):
    schema = json.loads((session_hub["root"] / hub_mod.SCHEMA_JSON).read_text())
    bad = json.loads(json.dumps(session_hub["doc"]))
    bad["cases"][0]["stages"][0]["verdict"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema, cls=jsonschema.Draft202012Validator)


def test_every_png_opens(session_hub):
    import matplotlib.image as mpimg

    root = session_hub["root"]
    pngs = [rel for rel in session_hub["doc"]["artifacts"] if rel.endswith(".png")]
    assert len(pngs) >= 11
    for rel in pngs:
        img = mpimg.imread(root / rel)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100, rel


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src") and v:
                self.links.append(v)


def test_index_links_resolve(session_hub):
    root = session_hub["root"]
    page = (root / hub_mod.INDEX_HTML).read_text()
    parser = _Links()
    parser.feed(page)
    files = [l for l in parser.links if not l.startswith("#")]
    assert files, "the page links no file"
    for link in files:
        assert not re.match(r"^[a-z]+://", link), f"network link {link}"
        assert (root / unquote(link)).is_file(), link
    anchors = [l[1:] for l in parser.links if l.startswith("#")]
    for a in anchors:
        assert f'id="{unquote(a)}"' in page
    for rel in session_hub["doc"]["artifacts"]:
        if rel.endswith(".png"):
            assert rel in files or rel.replace("@", "%40") in files, f"{rel} not linked from index.html"


def test_junit(session_hub):
    tree = ET.parse(session_hub["junit"])
    cases = tree.getroot().iter("testcase")
    names = [(c.get("classname"), c.get("name")) for c in cases]
    assert ("parity.cpu", CASE) in names
    assert tree.getroot().get("failures") == "0" and tree.getroot().get("errors") == "0"


def test_help_lists_every_flag(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--hub", "--suite", "--case", "--devices", "--dtype", "--tolerances", "--tolerance-mode",
                 "--isolation", "--baseline", "--drift-factor", "--recheck", "--junit", "--force", "-q", "-v"):
        assert re.search(rf"(^|\s|,){re.escape(flag)}\b", out), flag
    for action in build_parser()._actions:
        for opt in action.option_strings:
            assert opt in out, opt
    assert "exit codes" in out and "130" in out


def test_program_entry_point_bad_usage():
    """The real ``python -m parity.report``: one line on stderr, exit 2."""
    proc = subprocess.run([sys.executable, "-m", "parity.report", "--case", "no_such_case"], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no_such_case" in lines[0] and "n64_g1" in lines[0]


# --------------------------------------------------------------------------- refusal and bad input
def test_refuses_to_overwrite_a_report(session_hub, monkeypatch, capsys):
    root = session_hub["root"]
    before = _snapshot(root)
    _no_models(monkeypatch)
    assert main(["--case", CASE, "--hub", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a parity report" in err[0] and "--force" in err[0]
    assert _snapshot(root) == before


def test_refuses_files_at_the_reports_paths(tmp_path, monkeypatch, capsys):
    root = tmp_path / "user_hub"
    (root / "analysis").mkdir(parents=True)
    (root / "analysis" / "candidate_patch_stats.json").write_text('{"mine": true}')
    _no_models(monkeypatch)
    assert main(["--case", CASE, "--hub", str(root)]) == 2
    assert "candidate_patch_stats.json" in capsys.readouterr().err
    assert (root / "analysis" / "candidate_patch_stats.json").read_text() == '{"mine": true}'
    assert sorted(p.name for p in root.rglob("*")) == ["analysis", "candidate_patch_stats.json"]


def test_refuses_a_hub_another_run_is_writing(tmp_path, monkeypatch, capsys):
    import os
    import socket

    root = tmp_path / "busy"
    root.mkdir()
    (root / hub_mod.RUNNING).write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    _no_models(monkeypatch)
    assert main(["--case", CASE, "--hub", str(root)]) == 2
    assert "another run" in capsys.readouterr().err


@pytest.mark.parametrize("args, words", [
    (["--case", "nope"], ["unknown case 'nope'", "n64_g2"]),
    (["--suite", "weekly"], ["weekly", "default", "nightly"]),
    (["--dtype", "float16"], ["float16", "float32", "float64"]),
    (["--tolerances", "{missing}"], ["does not exist"]),
    (["--tolerances", "{bad_toml}"], ["not valid TOML"]),
    (["--baseline", "{missing}"], ["--baseline", "does not exist"]),
    (["--baseline", "{empty_dir}"], ["--baseline", "no parity_report.json"]),
    (["--recheck", "{empty_dir}"], ["--recheck", "no parity_report.json"]),
    (["--recheck", "{no_captures}"], ["--recheck", "no captures"]),
    (["--hub", "{a_file}/hub"], ["not writable"]),
    (["--hub", "{a_file}"], ["not a folder"]),
    (["--devices", "tpu"], ["unknown device 'tpu'", "cpu, cuda"]),
    (["--recheck", "{no_captures}", "--dtype", "float64"], ["--dtype cannot be combined with --recheck"]),
    (["--suite", "default", "--case", "n64_g1"], ["either --suite or --case"]),
    (["--drift-factor", "0.5"], ["--drift-factor"]),
])
def test_bad_input_exits_2_with_one_line(args, words, tmp_path, session_hub, monkeypatch, capsys):
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "bad.toml").write_text("[defaults.float32\n")
    nocap = tmp_path / "no_captures"
    nocap.mkdir()
    shutil.copy(session_hub["root"] / hub_mod.REPORT_JSON, nocap / hub_mod.REPORT_JSON)
    subs = {"{missing}": str(tmp_path / "missing"), "{empty_dir}": str(tmp_path / "empty_dir"),
            "{bad_toml}": str(tmp_path / "bad.toml"), "{no_captures}": str(nocap), "{a_file}": str(tmp_path / "a_file")}
    args = [subs.get(a, a) for a in args]
    args = [a.replace("{a_file}", str(tmp_path / "a_file")) for a in args]
    hub_given = "--hub" in args
    if not hub_given:
        args += ["--hub", str(tmp_path / "out")]
    before = _snapshot(tmp_path)
    _no_models(monkeypatch)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for w in words:
        assert w in err[0], (w, err[0])
    assert _snapshot(tmp_path) == before
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- recheck
def _verdicts(doc):
    return {(c["key"], s["name"]): (s["verdict"], s["label"], s["margin"]) for c in doc["cases"] for s in c["stages"]}


def test_recheck_reproduces_the_verdicts_without_models(session_hub, tmp_path, monkeypatch):
    _no_models(monkeypatch)
    out = tmp_path / "rechecked"
    assert main(["--recheck", str(session_hub["root"]), "--hub", str(out)]) == 0
    doc = json.loads((out / hub_mod.REPORT_JSON).read_text())
    assert doc["mode"] == "recheck" and doc["recheck_of"]["hub"] == str(session_hub["root"])
    assert _verdicts(doc) == _verdicts(session_hub["doc"])
    assert doc["timings"]["forward_s"] == 0
    # the new hub is self-contained: its captures can be rechecked again
    assert (out / f"captures/{CASE}/reference.reference_tf.npz").is_file() and (out / f"captures/{CASE}/local.torch_impl.npz").is_file()
    assert (out / f"analysis/{CASE}/canvas.png").is_file()


def test_recheck_with_tight_tolerances_fails(session_hub, tmp_path, tight_toml, monkeypatch, capsys):
    _no_models(monkeypatch)
    before = _snapshot(session_hub["root"])
    out = tmp_path / "tight"
    code = main(["--recheck", str(session_hub["root"]), "--hub", str(out), "--tolerances", str(tight_toml),
                 "--no-figures"])
    assert code == 1
    doc = json.loads((out / hub_mod.REPORT_JSON).read_text())
    case = doc["cases"][0]
    assert doc["verdict"] == "fail" and case["verdict"] == "fail" and case["first_divergent_stage"]
    assert "FAIL" in capsys.readouterr().out
    assert _snapshot(session_hub["root"]) == before  # the source is read only


def test_recheck_in_place_needs_force_and_keeps_captures(session_hub, tmp_path, tight_toml, monkeypatch):
    _no_models(monkeypatch)
    copy = tmp_path / "copy"
    shutil.copytree(session_hub["root"], copy)
    assert main(["--recheck", str(copy), "--hub", str(copy)]) == 2
    assert main(["--recheck", str(copy), "--hub", str(copy), "--force", "--tolerances", str(tight_toml)]) == 1
    doc = json.loads((copy / hub_mod.REPORT_JSON).read_text())
    assert doc["verdict"] == "fail" and (copy / f"captures/{CASE}/reference.reference_tf.npz").is_file()
    assert (copy / "plans" / "plan.md").read_text() == "my plan\n"
    # and back: the same captures under the default table pass again
    assert main(["--recheck", str(copy), "--hub", str(copy), "--force", "--no-figures"]) == 0


# --------------------------------------------------------------------------- drift
def _ulps_of_scale(st):
    """The stage's max |d| in float32 round-offs of its scale (the drift floor)."""
    return decode_float(st["max_abs"]) / (1.1920929e-07 * decode_float(st["ref_max_abs"]))


def test_baseline_drift_is_flagged(session_hub, tmp_path, monkeypatch):
    _no_models(monkeypatch)
    base = json.loads(json.dumps(session_hub["doc"]))
    # the stage whose error is furthest above float32 round-off: 1000x smaller "then" is drift
    stage = max(base["cases"][0]["stages"], key=_ulps_of_scale)
    assert _ulps_of_scale(stage) > 20
    stage["max_abs"] = decode_float(stage["max_abs"]) / 1000.0
    bdir = tmp_path / "baseline"
    bdir.mkdir()
    (bdir / hub_mod.REPORT_JSON).write_text(json.dumps(base))
    out = tmp_path / "drift"
    junit = tmp_path / "drift.xml"
    code = main(["--recheck", str(session_hub["root"]), "--hub", str(out), "--baseline", str(bdir),
                 "--no-figures", "--junit", str(junit)])
    assert code == 1
    doc = json.loads((out / hub_mod.REPORT_JSON).read_text())
    assert doc["parity_verdict"] == "pass" and doc["verdict"] == "fail"
    assert [(f["case"], f["stage"]) for f in doc["drift"]["flagged"]] == [(CASE, stage["name"])]
    st = next(s for s in doc["cases"][0]["stages"] if s["name"] == stage["name"])
    assert st["verdict"] == "pass" and st["drift"]["flagged"] and decode_float(st["drift"]["ratio"]) > 10
    assert "Drift against the baseline" in (out / hub_mod.INDEX_HTML).read_text()
    assert ET.parse(junit).getroot().get("failures") == "1"
    # a larger factor lets it pass
    out2 = tmp_path / "drift2"
    assert main(["--recheck", str(session_hub["root"]), "--hub", str(out2), "--baseline", str(bdir),
                 "--drift-factor", "1e6", "--no-figures"]) == 0


def test_same_run_as_baseline_has_no_drift(session_hub, tmp_path, monkeypatch):
    _no_models(monkeypatch)
    out = tmp_path / "nodrift"
    assert main(["--recheck", str(session_hub["root"]), "--hub", str(out), "--baseline", str(session_hub["root"]),
                 "--no-figures"]) == 0
    doc = json.loads((out / hub_mod.REPORT_JSON).read_text())
    assert doc["drift"]["n_flagged"] == 0 and doc["drift"]["cases"][0]["status"] == "compared"


# --------------------------------------------------------------------------- exit codes from real runs
def test_tight_tolerances_exit_1(tmp_path, tight_toml, capsys):
    out = tmp_path / "tight_run"
    assert main(["--case", CASE, "--hub", str(out), "--tolerances", str(tight_toml),
                 "--no-figures", "-q"]) == 1
    doc = json.loads((out / hub_mod.REPORT_JSON).read_text())
    assert doc["verdict"] == "fail" and doc["tolerances"]["path"] == str(tight_toml)
    assert not list(out.rglob("*.png"))


def test_injected_fault_exit_1_and_localised(tmp_path, monkeypatch):
    import torch_impl.physics as physics

    real = physics.far_field_amplitude
    monkeypatch.setattr(physics, "far_field_amplitude", lambda psi: real(psi) * 1.001)
    out = tmp_path / "fault"
    assert main(["--case", CASE, "--hub", str(out), "--isolation", "inprocess",
                 "--no-figures"]) == 1
    case = json.loads((out / hub_mod.REPORT_JSON).read_text())["cases"][0]
    assert case["first_divergent_stage"] == "far_field_amp" and case["root_cause_stage"] == "far_field_amp"
    labels = {s["name"]: s["label"] for s in case["stages"]}
    assert labels["exit_wave"] == "ok" and labels["far_field_amp"] == "root_cause"


def test_crashing_case_exits_3_and_the_report_is_written(tmp_path, monkeypatch):
    import parity.engine as engine

    def crash(job):
        raise RuntimeError("side exploded")

    monkeypatch.setattr(engine, "execute", crash)
    out = tmp_path / "crash"
    assert main(["--case", CASE, "--hub", str(out), "--isolation", "inprocess"]) == 3
    doc = json.loads((out / hub_mod.REPORT_JSON).read_text())
    case = doc["cases"][0]
    assert case["verdict"] == "fail" and "side exploded" in case["error"] and case["stages"] == []
    assert case["errors"][0]["side"] == "reference_tf" and case["errors"][0]["kind"] == "error"
    schema = json.loads((out / hub_mod.SCHEMA_JSON).read_text())
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)


# --------------------------------------------------------------------------- interruption
def test_interrupted_run_leaves_no_verdict(tmp_path, monkeypatch, capsys):
    import parity.engine as engine

    real = engine.execute

    def interrupt_port(job):
        if job.side == "torch_impl":  # mid-way: the reference already ran
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(engine, "execute", interrupt_port)
    out = tmp_path / "interrupted"
    assert main(["--case", CASE, "--hub", str(out), "--isolation", "inprocess"]) == 130
    assert "no parity_report.json" in capsys.readouterr().err
    assert not (out / hub_mod.REPORT_JSON).exists()
    assert (out / hub_mod.RUNNING).exists()
    assert not list(out.rglob("*.json"))


def test_interrupted_forced_run_removes_the_old_verdict_first(session_hub, tmp_path, monkeypatch):
    import parity.engine as engine

    copy = tmp_path / "copy"
    shutil.copytree(session_hub["root"], copy)

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "execute", interrupt)
    assert main(["--case", CASE, "--hub", str(copy), "--force", "--isolation", "inprocess"]) == 130
    assert not (copy / hub_mod.REPORT_JSON).exists()
    assert (copy / "plans" / "plan.md").is_file() and (copy / "analysis" / "artifact_inventory.txt").is_file()


# --------------------------------------------------------------------------- hung and crashed sides
@pytest.mark.parametrize("side,kind,words,cases,timeout", [
    ("sleepy", "timeout", "no answer after 45 s (job timeout)", [CASE], "45"),
    ("dying", "crash", "the worker died (exit code 17)", [CASE, "n64_g1_pad_false"], "900")])
def test_a_hung_or_crashed_side_errors_its_case_and_the_report_finishes(side, kind, words, cases, timeout, tmp_path,
                                                                        capsys):
    """A candidate that sleeps forever or exits mid-job: its cases error with the side, the job
    and the worker's last lines; the report still finishes with every case and exit code 3.
    (The timeout leaves room for the reference side's framework import on a loaded machine.)"""
    from parity import sides

    sides.register_side(side, f"tests.helpers.sides:{side.capitalize()}Side")
    try:
        out = tmp_path / side
        rc = main(["--pair", f"reference_tf:{side}", "--case", *cases, "--hub", str(out), "--job-timeout", timeout,
                   "--no-figures"])
    finally:
        sides.unregister_side(side)
    assert rc == 3  # a case could not run
    doc = json.loads((out / hub_mod.REPORT_JSON).read_text())
    assert [c["name"] for c in doc["cases"]] == cases
    for case in doc["cases"]:
        assert case["verdict"] == "fail" and case["stages"] == []
        err = case["errors"][0]
        assert err["side"] == side and err["kind"] == kind and words in err["reason"]
        assert err["job"].startswith(f"candidate {case['name']} float32 cpu")
        assert any(side in line for line in err["tail"])
    printed = capsys.readouterr().out
    assert f"side {side}, job 'candidate {CASE} float32 cpu" in printed and words in printed
    page = (out / hub_mod.INDEX_HTML).read_text()
    assert f"side <b>{side}</b>" in page and "last lines of the side" in page
