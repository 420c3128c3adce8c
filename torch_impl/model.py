"""The port's forward model: network + physics, computed and recorded stage by stage (§7).

Native layout is the canonical channels-first layout of ``docs/architecture.md``, so the
port's stage tensors need no conversion. :meth:`ForwardModel.forward` is a loop over
:data:`STAGE_TABLE` that calls :meth:`ForwardModel.stage`, so a full forward and teacher
forcing (one stage fed with another backend's inputs) run the same code.
"""
from __future__ import annotations

import os
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import torch

from . import physics
from .config import ModelConfig
from .network import Generator
from .weights import check_weights, from_torch_state, init_weights, to_torch_state

#: Stage order and the inputs each stage is computed from (mirrors parity/stages.py; a
#: unit test checks that the two agree).
STAGE_TABLE: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("input_scaled", ("diffraction",)),
    ("latent", ("input_scaled",)),
    ("amp", ("latent",)),
    ("phase", ("latent",)),
    ("object_patches", ("amp", "phase")),
    ("canvas", ("object_patches", "offsets")),
    ("trimmed_object", ("canvas",)),
    ("extracted_patches", ("canvas", "offsets")),
    ("probe", ("probe_raw",)),
    ("exit_wave", ("extracted_patches", "probe")),
    ("far_field_amp", ("exit_wave",)),
    ("pred_amp", ("far_field_amp",)),
    ("pred_intensity", ("pred_amp",)),
    ("loss_nll", ("pred_intensity", "diffraction")),
    ("loss_mae", ("pred_amp", "diffraction")),
)
STAGE_INPUTS: Dict[str, Tuple[str, ...]] = dict(STAGE_TABLE)
STAGE_NAMES: Tuple[str, ...] = tuple(name for name, _ in STAGE_TABLE)
BATCH_INPUTS: Tuple[str, ...] = ("diffraction", "offsets", "probe_raw")
OUTPUTS: Tuple[str, ...] = ("pred_amp", "pred_intensity", "trimmed_object", "loss_nll", "loss_mae")

#: Canonical symbolic shape and complexness of every tensor a stage reads or writes
#: (``L`` = 128n; ``"8"`` and ``"2"`` are literal sizes).
TENSOR_SPECS: Dict[str, Tuple[Tuple[str, ...], bool]] = {
    "diffraction": (("B", "C", "N", "N"), False),
    "offsets": (("B", "C", "2"), False),
    "probe_raw": (("N", "N"), True),
    "input_scaled": (("B", "C", "N", "N"), False),
    "latent": (("B", "L", "8", "8"), False),
    "amp": (("B", "K", "N", "N"), False),
    "phase": (("B", "K", "N", "N"), False),
    "object_patches": (("B", "K", "N", "N"), True),
    "canvas": (("B", "M", "M"), True),
    "trimmed_object": (("B", "N", "N"), True),
    "extracted_patches": (("B", "C", "N", "N"), True),
    "probe": (("N", "N"), True),
    "exit_wave": (("B", "C", "N", "N"), True),
    "far_field_amp": (("B", "C", "N", "N"), False),
    "pred_amp": (("B", "C", "N", "N"), False),
    "pred_intensity": (("B", "C", "N", "N"), False),
    "loss_nll": ((), False),
    "loss_mae": ((), False),
}

DTYPES = {
    "float32": (torch.float32, torch.complex64),
    "float64": (torch.float64, torch.complex128),
}

#: Inputs that may be given real although they are complex (the raw probe may be real-valued,
#: as the reference accepts too); everything else must match its kind exactly.
_REAL_ALLOWED_FOR_COMPLEX = ("probe_raw",)


