"""The example pair (examples/example_pair, declared through parity.byo only): the report passes
from the repository root, and a bug planted in the port is localised through hooks alone."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("keras")

from examples.example_pair import helpers, torch_model  # noqa: E402
from parity.pairs import resolve_pair  # noqa: E402
from parity.report import hub as hub_mod  # noqa: E402
from parity.report.__main__ import main  # noqa: E402
from parity.run import run_case  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_is_registered_by_its_entry_point():
    pair = resolve_pair("example")
    assert pair.spec == "example_keras:example_torch"
    assert pair.stage_names == ("stem", "features", "amplitude", "phase", "object", "far_field", "intensity",
                                "centre", "loss")
    assert resolve_pair("example_keras:example_torch").cases is pair.cases


def test_the_example_report_passes_from_the_repository_root(tmp_path):
    hub = tmp_path / "hub"
    proc = subprocess.run([sys.executable, "-m", "parity.report", "--pair", "example", "--hub", str(hub),
                           "--no-figures"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((hub / hub_mod.REPORT_JSON).read_text())
    assert doc["verdict"] == "pass" and [c["name"] for c in doc["cases"]] == ["tiny", "tiny_f64"]
    stages = {s["name"]: s for s in doc["cases"][0]["stages"]}
    assert [n for n, s in stages.items() if s["derived"]] == ["intensity", "centre", "loss"]
    assert stages["object"]["taps"]["candidate"] == "return value of function examples.example_pair.helpers.combine"
    assert all(s["local_error"] is not None for s in stages.values())  # every stage teacher-forced
    assert "verdict: PASS  2/2 cases passed" in proc.stdout


def _leaky_stem(self, image):
    x = torch.nn.functional.leaky_relu(self.stem(image), 0.01)
    x = torch.relu(self.body(x))
    return self.propagate(torch_model.combine(self.amp_head(x), self.phase_head(x)))


def _far_field_off(self, psi):
    return torch.abs(torch.fft.fft2(psi)) / psi.shape[-1] * 1.001


def _combine_off(amplitude, phase_unit):
    return torch.polar(amplitude, math.pi * phase_unit * 1.0005)


@pytest.mark.parametrize("stage, patches", [
    ("stem", [(torch_model.TinyNet, "forward", _leaky_stem)]),  # inline code: read at a module's input
    ("object", [(helpers, "combine", _combine_off), (torch_model, "combine", _combine_off)]),  # a helper function
    ("far_field", [(torch_model.FarField, "forward", _far_field_off)]),  # a module's output
])
def test_a_planted_bug_is_named_first_divergent_and_root_cause(monkeypatch, stage, patches):
    for owner, attr, value in patches:
        monkeypatch.setattr(owner, attr, value)
    res = run_case("tiny", pair="example", isolation="inprocess").result
    assert not res and res.first_divergent_stage == stage and res.root_cause_stage == stage
    order = [s.name for s in res.stages]
    for s in res.stages:
        assert s.local_error is not None
        if s.name == stage:
            assert s.label == "root_cause"
        elif s.name in order[:order.index(stage)]:
            assert s.label == "ok"
        else:
            assert s.label in ("ok", "propagated")


def test_the_example_hub_can_be_rechecked(tmp_path):
    hub, again = tmp_path / "hub", tmp_path / "again"
    assert main(["--pair", "example", "--case", "tiny", "--hub", str(hub), "--no-figures", "--isolation",
                 "inprocess", "-q"]) == 0
    assert main(["--recheck", str(hub), "--hub", str(again), "--no-figures", "-q"]) == 0
    first = json.loads((hub / hub_mod.REPORT_JSON).read_text())["cases"][0]["stages"]
    redo = json.loads((again / hub_mod.REPORT_JSON).read_text())["cases"][0]["stages"]
    assert [s["max_abs"] for s in redo] == [s["max_abs"] for s in first]
