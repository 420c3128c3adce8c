"""parity.tolerances: the TOML table, overrides with reasons, and noise-floor calibration."""
import dataclasses
import math

import numpy as np
import pytest

from parity.stages import STAGE_NAMES
from parity.tolerances import (DEFAULT_PATH, Tolerance, ToleranceTable, dtype_key, load_tolerances,
                               noise_floor_tolerances)

DEFAULTS = """
[defaults.float32]
rtol = 1e-5
atol = 0.0
atol_scaled = 1e-5

[defaults.float64]
rtol = 1e-10
atol = 0.0
atol_scaled = 1e-10
"""


def write(tmp_path, text):
    path = tmp_path / "tol.toml"
    path.write_text(DEFAULTS + text)
    return path


# --------------------------------------------------------------------------- Tolerance
def test_tolerance_scaled_to_dict_and_frozen():
    t = Tolerance(rtol=1e-5, atol=0.0, atol_scaled=2e-5, source="defaults.float32", reason="r")
    s = t.scaled(3)
    assert (s.rtol, s.atol, s.atol_scaled) == pytest.approx((3e-5, 0.0, 6e-5))
    assert s.max_mismatch_fraction == 0.0 and s.source == "defaults.float32 x3"
    assert t.to_dict() == {"rtol": 1e-5, "atol": 0.0, "atol_scaled": 2e-5, "max_mismatch_fraction": 0.0,
                           "source": "defaults.float32", "reason": "r"}
    assert Tolerance.from_dict(t.to_dict()) == t
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.rtol = 1.0


@pytest.mark.parametrize("kw, match", [
    ({"rtol": -1.0}, "rtol must be finite and >= 0"),
    ({"atol": math.nan}, "atol must be finite and >= 0"),
    ({"max_mismatch_fraction": 1.5}, "max_mismatch_fraction must be <= 1"),
    ({"atol_scaled": "1e-5"}, "atol_scaled must be a number"),
])
def test_tolerance_validation(kw, match):
    base = {"rtol": 0.0, "atol": 0.0, "atol_scaled": 0.0}
    with pytest.raises(ValueError, match=match):
        Tolerance(**(base | kw))


def test_dtype_key():
    assert dtype_key("float32") == "float32"
    assert dtype_key(np.complex64) == "float32"
    assert dtype_key(np.dtype("complex128")) == "float64"
    assert dtype_key(np.zeros(2, np.float32)) == "float32"
    with pytest.raises(ValueError, match="no tolerances for dtype float16"):
        dtype_key(np.float16)


# --------------------------------------------------------------------------- the shipped table
def test_default_table_values():
    table = load_tolerances()
    t = table.for_stage("amp", "float32")
    assert (t.rtol, t.atol, t.atol_scaled, t.max_mismatch_fraction) == (1e-5, 0.0, 1e-5, 0.0)
    assert t.source == "defaults.float32"
    t = table.for_stage("canvas", "float32")  # the reviewed override, with its reason
    assert (t.rtol, t.atol_scaled) == (3e-5, 3e-5) and t.source == "defaults.float32 < stages.canvas.float32"
    assert "merge denominator" in t.reason
    t = table.for_stage("canvas", np.complex128)
    assert (t.rtol, t.atol, t.atol_scaled) == (1e-10, 0.0, 1e-10)
    assert set(table.stage_map("float32")) == set(STAGE_NAMES)
    assert DEFAULT_PATH.name == "tolerances.toml"


def test_for_stage_rejects_unknown_stage():
    with pytest.raises(ValueError, match="unknown stage 'canvass'"):
        load_tolerances().for_stage("canvass", "float32")


