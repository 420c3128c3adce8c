"""parity.capture: .npz round trip without pickles, clear errors naming the file, validation."""
import io
import json
import pickle
import zipfile

import numpy as np
import pytest

from parity.capture import META_KEY, Capture, CaptureError, load_capture, save_capture, validate_capture
from parity.stages import STAGE_NAMES, STAGES

DIMS = dict(B=2, C=4, K=4, N=8, M=16, n=1)


def full_capture(dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    cdtype = np.complex64 if dtype == "float32" else np.complex128
    stages = {}
    for s in reversed(STAGES):  # deliberately out of order
        shape = s.concrete_shape(**DIMS)
        a = rng.standard_normal(shape)
        stages[s.name] = (a + 1j * rng.standard_normal(shape)).astype(cdtype) if s.complex else a.astype(dtype)
    inputs = {"probe_raw": np.ones((8, 8), np.complex64), "diffraction": rng.random((2, 4, 8, 8)).astype(np.float32)}
    meta = {"backend": "tf", "versions": {"numpy": np.__version__}, "device": "cpu", "dtype": dtype,
            "wall_time_s": np.float64(1.25), "case": "n8", "config": {"N": 8, "gridsize": np.int64(2)}}
    return Capture(stages=stages, meta=meta, inputs=inputs)


def test_capture_orders_stages_canonically():
    cap = full_capture()
    assert list(cap.stages) == list(STAGE_NAMES)
    assert list(cap.inputs) == ["diffraction", "probe_raw"]


def test_round_trip_is_bitwise(tmp_path):
    cap = full_capture()
    cap.stages["amp"][0, 0, 0, :3] = [np.nan, -0.0, np.inf]
    path = save_capture(tmp_path / "ref.npz", cap)
    back = load_capture(path)
    assert list(back.stages) == list(STAGE_NAMES)
    for name, arr in cap.stages.items():
        got = back.stages[name]
        assert got.dtype == arr.dtype and got.shape == arr.shape
        assert got.tobytes() == arr.tobytes(), name
    for name, arr in cap.inputs.items():
        assert back.inputs[name].tobytes() == arr.tobytes()
    assert back.meta["wall_time_s"] == 1.25 and back.meta["config"] == {"N": 8, "gridsize": 2}
    assert back.meta["format_version"] == 1
    assert back.meta["case"] == "n8"


def test_file_is_plain_npz_with_json_meta(tmp_path):
    path = save_capture(tmp_path / "c.npz", full_capture())
    with np.load(path, allow_pickle=False) as z:
        meta = z[META_KEY]
        assert meta.shape == () and meta.dtype.kind == "U"
        assert json.loads(str(meta))["backend"] == "tf"
    with zipfile.ZipFile(path) as zf:
        assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in zf.infolist())


def test_save_is_atomic_and_overwrites(tmp_path):
    path = tmp_path / "sub" / "c.npz"
    save_capture(path, full_capture(seed=0))
    save_capture(path, full_capture(seed=1))
    assert [p.name for p in path.parent.iterdir()] == ["c.npz"]   # no temporary left behind
    assert load_capture(path).stages["amp"].tobytes() == full_capture(seed=1).stages["amp"].tobytes()


def test_save_refuses_object_arrays_and_bad_meta(tmp_path):
    cap = Capture(stages={"amp": np.array([object()], dtype=object)})
    with pytest.raises(CaptureError, match=r"x.npz: array 'amp' has dtype object"):
        save_capture(tmp_path / "x.npz", cap)
    cap = Capture(stages={"amp": np.zeros(2)}, meta={"bad": object()})
    with pytest.raises(CaptureError, match=r"y.npz: metadata cannot be written as JSON"):
        save_capture(tmp_path / "y.npz", cap)
    assert not list(tmp_path.iterdir())


def test_capture_error_is_a_value_error():
    assert issubclass(CaptureError, ValueError)


# --------------------------------------------------------------------------- load errors
def test_missing_file(tmp_path):
    path = tmp_path / "missing.npz"
    with pytest.raises(CaptureError, match=f"capture file {path} does not exist"):
        load_capture(path)


def test_truncated_file(tmp_path):
    path = save_capture(tmp_path / "t.npz", full_capture())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CaptureError, match=r"t.npz is not a readable .npz archive \(corrupt or truncated\)"):
        load_capture(path)


