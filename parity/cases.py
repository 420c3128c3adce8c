"""Named, frozen parity cases and the suites that group them.

A case is a model config (forward-model.md §1 fields that differ from the defaults) + a
fixture + a weight set + dtype + batch size. :func:`prepare` turns a case into the three
things both backends receive: the config dict, the neutral weights and the canonical inputs.

Weights are named ``"glorot:<seed>"`` (Glorot-uniform from a seed, reference_tf.weights)
or ``"file:<name>"`` (``parity/data/fixtures/weights/<name>.npz``, e.g. a set trained by the
reference; package data, like the fixtures).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from reference_tf.config import ModelConfig
from reference_tf.weights import check_weights, init_weights, load_weights_npz

from . import fixtures as fixture_store

WEIGHTS_DIR = fixture_store.DEFAULT_DIR / "weights"
SUITES = ("default", "nightly", "adversarial", "ptychopinn")


@dataclass(frozen=True)
class Case:
    name: str
    fixture: str
    model: Tuple[Tuple[str, object], ...] = ()  # config fields that differ from the defaults
    weights: str = "glorot:1"
    dtype: str = "float32"
    batch: Optional[int] = None  # None: the whole fixture batch
    input_seed: Optional[int] = None  # None: the stored fixture; else regenerate with this seed
    suites: Tuple[str, ...] = ("default",)
    covers: str = ""
    variant: Optional[str] = None  # an adversarial transform of the inputs (see VARIANTS)
    tolerance_mode: str = "table"  # "noise_floor" where fixed tolerances cannot fit the conditioning

    @property
    def config(self) -> ModelConfig:
        spec = fixture_store.get_spec(self.fixture)
        fields = dict(self.model)
        fields.setdefault("N", spec.N)
        fields.setdefault("gridsize", spec.gridsize)
        fields.setdefault("probe_scale", spec.probe_scale)
        return ModelConfig(**fields)

    def with_(self, **changes) -> "Case":
        """A variant of this case (e.g. another dtype or input seed), renamed to say so."""
        suffix = "".join(f"@{k}={v}" for k, v in changes.items() if k not in ("name", "suites"))
        changes.setdefault("name", self.name + suffix)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = dict(self.model)
        d["config"] = self.config.to_dict()
        return d


def _m(**kw) -> Tuple[Tuple[str, object], ...]:
    return tuple(sorted(kw.items()))


_CASES = (
    # ---- default suite: every configuration axis of forward-model.md §1 at least once ----
    Case("n64_g2", "n64_g2_int", _m(n_filters_scale=1), "file:n64_g2_n1_trained",
         covers="defaults (object_big, sigmoid, pad_object), integer offsets, trained weights, n=1"),
    Case("n64_g1", "n64_g1_int", covers="gridsize 1, zero offsets"),
    Case("n64_g2_sub_swish", "n64_g2_sub", _m(amp_activation="swish"), "glorot:2",
         covers="sub-pixel offsets, random-phase probe, swish"),
    Case("n64_g2_biased_softplus", "n64_g2_biased", _m(amp_activation="softplus"), "glorot:3",
         covers="offsets with non-zero batch mean, softplus"),
    Case("n64_g2_probe_big_relu", "n64_g2_int", _m(probe_big=True, amp_activation="relu"), "glorot:4",
         covers="probe_big border branch, relu"),
    Case("n64_g1_pad_false", "n64_g1_int", _m(pad_object=False), "glorot:5", covers="pad_object False"),
    Case("n64_g2_object_small", "n64_g2_int", _m(object_big=False), "glorot:6",
         covers="object_big False with gridsize 2 (C shifted copies)"),
    Case("n64_g2_mask_smooth", "n64_g2_poisson", _m(probe_mask=True, gaussian_smoothing_sigma=0.8), "glorot:7",
         covers="probe_mask, gaussian smoothing, Poisson-noisy data"),
    Case("n128_g2", "n128_g2_int", covers="N 128, gridsize 2"),
    Case("n128_g1_sub", "n128_g1_sub", _m(probe_big=True), "glorot:8", covers="N 128 sub-pixel, probe_big"),
    # Added for the fault self-test (parity/faults/): faults whose effect is ~1e-8 of the stage
    # scale, below every float32 tolerance, and float32 arithmetic inside a float64 run.
    Case("n64_g2_f64_smooth", "n64_g2_sub", _m(n_filters_scale=1, probe_big=True, gaussian_smoothing_sigma=0.8),
         "glorot:10", dtype="float64", batch=1,
         covers="float64 end to end in the default suite (float32 accumulation); smoothing padding without "
                "probe_mask (the exit wave's outermost pixels are ~1e-9 of its peak); probe normalisation mask "
                "(the probe has ~1e-8 of its amplitude outside the disk)"),
    Case("n64_g1_f64_mask", "n64_g1_int", _m(n_filters_scale=1, probe_mask=True), "glorot:11", dtype="float64",
         batch=2, covers="probe_mask in float64 (the mask removes ~1e-8 of the exit wave's peak, below float32 "
                         "tolerances)"),
    # ---- nightly additions ----
    Case("n256_g1", "n256_g1_int", suites=("nightly",), covers="N 256"),
    Case("n64_g3", "n64_g3_int", suites=("nightly",), covers="gridsize 3"),
    Case("n64_g2_big", "n64_g2_big", suites=("nightly",), covers="B*C = 64"),
    Case("n128_g3_big", "n128_g3_big", _m(probe_big=True), suites=("nightly",), covers="N 128 gridsize 3, B*C = 72"),
    Case("n64_g2_f64", "n64_g2_sub", _m(probe_big=True), "glorot:9", dtype="float64", suites=("nightly",),
         covers="float64 end to end"),
    # ---- adversarial inputs for the kernels (device matrix; also nightly) ----
    Case("adv_near_zero", "n64_g2_sub", variant="near_zero", suites=("adversarial", "nightly"),
         covers="diffraction x 1e-6 and a probe of 1e-20 outside its disk: near-zero amplitudes"),
    Case("adv_large", "n64_g2_int", variant="large", suites=("adversarial", "nightly"), tolerance_mode="noise_floor",
         covers="diffraction x 1e3: large magnitudes through the network and the far field; the network is "
                "ill-conditioned there (TF's own float32 error at `phase` is 3e-4 of its float64 run), so the "
                "case is gated by the noise floor"),
    Case("adv_half_pixel", "n64_g2_int", variant="half_pixel", suites=("adversarial", "nightly"),
         covers="offsets at exact half pixels (bilinear weights 0.5)"),
    Case("adv_canvas_edge", "n64_g2_int", variant="canvas_edge", suites=("adversarial", "nightly"),
         covers="offsets that push patches to the canvas edge (zero fill of outside corners)"),
    Case("adv_sharp_probe", "n64_g2_int", _m(probe_big=True), variant="sharp_probe",
         suites=("adversarial", "nightly"), covers="a hard-edged disk probe with a phase step"),
    # ---- upstream PtychoPINN's code paths (--pair ptycho:ptycho_torch --suite ptychopinn; any pair runs them) ----
    Case("pp_n64_g2_int", "n64_g2_int", weights="glorot:21", suites=("ptychopinn",),
         covers="gridsize 2, integer offsets with zero batch mean: where the upstream models should agree"),
    Case("pp_n64_g2_sub", "n64_g2_sub", weights="glorot:22", suites=("ptychopinn",),
         covers="gridsize 2, sub-pixel offsets: the merge's normalisation at the window edges"),
    Case("pp_n64_g1", "n64_g1_int", weights="glorot:23", suites=("ptychopinn",),
         covers="gridsize 1: the decoder's outer slice, the canvas size"),
    Case("pp_n64_g2_probe_big", "n64_g2_int", _m(probe_big=True), "glorot:24", suites=("ptychopinn",),
         covers="probe_big: the border branch through the merge"),
    Case("pp_n64_g2_biased", "n64_g2_biased", weights="glorot:25", suites=("ptychopinn",),
         covers="offsets with a non-zero batch mean: merge recentring vs extraction"),
    Case("pp_n64_g2_big", "n64_g2_big", weights="glorot:26", suites=("ptychopinn",),
         covers="B*C = 64: the batched merge"),
    Case("pp_n128_g2", "n128_g2_int", weights="glorot:27", suites=("ptychopinn",), covers="N 128, gridsize 2"),
    Case("pp_n64_g2_swish", "n64_g2_int", _m(amp_activation="swish"), "glorot:28", suites=("ptychopinn",),
         covers="swish amplitude head (SiLU in the torch port)"),
    Case("pp_n64_g2_mask", "n64_g2_int", _m(probe_mask=True), "glorot:29", suites=("ptychopinn",),
         covers="probe_mask: the hard disk on the exit wave"),
)

CASES: Dict[str, Case] = {c.name: c for c in _CASES}


def suite(name: str) -> Tuple[Case, ...]:
    """``default``: the default cases; ``nightly``: the default cases plus the nightly ones
    (adversarial included); ``adversarial``: the adversarial-input cases; ``ptychopinn``: the
    cases of upstream PtychoPINN's code paths (for the ptycho and ptycho_torch sides)."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; expected one of {list(SUITES)}")
    if name == "nightly":
        return tuple(c for c in _CASES if "default" in c.suites or "nightly" in c.suites)
    return tuple(c for c in _CASES if name in c.suites)