# --------------------------------------------------------------------------- overrides
def test_stage_override_is_partial_and_records_source_and_reason(tmp_path):
    path = write(tmp_path, """
[stages.far_field_amp.float32]
atol_scaled = 3e-5
reason = "FFT libraries round differently"
""")
    table = load_tolerances(path)
    t = table.for_stage("far_field_amp", "float32")
    assert (t.rtol, t.atol, t.atol_scaled) == (1e-5, 0.0, 3e-5)
    assert t.source == "defaults.float32 < stages.far_field_amp.float32"
    assert t.reason == "FFT libraries round differently"
    assert table.for_stage("far_field_amp", "float64").atol_scaled == 1e-10
    assert table.for_stage("canvas", "float32").atol_scaled == 1e-5


def test_device_overrides_star_then_stage(tmp_path):
    path = write(tmp_path, """
[device_overrides.cuda.float32."*"]
rtol = 1e-4
reason = "GPU reductions reorder sums"

[device_overrides.cuda.float32.canvas]
atol_scaled = 5e-4
reason = "atomic adds in the merge"
""")
    table = load_tolerances(path)
    t = table.for_stage("canvas", "float32", device="cuda:0")
    assert (t.rtol, t.atol_scaled) == (1e-4, 5e-4)
    assert t.source == ("defaults.float32 < device_overrides.cuda.float32.* < "
                        "device_overrides.cuda.float32.canvas")
    assert t.reason == "atomic adds in the merge"
    t = table.for_stage("probe", "float32", device="cuda")
    assert (t.rtol, t.atol_scaled) == (1e-4, 1e-5)
    assert table.for_stage("canvas", "float32", device="cpu").rtol == 1e-5


@pytest.mark.parametrize("text, match", [
    ("[stages.canvas.float32]\natol = 1e-3\n",
     r"\[stages.canvas.float32\] \(stage canvas\): an override needs a reason"),
    ("[stages.canvas.float32]\natol = 1e-3\nreason = \"   \"\n", r"stage canvas\): an override needs a reason"),
    ("[stages.canvas.float32]\natool = 1e-3\nreason = \"x\"\n",
     r"\[stages.canvas.float32\] \(stage canvas\): unknown field\(s\) \['atool'\]; allowed fields are"),
    ("[stages.canvas.float32]\natol = -1e-3\nreason = \"x\"\n", r"stage canvas\): atol must be finite and >= 0"),
    ("[stages.canvas.float32]\natol = nan\nreason = \"x\"\n", r"stage canvas\): atol must be finite and >= 0"),
    ("[stages.canvas.float32]\natol = \"big\"\nreason = \"x\"\n", r"atol must be a number"),
    ("[stages.canvas.float32]\nreason = \"x\"\n", r"must set at least one of"),
    ("[stages.canvass.float32]\natol = 1.0\nreason = \"x\"\n", r"unknown stage 'canvass'; known stages are \["),
    ("[stages.canvas.float16]\natol = 1.0\nreason = \"x\"\n", r"unknown dtype\(s\) \['float16'\]"),
    ("[device_overrides.cuda.float32.probe]\nrtol = 1.0\n", r"\(stage probe\): an override needs a reason"),
    ("[waivers]\nx = 1\n", r"unknown top-level table\(s\) \['waivers'\]"),
])
def test_invalid_overrides_fail_with_clear_messages(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=match) as info:
        load_tolerances(path)
    assert str(path) in str(info.value)