def test_corrupt_member(tmp_path):
    path = save_capture(tmp_path / "c.npz", full_capture())
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("latent.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    for i in range(start, start + 64):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CaptureError, match=r"c.npz: array 'latent' (is corrupt or truncated|cannot be read)"):
        load_capture(path)


@pytest.mark.parametrize("payload, match", [
    (b"", "is empty"),
    (b"hello, not a zip at all", "is not a zip archive"),
    (pickle.dumps({"amp": np.zeros(3)}), "holds pickled data"),
])
def test_not_an_npz(tmp_path, payload, match):
    path = tmp_path / "x.npz"
    path.write_bytes(payload)
    with pytest.raises(CaptureError, match=f"capture file {path} {match}"):
        load_capture(path)


def test_single_npy_file(tmp_path):
    path = tmp_path / "x.npz"
    with open(path, "wb") as fh:
        np.save(fh, np.zeros(3))
    with pytest.raises(CaptureError, match="holds a single .npy array"):
        load_capture(path)


def _raw_npz(path, **arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # allows pickles: what a careless writer would produce
    path.write_bytes(buf.getvalue())


def test_pickle_bearing_array(tmp_path):
    path = tmp_path / "p.npz"
    _raw_npz(path, amp=np.array([{"a": 1}], dtype=object), **{META_KEY: np.array("{}")})
    with pytest.raises(CaptureError, match=r"p.npz: array 'amp' holds Python objects \(pickle\)"):
        load_capture(path)


def test_missing_meta(tmp_path):
    path = tmp_path / "m.npz"
    _raw_npz(path, amp=np.zeros(3))
    with pytest.raises(CaptureError, match=r"m.npz has no '__meta__' entry"):
        load_capture(path)


def test_bad_meta(tmp_path):
    path = tmp_path / "m.npz"
    _raw_npz(path, amp=np.zeros(3), **{META_KEY: np.array("{not json")})
    with pytest.raises(CaptureError, match=r"m.npz: '__meta__' is not valid JSON"):
        load_capture(path)
    _raw_npz(path, amp=np.zeros(3), **{META_KEY: np.zeros(2)})
    with pytest.raises(CaptureError, match=r"must be a 0-d unicode string"):
        load_capture(path)


def test_unknown_stage_names_listed_with_known_ones(tmp_path):
    path = tmp_path / "u.npz"
    _raw_npz(path, amp=np.zeros(3), ampz=np.zeros(3), canvass=np.zeros(3), **{META_KEY: np.array("{}")})
    with pytest.raises(CaptureError) as info:
        load_capture(path)
    msg = str(info.value)
    assert str(path) in msg and "unknown stage name(s) ['ampz', 'canvass']" in msg
    assert "known stages are ['input_scaled', 'latent'," in msg and "batch inputs ['diffraction'" in msg


# --------------------------------------------------------------------------- validation
def expected_shapes():
    return {s.name: s.concrete_shape(**DIMS) for s in STAGES}


def test_validate_good_capture():
    assert validate_capture(full_capture(), expected_shapes()) == []
    assert validate_capture(full_capture("float64"), expected_shapes()) == []


def test_validate_reports_every_problem():
    cap = full_capture()
    del cap.stages["probe"]
    cap.stages["canvas"] = cap.stages["canvas"].real.copy()             # complex stage stored real
    cap.stages["amp"] = cap.stages["amp"].astype(np.complex64)          # real stage stored complex
    cap.stages["phase"] = np.zeros((2, 4, 8, 8), np.int32)
    cap.stages["latent"] = cap.stages["latent"][:1]
    cap.stages["pred_amp"] = cap.stages["pred_amp"].astype(np.float64)  # precision differs from meta
    cap.stages["bogus"] = np.zeros(1)
    problems = validate_capture(cap, expected_shapes())
    assert problems == [
        "missing stage(s) ['probe']",
        f"unknown stage(s) ['bogus']; known stages are {list(STAGE_NAMES)}",
        "stage latent: shape (1, 128, 8, 8), expected (2, 128, 8, 8) ('B', 'L', '8', '8')",
        "stage amp: dtype complex64 but the stage is real floating point",
        "stage phase: dtype int32 but the stage is real floating point",
        "stage canvas: dtype float32 but the stage is complex",
        "stage pred_amp: dtype float64 but the capture's dtype is float32",
    ]


def test_validate_subset_of_stages():
    cap = Capture(stages={"amp": np.zeros((2, 4, 8, 8), np.float32)})
    assert validate_capture(cap, stages=("amp",)) == []
    assert validate_capture(cap, stages=("amp", "phase")) == ["missing stage(s) ['phase']"]