def _variant(name: str, cfg: ModelConfig, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Adversarial transforms of canonical inputs (NumPy, deterministic)."""
    d, o, p = inputs["diffraction"].copy(), inputs["offsets"].copy(), inputs["probe_raw"].copy()
    n = cfg.N
    c = np.arange(n) - n // 2 + 0.5
    r = np.hypot(c[:, None], c[None, :])
    if name == "near_zero":
        d *= 1e-6
        p = np.where(r < n // 4, p, 1e-20 + 0j)
    elif name == "large":
        d *= 1e3
    elif name == "half_pixel":
        # exact half pixels, away from zero: symmetric groups keep a zero mean
        o = np.where(o >= 0, np.floor(o) + 0.5, np.ceil(o) - 0.5)
    elif name == "canvas_edge":
        reach = (cfg.M - n) / 2 - 0.25
        o = np.sign(o + 1e-9) * reach
        o -= o.mean(axis=1, keepdims=True)
    elif name == "sharp_probe":
        p = np.where(r < n // 4, np.exp(1j * np.where(c[None, :] < 0, 0.0, np.pi / 2)), 0.0).astype(np.complex128)
    else:
        raise ValueError(f"unknown input variant {name!r}; expected one of {list(VARIANTS)}")
    return {"diffraction": d, "offsets": o, "probe_raw": p}


VARIANTS = ("near_zero", "large", "half_pixel", "canvas_edge", "sharp_probe")


def get_case(name: str) -> Case:
    try:
        return CASES[name]
    except KeyError:
        raise KeyError(f"unknown case {name!r}; known cases are {sorted(CASES)}") from None


def load_case_weights(case: Case) -> Dict[str, np.ndarray]:
    kind, _, arg = case.weights.partition(":")
    cfg = case.config
    if kind == "glorot":
        weights = init_weights(cfg, int(arg))
    elif kind == "file":
        path = WEIGHTS_DIR / f"{arg}.npz"
        weights = load_weights_npz(path)
    else:
        raise ValueError(f"case {case.name}: weights {case.weights!r} must be 'glorot:<seed>' or 'file:<name>'")
    check_weights(cfg, weights)
    return weights


def check_case_files(cases) -> None:
    """Read every stored fixture and weight file the cases use, before anything runs.

    Fixtures are checked as :func:`prepare` loads them (sha256 against the manifest, arrays,
    shapes); weight files must be readable and fit the case's config. Raises FixtureError,
    FileNotFoundError or ValueError; the message names the file.
    """
    fixtures_seen, weights_seen = set(), set()
    for case in cases:
        spec = fixture_store.get_spec(case.fixture)
        if case.input_seed is None and spec.stored and case.fixture not in fixtures_seen:
            fixture_store.load_fixture(case.fixture)
            fixtures_seen.add(case.fixture)
        kind, _, arg = case.weights.partition(":")
        if kind == "file" and (case.weights, case.fixture, case.model) not in weights_seen:
            path = WEIGHTS_DIR / f"{arg}.npz"
            try:
                load_case_weights(case)
            except ValueError as exc:
                if str(path) in str(exc):
                    raise
                raise ValueError(f"weights file {path} (case {case.name}): {exc}") from None
            weights_seen.add((case.weights, case.fixture, case.model))


def config_of(case: Case) -> Dict[str, object]:
    """The case's config dict (what :func:`prepare` gives the sides), without loading anything."""
    return case.config.to_dict()


def prepare(case: Case) -> Tuple[Dict[str, object], Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """(config dict, neutral weights, canonical inputs) of a case.

    Inputs are float64 / complex128 NumPy arrays; each backend casts them to its run dtype.
    ``diffraction = s * X`` (forward-model.md §2), computed once here in float64.
    """
    cfg = case.config
    if case.input_seed is None:
        fx = fixture_store.load_fixture(case.fixture)
        arrays = fx.arrays
    else:
        spec = dataclasses.replace(fixture_store.get_spec(case.fixture), seed=case.input_seed)
        arrays, _ = fixture_store.generate(spec)
    batch = arrays["X"].shape[0] if case.batch is None else case.batch
    if not 1 <= batch <= arrays["X"].shape[0]:
        raise ValueError(f"case {case.name}: batch={batch} but fixture {case.fixture} holds {arrays['X'].shape[0]}")
    inputs = {
        "diffraction": cfg.scale * np.asarray(arrays["X"][:batch], dtype=np.float64),
        "offsets": np.asarray(arrays["offsets"][:batch], dtype=np.float64),
        "probe_raw": np.asarray(arrays["probe_raw"], dtype=np.complex128),
    }
    if case.variant is not None:
        inputs = _variant(case.variant, cfg, inputs)
    return cfg.to_dict(), load_case_weights(case), inputs


def fixture_hashes(cases) -> Dict[str, str]:
    """sha256 of every stored fixture (and weight file) the cases use (cases without a fixture
    file are skipped)."""
    out: Dict[str, str] = {}
    for case in cases:
        spec = fixture_store.FIXTURES.get(case.fixture)
        if spec is None:  # a case of another pair, generated from a seed (parity.byo.cases)
            continue
        if spec.stored:
            out[spec.file] = fixture_store.file_sha256(fixture_store.DEFAULT_DIR / spec.file)
        kind, _, arg = case.weights.partition(":")
        if kind == "file":
            path = WEIGHTS_DIR / f"{arg}.npz"
            if path.exists():
                out[f"weights/{arg}.npz"] = fixture_store.file_sha256(path)
    return out
