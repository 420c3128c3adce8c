"""Named, seeded input fixtures: registry, deterministic ``.npz`` files, manifest, loader.

A fixture is one synthetic batch from :func:`parity.synthetic.make_batch`, stored as
``parity/data/fixtures/<name>.npz`` (numeric arrays only, no pickles; package data, so an
installed package carries them) and described in ``parity/data/fixtures/manifest.json``
(sha256 of the file and of its array contents, spec fields, seed, shapes, dtypes, generator
version, simulation metadata).

The ``.npz`` files are written with :mod:`zipfile` and a fixed timestamp (``np.savez*`` stamps
the current time into the archive), so regenerating gives the same bytes and sha256.

Storage dtypes (:data:`STORED_DTYPES`): ``X`` float32, ``probe_raw`` and ``object`` complex64,
``offsets`` and ``centres`` float64 (their values are exact in either precision). The harness
casts to the run dtype.

Command line::

    python -m parity.fixtures [--out DIR]      # regenerate the stored fixtures + manifest
    python -m parity.fixtures --check [--out DIR]  # regenerate into a temp dir, compare hashes

(also ``parity fixtures ...``). Exit codes: 0 written / the check passed; 1 the check found a
difference; 2 bad input (unknown name, missing or unreadable manifest or file), one line.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import synthetic

#: Bump whenever a change to synthetic.py / this module changes any stored byte.
GENERATOR_VERSION = "1"
#: Default location of the stored fixtures (package data: installed with the package).
DEFAULT_DIR = Path(__file__).resolve().parent / "data" / "fixtures"
MANIFEST_NAME = "manifest.json"
#: Arrays of every fixture, in file order, with the dtype they are stored in.
STORED_DTYPES: Dict[str, np.dtype] = {
    "X": np.dtype(np.float32),
    "offsets": np.dtype(np.float64),
    "probe_raw": np.dtype(np.complex64),
    "object": np.dtype(np.complex64),
    "centres": np.dtype(np.float64),
}
#: Fixed zip timestamp (the earliest a zip can hold).
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


class FixtureError(ValueError):
    """A fixture file or manifest entry is unusable (message names file and reason)."""


@dataclass(frozen=True)
class FixtureSpec:
    """Everything that determines a fixture's contents (besides the generator version)."""

    name: str
    N: int
    gridsize: int
    B: int
    seed: int
    offsets_kind: str
    probe_kind: str
    poisson_photons: Optional[float] = None
    probe_scale: float = 4.0
    stored: bool = True  # False: nightly-only, generated on demand, not kept in DEFAULT_DIR
    description: str = ""

    @property
    def C(self) -> int:
        return self.gridsize * self.gridsize

    @property
    def file(self) -> str:
        return f"{self.name}.npz"

    def expected_shapes(self) -> Dict[str, Optional[Tuple[int, ...]]]:
        """Shapes per array; ``object`` is square of any size (None)."""
        return {
            "X": (self.B, self.C, self.N, self.N),
            "offsets": (self.B, self.C, 2),
            "probe_raw": (self.N, self.N),
            "object": None,
            "centres": (self.B, 2),
        }

    def generator_args(self) -> dict:
        return dict(
            N=self.N, gridsize=self.gridsize, B=self.B, seed=self.seed, offsets_kind=self.offsets_kind,
            probe_kind=self.probe_kind, poisson_photons=self.poisson_photons, probe_scale=self.probe_scale,
        )


def _spec(name, N, g, B, seed, kind, probe, photons=None, stored=True, description=""):
    return FixtureSpec(name, N, g, B, seed, kind, probe, photons, 4.0, stored, description)


_SPECS = (
    # ---- stored (fast tier) ----
    _spec("n64_g1_int", 64, 1, 8, 6401, "integer", "disk", description="gridsize 1, zero offsets, default disk probe"),
    _spec("n64_g2_int", 64, 2, 4, 6402, "integer", "disk", description="gridsize 2, integer zero-mean offsets"),
    _spec("n64_g2_sub", 64, 2, 4, 6403, "subpixel", "random_phase",
          description="gridsize 2, sub-pixel zero-mean offsets and centres, random-phase probe"),
    _spec("n64_g2_biased", 64, 2, 4, 6404, "biased", "disk",
          description="gridsize 2, offsets with batch mean (0.75, -1.25) (merge/extract quirk)"),
    _spec("n64_g2_poisson", 64, 2, 4, 6405, "integer", "disk", 1e5,
          description="gridsize 2, integer offsets, Poisson noise at 1e5 counts per pattern"),
    _spec("n128_g2_int", 128, 2, 2, 12801, "integer", "disk", description="N=128, gridsize 2, integer offsets"),
    _spec("n128_g1_sub", 128, 1, 4, 12802, "subpixel", "random_phase",
          description="N=128, gridsize 1 (offsets 0), sub-pixel group centres, random-phase probe"),
    # ---- nightly only (generated on demand) ----
    _spec("n256_g1_int", 256, 1, 2, 25601, "integer", "disk", stored=False, description="N=256, gridsize 1"),
    _spec("n64_g3_int", 64, 3, 4, 6406, "integer", "disk", stored=False, description="gridsize 3, integer offsets"),
    _spec("n64_g2_big", 64, 2, 16, 6407, "integer", "disk", stored=False,
          description="B*C = 64 (where upstream collapsed the batch into one canvas)"),
    _spec("n128_g3_big", 128, 3, 8, 12803, "integer", "disk", stored=False,
          description="N=128, gridsize 3, B*C = 72"),
)