def test_defaults_must_be_complete(tmp_path):
    path = tmp_path / "tol.toml"
    path.write_text("[defaults.float32]\nrtol = 1e-5\natol = 0.0\natol_scaled = 1e-5\n")
    with pytest.raises(ValueError, match=r"missing \[defaults.float64\]"):
        load_tolerances(path)
    path.write_text("[defaults.float32]\nrtol = 1e-5\natol = 0.0\n"
                    "[defaults.float64]\nrtol=0.0\natol=0.0\natol_scaled=0.0\n")
    with pytest.raises(ValueError, match=r"\[defaults.float32\]: missing field atol_scaled"):
        load_tolerances(path)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_tolerances(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[defaults\n")
    with pytest.raises(ValueError, match=r"bad.toml is not valid TOML"):
        load_tolerances(bad)


def test_table_from_dict_without_a_file():
    table = ToleranceTable.from_dict({"defaults": {
        "float32": {"rtol": 0.0, "atol": 1.0, "atol_scaled": 0.0},
        "float64": {"rtol": 0.0, "atol": 2.0, "atol_scaled": 0.0}}})
    assert table.for_stage("amp", np.float64).atol == 2.0


# --------------------------------------------------------------------------- noise floor
def test_noise_floor_tolerances_from_synthetic_arrays():
    oracle = {"amp": np.linspace(-1.0, 1.0, 16).reshape(1, 1, 4, 4),
              "canvas": np.full((1, 2, 2), 2.0 + 0j),
              "loss_mae": np.float64(0.5)}
    ref32 = {k: np.array(v) for k, v in oracle.items()}
    ref32["amp"] = ref32["amp"].copy()
    ref32["amp"][0, 0, 1, 1] += 1e-6          # the reference's own float32 error
    ref32["canvas"] = ref32["canvas"] + 1e-4j
    tols = noise_floor_tolerances(oracle, ref32)
    assert list(tols) == ["amp", "canvas", "loss_mae"]     # parity.stages order
    eps = float(np.finfo(np.float32).eps)
    t = tols["amp"]
    assert t.atol == pytest.approx(3e-6) and t.rtol == 0.0 and t.atol_scaled == 0.0
    assert "max|ref32 - oracle64| = 1e-06" in t.reason and "k=3" in t.reason
    assert tols["canvas"].atol == pytest.approx(3e-4)
    # an exact stage gets the round-off floor: 4 x eps32 x max|oracle64|
    assert tols["loss_mae"].atol == pytest.approx(4 * eps * 0.5)
    assert noise_floor_tolerances(oracle, ref32, k=2.0)["amp"].atol == pytest.approx(2e-6)
    assert noise_floor_tolerances(oracle, ref32, floor_ulps=1e6)["amp"].atol == pytest.approx(1e6 * eps)


def test_noise_floor_rejects_bad_inputs():
    a = {"amp": np.zeros((1, 1, 2, 2))}
    with pytest.raises(ValueError, match=r"stage sets differ; only in oracle64: \[\], only in ref32: \['phase'\]"):
        noise_floor_tolerances(a, {"amp": np.zeros((1, 1, 2, 2)), "phase": np.zeros((1, 1, 2, 2))})
    with pytest.raises(ValueError, match=r"stage amp: oracle64 shape \(1, 1, 2, 2\) != ref32 shape \(1, 1, 4\)"):
        noise_floor_tolerances(a, {"amp": np.zeros((1, 1, 4))})
    with pytest.raises(ValueError, match="stage amp holds NaN or Inf"):
        noise_floor_tolerances(a, {"amp": np.full((1, 1, 2, 2), np.nan)})
    with pytest.raises(ValueError, match="unknown stage"):
        noise_floor_tolerances({"ampp": np.zeros(1)}, {"ampp": np.zeros(1)})


def test_tolerances_load_without_tomllib_through_tomli():
    """Python 3.10 has no tomllib: parity.tolerances falls back to tomli (a dependency there)."""
    import subprocess
    import sys

    code = ("import sys, tomllib\n"
            "sys.modules['tomli'] = tomllib\n"       # stands in for the tomli package
            "sys.modules['tomllib'] = None\n"        # as on Python 3.10: import tomllib fails
            "from parity.tolerances import load_tolerances\n"
            "assert load_tolerances().defaults\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_pyproject_declares_tomli_before_python_3_11():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.10"
    deps = [d.replace(" ", "").replace("'", '"') for d in project["dependencies"]]
    assert any(d.startswith("tomli") and d.endswith(';python_version<"3.11"') for d in deps), deps
