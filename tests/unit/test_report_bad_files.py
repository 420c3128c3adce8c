"""parity report with unusable files and competing runs: exit 2 with one line naming the file, no
half-written hub; exit 3 for a case that could not run; one run per hub at a time."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parity import cases as case_registry
from parity import fixtures as fixture_store
from parity.report import hub as hub_mod
from parity.report.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
CASE = "n64_g1"
TIGHT = ("[defaults.float32]\nrtol = 0.0\natol = 0.0\natol_scaled = 1e-12\n"
         "[defaults.float64]\nrtol = 0.0\natol = 0.0\natol_scaled = 1e-18\n")


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def _one_line(capsys):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.fixture
def source(one_case_hub, tmp_path):
    """A copy of a one-case hub (to damage) and the path of its candidate capture, from the report's map."""
    from parity.inspection import CANDIDATE_ROLES

    copy = tmp_path / "source"
    shutil.copytree(one_case_hub["root"], copy)
    caps = one_case_hub["doc"]["cases"][0]["captures"]
    return copy, copy / next(caps[r] for r in CANDIDATE_ROLES if r in caps)


# --------------------------------------------------------------------------- bad files, exit 2
def test_recheck_of_a_truncated_capture(source, tmp_path, capsys):
    src, port = source
    data = port.read_bytes()
    port.write_bytes(data[: len(data) // 2])
    new = tmp_path / "new"
    assert main(["--recheck", str(src), "--hub", str(new)]) == 2
    line = _one_line(capsys)
    assert line.startswith("python -m parity.report: error: --recheck: capture file ")
    assert str(port) in line and "corrupt or truncated" in line
    assert not new.exists()  # refused at plan time: no RUNNING, no partial analysis/ or captures/


def test_recheck_into_a_folder_with_own_files_leaves_it_as_it_was(source, tmp_path, capsys):
    src, port = source
    port.write_bytes(b"")
    new = tmp_path / "mine"
    new.mkdir()
    (new / "notes.md").write_text("mine\n")
    assert main(["--recheck", str(src), "--hub", str(new)]) == 2
    assert str(port) in _one_line(capsys)
    assert sorted(p.name for p in new.rglob("*")) == ["notes.md"]


def test_a_capture_that_goes_bad_during_the_run_gives_the_hub_back(source, tmp_path):
    """Past the plan's check (the file is cut once the hub is claimed): the hub the run created is removed."""
    from parity.report import ReportInputError, ReportOptions, build_report

    src, port = source

    def cut_when_claimed(event, index, total, info):
        if event == "begin":
            port.write_bytes(port.read_bytes()[:100])

    new = tmp_path / "reports" / "new"
    with pytest.raises(ReportInputError) as info:
        build_report(ReportOptions(hub=new, recheck=src), cut_when_claimed)
    msg = str(info.value)
    assert str(port) in msg and "corrupt or truncated" in msg and "was removed" in msg
    assert not (tmp_path / "reports").exists()


def test_a_failure_while_writing_gives_the_hub_back(one_case_hub, tmp_path, monkeypatch, capsys):
    """The disk fills up after the case's captures and figures were written."""
    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hub_mod, "write_json_atomic", full)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "plan.md").write_text("plan\n")
    assert main(["--recheck", str(one_case_hub["root"]), "--hub", str(mine), "-q"]) == 2
    assert "No space left on device" in _one_line(capsys)
    assert sorted(p.relative_to(mine).as_posix() for p in mine.rglob("*")) == ["plan.md"]


def test_an_internal_error_exits_3_in_one_line_and_gives_the_hub_back(one_case_hub, tmp_path, monkeypatch,
                                                                       capsys):
    import parity.report.__main__ as cli

    class Broken(cli.Progress):
        def __call__(self, event, index, total, info):
            if event == "done":
                raise KeyError("oops")
            super().__call__(event, index, total, info)

    monkeypatch.setattr(cli, "Progress", Broken)
    new = tmp_path / "new"
    assert main(["--recheck", str(one_case_hub["root"]), "--hub", str(new), "-q"]) == 3
    line = _one_line(capsys)
    assert "the report stopped: KeyError" in line
    assert not new.exists()


@pytest.fixture
def fixture_copy(tmp_path, monkeypatch):
    d = tmp_path / "fixtures"
    shutil.copytree(fixture_store.DEFAULT_DIR, d)
    monkeypatch.setattr(fixture_store, "DEFAULT_DIR", d)
    monkeypatch.setattr(case_registry, "WEIGHTS_DIR", d / "weights")
    return d


def test_a_corrupt_fixture_is_refused_before_the_hub_is_claimed(fixture_copy, tmp_path, capsys):
    path = fixture_copy / "n64_g1_int.npz"
    path.write_bytes(path.read_bytes()[:1000])
    new = tmp_path / "new"
    assert main(["--case", CASE, "--hub", str(new)]) == 2
    line = _one_line(capsys)
    assert f"fixture file {path} fails its checksum" in line
    assert not new.exists()


def test_a_truncated_weight_file_is_refused_before_the_hub_is_claimed(fixture_copy, tmp_path, capsys):
    path = fixture_copy / "weights" / "n64_g2_n1_trained.npz"
    path.write_bytes(path.read_bytes()[:5000])
    new = tmp_path / "new"
    assert main(["--case", "n64_g2", "--hub", str(new)]) == 2
    line = _one_line(capsys)
    assert f"weights file {path}" in line
    assert not new.exists()