#: Registry of every named fixture.
FIXTURES: Dict[str, FixtureSpec] = {s.name: s for s in _SPECS}
STORED: Tuple[str, ...] = tuple(s.name for s in _SPECS if s.stored)
NIGHTLY: Tuple[str, ...] = tuple(s.name for s in _SPECS if not s.stored)


def get_spec(name: str) -> FixtureSpec:
    try:
        return FIXTURES[name]
    except KeyError:
        raise KeyError(f"unknown fixture {name!r}; known fixtures are {sorted(FIXTURES)}") from None


@dataclass(frozen=True)
class Fixture:
    """A loaded fixture: its spec, its arrays (stored dtypes) and its manifest entry."""

    spec: FixtureSpec
    arrays: Mapping[str, np.ndarray]
    meta: Mapping[str, object] = field(default_factory=dict)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    @property
    def X(self) -> np.ndarray:
        return self.arrays["X"]

    @property
    def offsets(self) -> np.ndarray:
        return self.arrays["offsets"]

    @property
    def probe_raw(self) -> np.ndarray:
        return self.arrays["probe_raw"]

    @property
    def object(self) -> np.ndarray:
        return self.arrays["object"]

    @property
    def centres(self) -> np.ndarray:
        return self.arrays["centres"]


# ---------------------------------------------------------------------------------------------
# generation and hashing
# ---------------------------------------------------------------------------------------------
def generate(spec: FixtureSpec) -> Tuple[Dict[str, np.ndarray], Dict[str, object]]:
    """Arrays (cast to :data:`STORED_DTYPES`) and simulation metadata of one fixture."""
    arrays, metadata = synthetic.make_batch(**spec.generator_args())
    stored = {k: np.ascontiguousarray(arrays[k].astype(dt)) for k, dt in STORED_DTYPES.items()}
    return stored, metadata


def content_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """Hash of the array contents (names, dtypes, shapes, bytes): independent of zip/zlib."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_npz(path, arrays: Mapping[str, np.ndarray]) -> None:
    """Deterministic compressed ``.npz``: fixed member order and timestamp, no pickles."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)
    tmp.replace(path)


def _describe(spec: FixtureSpec, arrays, metadata, sha: str, size: int) -> dict:
    return {
        "file": spec.file,
        "sha256": sha,
        "content_sha256": content_sha256(arrays),
        "bytes": size,
        "generator_version": GENERATOR_VERSION,
        "seed": spec.seed,
        "spec": {f.name: getattr(spec, f.name) for f in fields(spec)},
        "arrays": {k: {"shape": list(v.shape), "dtype": v.dtype.str} for k, v in arrays.items()},
        "metadata": metadata,
    }


