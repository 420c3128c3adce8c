"""Unit tests of the fixture registry, files, manifest and loader (parity/fixtures.py)."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from parity import fixtures

SMALL = "n64_g1_int"  # the cheapest stored fixture, used for the tampering tests


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    """Every stored fixture regenerated into a fresh directory."""
    out = tmp_path_factory.mktemp("regen")
    entries = fixtures.write_fixtures(out)
    return out, entries


@pytest.fixture()
def small_dir(tmp_path):
    fixtures.write_fixtures(tmp_path, [SMALL])
    return tmp_path


def _manifest(directory: Path) -> dict:
    return json.loads((directory / fixtures.MANIFEST_NAME).read_text())


def _set_manifest_hash(directory: Path, name: str) -> None:
    """Make the manifest accept whatever is now in the file (to reach the structural checks)."""
    manifest = _manifest(directory)
    entry = manifest["fixtures"][name]
    path = directory / entry["file"]
    entry["sha256"] = fixtures.file_sha256(path)
    entry["bytes"] = path.stat().st_size
    (directory / fixtures.MANIFEST_NAME).write_text(json.dumps(manifest))


# ---------------------------------------------------------------------------------------------
# registry and stored set
# ---------------------------------------------------------------------------------------------
def test_registry_contents():
    want = {
        "n64_g1_int": (64, 1, 8, True), "n64_g2_int": (64, 2, 4, True), "n64_g2_sub": (64, 2, 4, True),
        "n64_g2_biased": (64, 2, 4, True), "n64_g2_poisson": (64, 2, 4, True), "n128_g2_int": (128, 2, 2, True),
        "n128_g1_sub": (128, 1, 4, True), "n256_g1_int": (256, 1, 2, False), "n64_g3_int": (64, 3, 4, False),
        "n64_g2_big": (64, 2, 16, False), "n128_g3_big": (128, 3, 8, False),
    }
    for name, (N, g, B, stored) in want.items():
        spec = fixtures.get_spec(name)
        assert (spec.N, spec.gridsize, spec.B, spec.stored) == (N, g, B, stored), name
    assert fixtures.get_spec("n64_g2_sub").offsets_kind == "subpixel"
    assert fixtures.get_spec("n64_g2_sub").probe_kind == "random_phase"
    assert fixtures.get_spec("n64_g2_biased").offsets_kind == "biased"
    assert fixtures.get_spec("n64_g2_poisson").poisson_photons is not None
    assert fixtures.get_spec("n64_g2_big").B * fixtures.get_spec("n64_g2_big").C == 64
    assert fixtures.get_spec("n128_g3_big").B * fixtures.get_spec("n128_g3_big").C == 72
    assert len({s.seed for s in fixtures.FIXTURES.values()}) == len(fixtures.FIXTURES)
    with pytest.raises(KeyError, match="unknown fixture 'nope'"):
        fixtures.get_spec("nope")


def test_regenerated_stored_fixtures_match_manifest(regenerated):
    _, entries = regenerated
    manifest = _manifest(fixtures.DEFAULT_DIR)
    assert manifest["generator_version"] == fixtures.GENERATOR_VERSION
    assert set(manifest["fixtures"]) == set(fixtures.STORED)
    for name in fixtures.STORED:
        stored, fresh = manifest["fixtures"][name], entries[name]
        assert fresh["content_sha256"] == stored["content_sha256"], f"{name}: array contents changed"
        assert fresh["sha256"] == stored["sha256"], f"{name}: file bytes changed (contents equal)"
        assert fresh["spec"] == stored["spec"] and fresh["arrays"] == stored["arrays"]


def test_stored_files_load_and_verify():
    total = 0
    for name in fixtures.STORED:
        fx = fixtures.load_fixture(name)
        spec = fx.spec
        assert fx.X.shape == (spec.B, spec.C, spec.N, spec.N) and fx.X.dtype == np.float32
        assert fx.offsets.shape == (spec.B, spec.C, 2) and fx.offsets.dtype == np.float64
        assert fx.probe_raw.shape == (spec.N, spec.N) and fx.probe_raw.dtype == np.complex64
        assert fx.object.dtype == np.complex64 and fx.centres.shape == (spec.B, 2)
        energy = np.sum(fx.X.astype(np.float64) ** 2, axis=(-2, -1)).mean()
        assert energy == pytest.approx((spec.N / 2) ** 2, rel=1e-5)
        entry = fx.meta
        assert entry["seed"] == spec.seed and entry["generator_version"] == fixtures.GENERATOR_VERSION
        assert entry["arrays"]["X"] == {"shape": [spec.B, spec.C, spec.N, spec.N], "dtype": "<f4"}
        total += (fixtures.DEFAULT_DIR / entry["file"]).stat().st_size
    assert total < 3_000_000


def test_write_is_byte_deterministic(tmp_path, small_dir):
    fixtures.write_fixtures(tmp_path / "again", [SMALL])
    a = (small_dir / f"{SMALL}.npz").read_bytes()
    b = (tmp_path / "again" / f"{SMALL}.npz").read_bytes()
    assert a == b
    with zipfile.ZipFile(small_dir / f"{SMALL}.npz") as zf:
        assert [i.filename for i in zf.infolist()] == [f"{k}.npy" for k in fixtures.STORED_DTYPES]
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_nightly_fixtures_generate_on_demand(tmp_path):
    for name in fixtures.NIGHTLY:
        fx = fixtures.load_fixture(name, fixtures.DEFAULT_DIR)
        spec = fx.spec
        assert fx.meta["generated_on_demand"] is True
        assert fx.X.shape == (spec.B, spec.C, spec.N, spec.N) and fx.X.dtype == np.float32
        assert fx.offsets.shape == (spec.B, spec.C, 2)
    again = fixtures.load_fixture("n64_g3_int")
    assert again.X.tobytes() == fixtures.load_fixture("n64_g3_int").X.tobytes()
    # a nightly fixture can also be written to a directory and then loads from the file
    fixtures.write_fixtures(tmp_path, ["n64_g3_int"])
    from_file = fixtures.load_fixture("n64_g3_int", tmp_path)
    assert "generated_on_demand" not in from_file.meta
    assert from_file.X.tobytes() == again.X.tobytes()


# ---------------------------------------------------------------------------------------------
# loader errors
# ---------------------------------------------------------------------------------------------
def test_corrupted_bytes(small_dir):
    path = small_dir / f"{SMALL}.npz"
    expected = _manifest(small_dir)["fixtures"][SMALL]["sha256"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    got = fixtures.file_sha256(path)
    with pytest.raises(ValueError) as err:
        fixtures.load_fixture(SMALL, small_dir)
    msg = str(err.value)
    assert str(path) in msg and "fails its checksum" in msg
    assert f"expected sha256 {expected}" in msg and f"got {got}" in msg
    with pytest.raises(ValueError, match=r"is not a readable \.npz archive \(corrupt or truncated\?\)"):
        fixtures.load_fixture(SMALL, small_dir, verify=False)


def test_truncated_file(small_dir):
    path = small_dir / f"{SMALL}.npz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=rf"fails its checksum: .*\({len(data) // 3} bytes on disk, manifest says {len(data)}\)"):
        fixtures.load_fixture(SMALL, small_dir)
    with pytest.raises(ValueError, match=r"is not a readable \.npz archive"):
        fixtures.load_fixture(SMALL, small_dir, verify=False)
    _set_manifest_hash(small_dir, SMALL)  # even with a matching hash the structure check fails
    with pytest.raises(ValueError, match=r"is not a readable \.npz archive .*no zip end-of-archive record"):
        fixtures.load_fixture(SMALL, small_dir)
    path.write_bytes(b"not an archive at all")  # junk must not be mistaken for a pickle
    _set_manifest_hash(small_dir, SMALL)
    with pytest.raises(ValueError, match=r"is not a readable \.npz archive"):
        fixtures.load_fixture(SMALL, small_dir)


def test_pickle_bearing_npz(small_dir):
    path = small_dir / f"{SMALL}.npz"
    good = fixtures.load_fixture(SMALL, small_dir).arrays
    bad = dict(good)
    bad["offsets"] = np.array([{"dx": 1}, None], dtype=object)
    with open(path, "wb") as fh:
        np.savez(fh, **bad)
    _set_manifest_hash(small_dir, SMALL)
    with pytest.raises(ValueError, match=r"holds a pickled \(object\) array, which is refused"):
        fixtures.load_fixture(SMALL, small_dir)


def test_missing_arrays(small_dir):
    good = fixtures.load_fixture(SMALL, small_dir).arrays
    fixtures.write_npz(small_dir / f"{SMALL}.npz", {k: v for k, v in good.items() if k not in ("offsets", "centres")})
    _set_manifest_hash(small_dir, SMALL)
    with pytest.raises(ValueError, match=r"missing array\(s\) \['offsets', 'centres'\]"):
        fixtures.load_fixture(SMALL, small_dir)


def test_wrong_shape_dtype_and_non_finite(small_dir):
    good = dict(fixtures.load_fixture(SMALL, small_dir).arrays)
    path = small_dir / f"{SMALL}.npz"
    bad = dict(good, X=np.ascontiguousarray(good["X"][..., :32]))
    fixtures.write_npz(path, bad)
    _set_manifest_hash(small_dir, SMALL)
    with pytest.raises(ValueError, match=r"array 'X' has shape \(8, 1, 64, 32\), expected \(8, 1, 64, 64\)"):
        fixtures.load_fixture(SMALL, small_dir)
    bad = dict(good, probe_raw=good["probe_raw"].real.astype(np.float32))
    fixtures.write_npz(path, bad)
    _set_manifest_hash(small_dir, SMALL)
    with pytest.raises(ValueError, match=r"array 'probe_raw' has dtype float32, expected complex64"):
        fixtures.load_fixture(SMALL, small_dir)
    X = good["X"].copy()
    X[0, 0, 3, 3] = np.nan
    fixtures.write_npz(path, dict(good, X=X))
    _set_manifest_hash(small_dir, SMALL)
    with pytest.raises(ValueError, match=r"array 'X' holds NaN or Inf"):
        fixtures.load_fixture(SMALL, small_dir)
    off = good["offsets"].copy()
    off[0, 0, 0] = np.inf
    fixtures.write_npz(path, dict(good, offsets=off))
    _set_manifest_hash(small_dir, SMALL)
    with pytest.raises(ValueError, match=r"array 'offsets' holds NaN or Inf"):
        fixtures.load_fixture(SMALL, small_dir)


def test_missing_file_manifest_and_entry(tmp_path_factory, small_dir):
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(FileNotFoundError, match="fixture manifest .* does not exist"):
        fixtures.load_fixture(SMALL, empty)
    with pytest.raises(ValueError, match="'n64_g2_int' is not listed in"):
        fixtures.load_fixture("n64_g2_int", small_dir)
    (small_dir / f"{SMALL}.npz").unlink()
    with pytest.raises(FileNotFoundError, match=rf"fixture file .*{SMALL}\.npz .* does not exist"):
        fixtures.load_fixture(SMALL, small_dir)


def test_generator_version_mismatch(small_dir):
    manifest = _manifest(small_dir)
    manifest["fixtures"][SMALL]["generator_version"] = "0"
    (small_dir / fixtures.MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"made by generator version '0', this code is version"):
        fixtures.load_fixture(SMALL, small_dir)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def test_cli_check(small_dir, capsys):
    assert fixtures.main(["--check", "--out", str(small_dir), "--names", SMALL]) == 0
    assert "fixture check OK" in capsys.readouterr().out
    manifest = _manifest(small_dir)
    manifest["fixtures"][SMALL]["sha256"] = "0" * 64
    manifest["fixtures"][SMALL]["content_sha256"] = "1" * 64
    (small_dir / fixtures.MANIFEST_NAME).write_text(json.dumps(manifest))
    assert fixtures.main(["--check", "--out", str(small_dir), "--names", SMALL]) == 1
    err = capsys.readouterr().err
    assert "fixture check FAILED" in err
    assert f"{SMALL}: regenerated sha256" in err and "!= manifest " + "0" * 64 in err
    assert f"{SMALL}: stored file" in err  # the stored file no longer matches the manifest either


def test_cli_write(tmp_path, capsys):
    assert fixtures.main(["--out", str(tmp_path), "--names", SMALL]) == 0
    out = capsys.readouterr().out
    assert f"{SMALL}.npz" in out and "wrote 1 fixtures" in out
    assert (tmp_path / fixtures.MANIFEST_NAME).exists()


def test_cli_bad_input_exits_2_in_one_line(tmp_path, capsys):
    assert fixtures.main(["--check", "--out", str(tmp_path)]) == 2  # no manifest there
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / fixtures.MANIFEST_NAME) in err[0]
    assert fixtures.main(["--out", str(tmp_path), "--names", "no_such_fixture"]) == 2
    assert "no_such_fixture" in capsys.readouterr().err