# --------------------------------------------------------------------------- exit 3
def test_a_case_that_could_not_run_exits_3_over_a_failing_one(one_case_hub, tmp_path):
    src = tmp_path / "source"
    shutil.copytree(one_case_hub["root"], src)
    doc = json.loads((src / hub_mod.REPORT_JSON).read_text())
    crashed = {"name": "n64_g2", "key": "n64_g2", "device": "cpu", "dtype": "float32", "verdict": "fail",
               "error": "TimeoutError: the port did not answer within 60 s", "stages": [], "captures": {},
               "case": {}, "config": {}}
    doc["cases"].append(crashed)
    (src / hub_mod.REPORT_JSON).write_text(json.dumps(doc))
    tight = tmp_path / "tight.toml"
    tight.write_text(TIGHT)
    assert main(["--recheck", str(src), "--hub", str(tmp_path / "a"), "--no-figures", "-q"]) == 3
    assert main(["--recheck", str(src), "--hub", str(tmp_path / "b"), "--no-figures", "-q",
                 "--tolerances", str(tight)]) == 3
    out = json.loads((tmp_path / "b" / hub_mod.REPORT_JSON).read_text())
    assert [c["verdict"] for c in out["cases"]] == ["fail", "fail"] and out["cases"][1]["error"]
    assert out["cases"][0]["stages"] and not out["cases"][0].get("error")  # the other case is still judged
    # without the crashed case, the same failure is a plain parity failure
    assert main(["--recheck", str(src), "--case", CASE, "--hub", str(tmp_path / "c"), "--no-figures", "-q",
                 "--tolerances", str(tight)]) == 1


# --------------------------------------------------------------------------- one run per hub
_CLAIM = """
import sys, time
from pathlib import Path
from parity.report import hub as hub_mod
root, at = Path(sys.argv[1]), float(sys.argv[2])
hub = hub_mod.Hub(root)
time.sleep(max(at - time.time() - 0.02, 0))
while time.time() < at:
    pass
try:
    hub.claim(command=["race"], earlier=None)
except hub_mod.HubError as exc:
    print("refused", exc)
    sys.exit(2)
print("claimed")
sys.stdout.flush()
time.sleep(1.5)  # hold the hub while the other one tries
"""


@pytest.mark.parametrize("stale", [False, True])
def test_two_claims_at_the_same_moment_one_wins(tmp_path, stale):
    for i in range(3):
        root = tmp_path / f"hub{i}"
        if stale:  # both find the marker of a run that is gone
            root.mkdir()
            (root / hub_mod.RUNNING).write_text(json.dumps({"pid": 2 ** 22 + 12345, "host": "elsewhere"}))
        at = time.time() + 4.0
        procs = [subprocess.Popen([sys.executable, "-c", _CLAIM, str(root), str(at)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=_env()) for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        codes = sorted(p.returncode for p in procs)
        assert codes == [0, 2], outs
        refused = next(o for o, p in zip(outs, procs) if p.returncode == 2)[0]
        assert "is being written by another run" in refused
        assert sorted(p.name for p in root.iterdir()) == [hub_mod.RUNNING]  # no temporary file left


def test_two_reports_into_one_hub_one_runs_one_is_refused(one_case_hub, tmp_path):
    hub = tmp_path / "shared"
    cmd = [sys.executable, "-m", "parity.report", "--recheck", str(one_case_hub["root"]), "--hub", str(hub),
           "--no-figures", "-q"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                              cwd=tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert sorted(p.returncode for p in procs) == [0, 2], outs
    err = next(o for o, p in zip(outs, procs) if p.returncode == 2)[1].strip().splitlines()
    assert len(err) == 1 and str(hub) in err[0]
    assert "another run" in err[0] or "already holds a parity report" in err[0]
    doc = json.loads((hub / hub_mod.REPORT_JSON).read_text())
    assert doc["verdict"] == "pass" and not (hub / hub_mod.RUNNING).exists()


# --------------------------------------------------------------------------- Hub.abandon
def test_abandon_removes_a_created_hub(tmp_path):
    hub = hub_mod.Hub(tmp_path / "a" / "b")
    hub.claim(command=[], earlier=None)
    hub.write_json("analysis/x.json", {"v": 1})
    assert "was removed" in hub.abandon("test")
    assert list(tmp_path.iterdir()) == []


def test_abandon_in_a_folder_of_ones_own_removes_only_what_the_report_wrote(tmp_path):
    root = tmp_path / "mine"
    (root / "analysis").mkdir(parents=True)
    (root / "analysis" / "inventory.txt").write_text("mine\n")
    hub = hub_mod.Hub(root)
    hub.claim(command=[], earlier=None)
    hub.write_json("analysis/x.json", {"v": 1})
    hub.write_json(hub_mod.CONFIG_JSON, {"v": 1})
    (root / "captures" / "c1").mkdir(parents=True)
    (root / "captures" / "c1" / "x.npz").write_bytes(b"x")
    (root / ".index.html.abc.tmp").write_text("half")
    (root / "notes.md").write_text("written meanwhile by someone else\n")
    assert "left as it was" in hub.abandon("test")
    left = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    assert left == ["analysis", "analysis/inventory.txt", "notes.md"]


def test_abandon_after_replacing_an_earlier_report_marks_the_hub_incomplete(tmp_path):
    from parity.report import marker

    root = tmp_path / "hub"
    root.mkdir()
    (root / hub_mod.REPORT_JSON).write_text(json.dumps({"verdict": "pass", "cases": [], "artifacts": []}))
    hub = hub_mod.Hub(root)
    hub.claim(command=[], earlier=hub.check(force=True))
    assert "incomplete" in hub.abandon("OSError: disk full")
    assert marker.read(root / hub_mod.RUNNING)["stopped"].startswith("OSError: disk full (")
    assert not (root / hub_mod.REPORT_JSON).exists()