def _read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST_NAME
    if not path.exists():
        raise FileNotFoundError(
            f"fixture manifest {path} does not exist; write it with `python -m parity.fixtures --out {directory}`"
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FixtureError(f"fixture manifest {path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("fixtures"), dict):
        raise FixtureError(f"fixture manifest {path} has no 'fixtures' table")
    return manifest


def _write_manifest(directory: Path, entries: Mapping[str, dict]) -> None:
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "format": "npz written by parity.fixtures.write_npz (zip, deflate level 9, fixed timestamps)",
        "stored_dtypes": {k: v.str for k, v in STORED_DTYPES.items()},
        "generated_with": {"numpy": np.__version__, "zlib": __import__("zlib").ZLIB_RUNTIME_VERSION},
        "fixtures": {k: entries[k] for k in sorted(entries)},
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    tmp = directory / (MANIFEST_NAME + ".partial")
    tmp.write_text(text)
    tmp.replace(directory / MANIFEST_NAME)


def write_fixtures(directory=None, names: Optional[Iterable[str]] = None) -> Dict[str, dict]:
    """Generate fixtures into ``directory`` (default :data:`DEFAULT_DIR`) and update its manifest.

    ``names`` defaults to every stored fixture. Entries of an existing manifest for other
    names are kept. Returns the manifest entries written.
    """
    directory = Path(directory) if directory is not None else DEFAULT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    names = list(STORED if names is None else names)
    entries: Dict[str, dict] = {}
    if (directory / MANIFEST_NAME).exists():
        try:
            entries = dict(_read_manifest(directory)["fixtures"])
        except (FixtureError, FileNotFoundError):
            entries = {}
    written = {}
    for name in names:
        spec = get_spec(name)
        arrays, metadata = generate(spec)
        path = directory / spec.file
        write_npz(path, arrays)
        written[name] = _describe(spec, arrays, metadata, file_sha256(path), path.stat().st_size)
    entries.update(written)
    _write_manifest(directory, entries)
    return written


# ---------------------------------------------------------------------------------------------
# loading and validation
# ---------------------------------------------------------------------------------------------
def read_npz(path, spec: FixtureSpec) -> Dict[str, np.ndarray]:
    """Read and validate one fixture file (no hash check): structure, shapes, dtypes, values."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"fixture file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise FixtureError(
            f"fixture file {path} is not a readable .npz archive (corrupt or truncated?): "
            f"no zip end-of-archive record ({path.stat().st_size} bytes)"
        )
    arrays: Dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                arrays[key] = data[key]
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise FixtureError(
                f"fixture file {path} holds a pickled (object) array, which is refused; "
                f"fixtures hold numeric arrays only ({exc})"
            ) from None
        raise FixtureError(f"fixture file {path} is not a readable .npz archive (corrupt or truncated?): {exc}") from None
    except Exception as exc:  # BadZipFile, OSError, EOFError, zlib.error, ...: unreadable archive
        raise FixtureError(
            f"fixture file {path} is not a readable .npz archive (corrupt or truncated?): "
            f"{type(exc).__name__}: {exc}"
        ) from None
    problems: List[str] = []
    missing = [k for k in STORED_DTYPES if k not in arrays]
    if missing:
        problems.append(f"missing array(s) {missing} (found {sorted(arrays)})")
    extra = sorted(set(arrays) - set(STORED_DTYPES))
    if extra:
        problems.append(f"unexpected array(s) {extra}")
    for key, shape in spec.expected_shapes().items():
        if key not in arrays:
            continue
        arr = arrays[key]
        if shape is None:
            if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
                problems.append(f"array {key!r} has shape {arr.shape}, expected a square 2-D array")
        elif arr.shape != shape:
            problems.append(f"array {key!r} has shape {arr.shape}, expected {shape}")
        if arr.dtype != STORED_DTYPES[key]:
            problems.append(f"array {key!r} has dtype {arr.dtype}, expected {STORED_DTYPES[key]}")
        elif not np.all(np.isfinite(arr)):
            problems.append(f"array {key!r} holds NaN or Inf")
    if "X" in arrays and arrays["X"].dtype.kind == "f" and np.any(arrays["X"] < 0):
        problems.append("array 'X' holds negative amplitudes")
    if problems:
        raise FixtureError(f"fixture file {path} is invalid for fixture {spec.name!r}: " + "; ".join(problems))
    return {k: arrays[k] for k in STORED_DTYPES}


def load_fixture(name: str, directory=None, *, verify: bool = True) -> Fixture:
    """Load a fixture by name.

    Stored fixtures are read from ``directory`` (default :data:`DEFAULT_DIR`); with ``verify``
    the file's sha256 must equal the manifest's (``ValueError`` naming the file and both
    hashes otherwise). A nightly fixture that the manifest does not list is generated in
    memory (deterministically, same dtypes as on disk).
    """
    spec = get_spec(name)
    directory = Path(directory) if directory is not None else DEFAULT_DIR
    manifest_path = directory / MANIFEST_NAME
    entry = None
    if manifest_path.exists() or spec.stored:
        manifest = _read_manifest(directory)
        entry = manifest["fixtures"].get(name)
    if entry is None:
        if spec.stored:
            raise FixtureError(
                f"fixture {name!r} is not listed in {manifest_path}; regenerate with `python -m parity.fixtures`"
            )
        arrays, metadata = generate(spec)
        return Fixture(spec, arrays, {"generated_on_demand": True, "generator_version": GENERATOR_VERSION,
                                      "metadata": metadata})
    if entry.get("generator_version") != GENERATOR_VERSION:
        raise FixtureError(
            f"fixture {name!r} in {manifest_path} was made by generator version "
            f"{entry.get('generator_version')!r}, this code is version {GENERATOR_VERSION!r}; "
            f"regenerate with `python -m parity.fixtures`"
        )
    path = directory / entry.get("file", spec.file)
    if not path.exists():
        raise FileNotFoundError(f"fixture file {path} (listed in {manifest_path}) does not exist")
    if verify:
        got = file_sha256(path)
        expected = entry.get("sha256")
        if got != expected:
            size = path.stat().st_size
            raise FixtureError(
                f"fixture file {path} fails its checksum: expected sha256 {expected}, got {got} "
                f"({size} bytes on disk, manifest says {entry.get('bytes')})"
            )
    arrays = read_npz(path, spec)
    return Fixture(spec, arrays, entry)


# ---------------------------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------------------------
def check_fixtures(directory=None, names: Optional[Sequence[str]] = None) -> List[str]:
    """Regenerate into a temp dir and compare with ``directory``'s manifest; list problems."""
    directory = Path(directory) if directory is not None else DEFAULT_DIR
    manifest = _read_manifest(directory)
    listed = manifest["fixtures"]
    names = list(STORED if names is None else names)
    problems: List[str] = []
    if manifest.get("generator_version") != GENERATOR_VERSION:
        problems.append(
            f"manifest generator_version {manifest.get('generator_version')!r} != code {GENERATOR_VERSION!r}"
        )
    unknown = sorted(set(listed) - set(FIXTURES))
    if unknown:
        problems.append(f"manifest lists fixture(s) {unknown} that the registry does not know")
    with tempfile.TemporaryDirectory(prefix="parity-fixtures-") as tmp:
        fresh = write_fixtures(tmp, names)
        for name in names:
            entry = listed.get(name)
            if entry is None:
                problems.append(f"{name}: not listed in {directory / MANIFEST_NAME}")
                continue
            new = fresh[name]
            stored_path = directory / entry["file"]
            if not stored_path.exists():
                problems.append(f"{name}: stored file {stored_path} is missing")
            elif file_sha256(stored_path) != entry["sha256"]:
                problems.append(
                    f"{name}: stored file {stored_path} has sha256 {file_sha256(stored_path)}, "
                    f"manifest says {entry['sha256']}"
                )
            if new["sha256"] != entry["sha256"]:
                if new["content_sha256"] == entry.get("content_sha256"):
                    why = "array contents are identical; only the zip/deflate bytes differ (zlib version?)"
                else:
                    why = _array_differences(Path(tmp) / new["file"], stored_path, get_spec(name))
                problems.append(
                    f"{name}: regenerated sha256 {new['sha256']} != manifest {entry['sha256']} ({why})"
                )
    return problems


def _array_differences(new_path: Path, old_path: Path, spec: FixtureSpec) -> str:
    try:
        new = read_npz(new_path, spec)
        old = read_npz(old_path, spec)
    except (FixtureError, FileNotFoundError) as exc:
        return f"cannot compare arrays: {exc}"
    parts = []
    for key in STORED_DTYPES:
        a, b = new[key], old[key]
        if a.shape != b.shape:
            parts.append(f"{key}: shape {b.shape} -> {a.shape}")
        elif not np.array_equal(a, b):
            diff = float(np.max(np.abs(a.astype(np.complex128) - b.astype(np.complex128))))
            scale = float(np.max(np.abs(b))) or 1.0
            parts.append(f"{key}: max |diff| {diff:.3g} (relative {diff / scale:.3g})")
    return "array contents differ: " + ("; ".join(parts) if parts else "metadata only")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parity.fixtures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="regenerate into a temp dir and compare hashes with DIR's manifest")
    parser.add_argument("--out", default=str(DEFAULT_DIR), help="fixture directory (default: %(default)s)")
    parser.add_argument("--names", nargs="*", default=None,
                        help=f"fixtures to handle (default: the stored set {list(STORED)}); nightly: {list(NIGHTLY)}")
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        if args.check:
            problems = check_fixtures(out, args.names)
            if problems:
                print(f"fixture check FAILED for {out}:", file=sys.stderr)
                for p in problems:
                    print(f"  - {p}", file=sys.stderr)
                return 1
            print(f"fixture check OK: {len(args.names or STORED)} fixtures in {out} match the manifest")
            return 0
        written = write_fixtures(out, args.names)
    except (FixtureError, FileNotFoundError, KeyError) as exc:  # bad input: an unusable file or name
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total = 0
    for name, entry in written.items():
        total += entry["bytes"]
        shapes = ", ".join(f"{k}{tuple(v['shape'])}" for k, v in entry["arrays"].items())
        print(f"{entry['file']:<24} {entry['bytes']:>9} B  sha256 {entry['sha256'][:16]}  {shapes}")
    print(f"wrote {len(written)} fixtures ({total} bytes) and {out / MANIFEST_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