# ---- determinism ----------------------------------------------------------------------------
def set_deterministic() -> None:
    """Process-wide: deterministic algorithms on, cuDNN deterministic, no benchmark, no TF32.

    Also sets ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` if unset (needed by deterministic cuBLAS).
    The thread count is left alone (it is reported by :func:`determinism_flags`).
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    # Deterministic mode fills new tensors with NaN; every tensor here is written before it is
    # read, so skip the fill (it cost 5-12% of the forward pass) - results are unchanged.
    torch.utils.deterministic.fill_uninitialized_memory = False


def determinism_flags() -> Dict[str, object]:
    """The process-wide torch settings that decide whether results are reproducible."""
    return {
        "torch_version": torch.__version__,
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        "deterministic_algorithms_warn_only": bool(torch.is_deterministic_algorithms_warn_only_enabled()),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "fill_uninitialized_memory": bool(torch.utils.deterministic.fill_uninitialized_memory),
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG", "<unset>"),
    }


# ---- the model ------------------------------------------------------------------------------
def _dtype_name(value) -> str:
    if isinstance(value, torch.Tensor):
        return str(value.dtype).replace("torch.", "")
    return str(value.dtype)


class ForwardModel:
    """The port for one config, dtype and device.

    weights: neutral weight set (see :mod:`torch_impl.weights`), checked with
    :func:`check_weights` and converted to the model dtype; ``None`` draws the
    Glorot-uniform set of ``seed`` (the same arrays as the reference's ``init_weights``).
    ``deterministic=True`` calls :func:`set_deterministic` (process-wide flags).
    """

    def __init__(
        self,
        config: ModelConfig,
        weights: Optional[Mapping[str, np.ndarray]] = None,
        *,
        dtype="float32",
        device="cpu",
        seed: Optional[int] = None,
        deterministic: bool = True,
    ):
        if isinstance(config, Mapping):
            config = ModelConfig.from_dict(dict(config))
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a torch_impl.config.ModelConfig, got {type(config).__name__}")
        dtype_name = {torch.float32: "float32", torch.float64: "float64"}.get(dtype, dtype)
        if dtype_name not in DTYPES:
            raise ValueError(f"dtype={dtype!r} is not supported; expected one of {sorted(DTYPES)}")
        if weights is not None and seed is not None:
            raise ValueError("ForwardModel takes either a weight set or a seed, not both")
        if weights is None and seed is None:
            raise ValueError("ForwardModel needs either a weight set or a seed to initialise one")
        if deterministic:
            set_deterministic()
        self.config = config
        self.dtype = dtype_name
        self.real_dtype, self.complex_dtype = DTYPES[dtype_name]
        self.device = torch.device(device)
        self.scale = config.scale
        # channels_last: the convolution kernels' preferred layout (27% faster forward on CPU,
        # measured on the default case); tensors keep their logical NCHW shape.
        self.generator = Generator(config).to(device=self.device, dtype=self.real_dtype,
                                              memory_format=torch.channels_last)
        self.generator.eval()
        self.generator.requires_grad_(False)
        self.load_weights(init_weights(config, seed) if weights is None else weights)

    # ---- weights ---------------------------------------------------------------------------
    def load_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Load a neutral weight set (checked; values cast to the model dtype)."""
        check_weights(self.config, weights)
        self.generator.load_state_dict(to_torch_state(self.config, weights), strict=True)
        self.generator.to(memory_format=torch.channels_last)

    def export_weights(self) -> Dict[str, np.ndarray]:
        """The neutral weight set, arrays in the model dtype (float64 for a float64 model)."""
        return from_torch_state(self.config, self.generator.state_dict())

    # ---- inputs ----------------------------------------------------------------------------
    def _sizes(self) -> Dict[str, int]:
        cfg = self.config
        return {"C": cfg.C, "K": cfg.K, "N": cfg.N, "M": cfg.M, "L": 128 * cfg.n_filters_scale, "8": 8, "2": 2}

    def _prepare(self, name: str, value, batch: Dict[str, int]) -> torch.Tensor:
        """Check one input/stage tensor against its canonical spec and cast it to the model
        dtype and device. ``batch`` carries the batch size B between the entries of one call.
        Raises ValueError naming the entry, expected vs got; never reshapes or broadcasts."""
        symbolic, is_complex = TENSOR_SPECS[name]
        if isinstance(value, torch.Tensor):
            tensor = value.detach()
        else:
            arr = np.asarray(value)
            if arr.dtype.kind not in "fc":
                raise ValueError(
                    f"{name} must be {'complex' if is_complex else 'real floating'}, got dtype {arr.dtype}"
                )
            tensor = torch.from_numpy(np.ascontiguousarray(arr))
        got_complex = tensor.is_complex()
        got_float = tensor.is_floating_point()
        if is_complex:
            ok = got_complex or (got_float and name in _REAL_ALLOWED_FOR_COMPLEX)
            want = "complex (or real floating)" if name in _REAL_ALLOWED_FOR_COMPLEX else "complex"
        else:
            ok = got_float
            want = "real floating"
        if not ok:
            raise ValueError(f"{name} must be {want}, got dtype {_dtype_name(tensor)}")
        sizes = self._sizes()
        got = tuple(tensor.shape)
        b = batch.get("B")
        expected = tuple(b if (s == "B" and b is not None) else sizes.get(s, s) for s in symbolic)
        shape_ok = len(got) == len(symbolic) and all(
            (s == "B" and b is None and g >= 1) or g == e for s, g, e in zip(symbolic, got, expected)
        )
        if not shape_ok:
            shown = "(" + ", ".join(str(e) for e in expected) + ("," if len(expected) == 1 else "") + ")"
            raise ValueError(f"{name} must have shape {shown}, got {got}")
        if symbolic and symbolic[0] == "B" and b is None:
            batch["B"] = got[0]
        if name == "offsets" and not bool(torch.isfinite(tensor).all()):
            raise ValueError("offsets must be finite, got NaN or Inf")
        target = self.complex_dtype if is_complex else self.real_dtype
        return tensor.to(device=self.device, dtype=target)

    def _check_batch(self, diffraction, offsets, probe_raw) -> Dict[str, torch.Tensor]:
        batch: Dict[str, int] = {}
        return {
            "diffraction": self._prepare("diffraction", diffraction, batch),
            "offsets": self._prepare("offsets", offsets, batch),
            "probe_raw": self._prepare("probe_raw", probe_raw, batch),
        }

    # ---- stages ----------------------------------------------------------------------------
    def stage(self, name: str, env: Mapping[str, object]) -> torch.Tensor:
        """Compute one stage from its inputs in ``env`` (canonical-layout tensors or arrays)."""
        if name not in STAGE_INPUTS:
            raise KeyError(f"unknown stage {name!r}; known stages are {list(STAGE_NAMES)}")
        needed = STAGE_INPUTS[name]
        missing = [k for k in needed if k not in env]
        if missing:
            raise KeyError(f"stage {name!r} needs {list(needed)}; missing {missing}")
        batch: Dict[str, int] = {}
        e = {k: self._prepare(k, env[k], batch) for k in needed}
        with torch.no_grad():
            return self._compute(name, e)

    def _compute(self, name: str, e: Dict[str, torch.Tensor]) -> torch.Tensor:
        cfg, s = self.config, self.scale
        if name == "input_scaled":
            return e["diffraction"] / s
        if name == "latent":
            return self.generator.encoder(e["input_scaled"])
        if name == "amp":
            return self.generator.decoder_amp(e["latent"])
        if name == "phase":
            return self.generator.decoder_phase(e["latent"])
        if name == "object_patches":
            return physics.combine_complex(e["amp"], e["phase"])
        if name == "canvas":
            if cfg.object_big:
                return physics.merge_patches(e["object_patches"], e["offsets"], cfg.M)
            return physics.pad_patches(e["object_patches"], cfg.M)
        if name == "trimmed_object":
            return physics.center_crop(e["canvas"], cfg.N)
        if name == "extracted_patches":
            return physics.extract_patches(e["canvas"], e["offsets"], cfg.N)
        if name == "probe":
            return physics.normalize_probe(e["probe_raw"], cfg.probe_scale)
        if name == "exit_wave":
            return physics.illuminate(e["extracted_patches"], e["probe"], cfg.gaussian_smoothing_sigma, cfg.probe_mask)
        if name == "far_field_amp":
            return physics.far_field_amplitude(e["exit_wave"])
        if name == "pred_amp":
            return s * e["far_field_amp"]
        if name == "pred_intensity":
            return torch.square(e["pred_amp"])
        if name == "loss_nll":
            return physics.poisson_nll(e["pred_intensity"], e["diffraction"])
        if name == "loss_mae":
            return physics.mean_abs_error(e["pred_amp"], e["diffraction"])
        raise KeyError(f"unknown stage {name!r}; known stages are {list(STAGE_NAMES)}")  # pragma: no cover

    def forward(self, diffraction, offsets, probe_raw, taps: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        """Run one batch: diffraction (B, C, N, N) real = Xs, offsets (B, C, 2) ``[dx, dy]``,
        probe_raw (N, N) complex. Returns pred_amp, pred_intensity, trimmed_object, loss_nll,
        loss_mae; if ``taps`` is a dict, every stage is stored in it (detached) under its name."""
        with torch.no_grad():
            env: Dict[str, torch.Tensor] = self._check_batch(diffraction, offsets, probe_raw)
            for name in STAGE_NAMES:
                env[name] = self.stage(name, env)
                if taps is not None:
                    taps[name] = env[name].detach()
            return {k: env[k] for k in OUTPUTS}

    __call__ = forward
