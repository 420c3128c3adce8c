"""The reference forward model: network + physics, recorded stage by stage (§7).

Native layout is channels-last (see docs/architecture.md); ``parity/sides/reference_tf.py`` is the
one place that converts to the canonical channels-first layout.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Mapping, Optional

import numpy as np
import tensorflow as tf

from . import physics
from .config import ModelConfig
from .network import Generator, assign_weights, collect_weights
from .weights import check_weights, init_weights

#: Stage order and the inputs each stage is computed from (mirrors parity/stages.py).
STAGE_TABLE = (
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
STAGE_INPUTS = dict(STAGE_TABLE)
OUTPUTS = ("trimmed_object", "pred_amp", "pred_intensity", "loss_nll", "loss_mae")
DTYPES = {"float32": (tf.float32, tf.complex64), "float64": (tf.float64, tf.complex128)}


def set_deterministic() -> None:
    """Deterministic TF ops (process-wide) and no TF32."""
    tf.config.experimental.enable_op_determinism()
    tf.config.experimental.enable_tensor_float_32_execution(False)


def _op_determinism_enabled() -> bool:
    try:  # no public getter in TF 2.21
        from tensorflow.python.framework import config as tf_config

        return bool(tf_config.is_op_determinism_enabled())
    except (ImportError, AttributeError):  # pragma: no cover - older/newer TF
        return os.environ.get("TF_DETERMINISTIC_OPS", "") in ("1", "true")


def determinism_flags() -> Dict[str, object]:
    return {
        "tf_op_determinism": _op_determinism_enabled(),
        "tf_tensor_float_32": bool(tf.config.experimental.tensor_float_32_execution_enabled()),
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "<unset: oneDNN on>"),
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "xla_jit": False,
    }


class ForwardModel:
    """Reference model for one config and dtype.

    weights: neutral weight set (see :mod:`reference_tf.weights`); ``None`` draws a
    Glorot-uniform set from ``seed``.
    """

    def __init__(
        self,
        config: ModelConfig,
        weights: Optional[Mapping[str, np.ndarray]] = None,
        *,
        dtype: str = "float32",
        seed: Optional[int] = None,
        deterministic: bool = True,
    ):
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a reference_tf.config.ModelConfig, got {type(config).__name__}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r} is not supported; expected one of {sorted(DTYPES)}")
        if deterministic:
            set_deterministic()
        self.config = config
        self.dtype = dtype
        self.real_dtype, self.complex_dtype = DTYPES[dtype]
        self.generator = Generator(config, dtype)
        if weights is None:
            if seed is None:
                raise ValueError("ForwardModel needs either a weight set or a seed to initialise one")
            weights = init_weights(config, seed)
        self.load_weights(weights)
        self._scale = config.scale
        self._run_all = tf.function(self._run_all_eager, reduce_retracing=True)

    # ---- weights -----------------------------------------------------------------------
    def load_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        check_weights(self.config, weights)
        assign_weights(self.generator, dict(weights))

    def export_weights(self) -> Dict[str, np.ndarray]:
        return collect_weights(self.generator)

    def save_keras_weights(self, path) -> None:
        """Keras 3 weights file (``*.weights.h5``) of the generator."""
        self.generator.save_weights(str(path))

    def load_keras_weights(self, path) -> None:
        path = Path(path)
        if not path.name.endswith(".weights.h5"):
            raise ValueError(f"Keras weights file {path} must end in '.weights.h5'")
        if not path.exists():
            raise FileNotFoundError(f"Keras weights file {path} does not exist")
        try:
            self.generator.load_weights(str(path))
        except Exception as exc:  # Keras raises several types for a mismatched file
            raise ValueError(f"Keras weights file {path} does not fit this model config: {exc}") from None

    # ---- inputs ------------------------------------------------------------------------
    def _check_inputs(self, diffraction, offsets, probe_raw):
        cfg = self.config
        d = np.asarray(diffraction) if not tf.is_tensor(diffraction) else diffraction
        o = np.asarray(offsets) if not tf.is_tensor(offsets) else offsets
        p = np.asarray(probe_raw) if not tf.is_tensor(probe_raw) else probe_raw

        def kind(x):
            dt = tf.as_dtype(x.dtype)
            return "complex" if dt.is_complex else ("float" if dt.is_floating else str(dt.name))

        if len(d.shape) != 4 or tuple(d.shape[1:]) != (cfg.N, cfg.N, cfg.C):
            raise ValueError(f"diffraction must have shape (B, {cfg.N}, {cfg.N}, {cfg.C}) (channels-last), got {tuple(d.shape)}")
        if kind(d) != "float":
            raise ValueError(f"diffraction must be real floating, got dtype {tf.as_dtype(d.dtype).name}")
        batch = d.shape[0]
        if tuple(o.shape) != (batch, cfg.C, 2):
            raise ValueError(f"offsets must have shape ({batch}, {cfg.C}, 2), got {tuple(o.shape)}")
        if kind(o) != "float":
            raise ValueError(f"offsets must be real floating, got dtype {tf.as_dtype(o.dtype).name}")
        if tuple(p.shape) != (cfg.N, cfg.N):
            raise ValueError(f"probe_raw must have shape ({cfg.N}, {cfg.N}), got {tuple(p.shape)}")
        if kind(p) not in ("complex", "float"):
            raise ValueError(f"probe_raw must be complex (or real floating), got dtype {tf.as_dtype(p.dtype).name}")
        return (
            tf.cast(d, self.real_dtype),
            tf.cast(o, self.real_dtype),
            tf.cast(p, self.complex_dtype),
        )

    # ---- stages ------------------------------------------------------------------------
    def stage(self, name: str, env: Mapping[str, tf.Tensor]):
        """Compute one stage from its inputs in ``env`` (native layout tensors)."""
        if name not in STAGE_INPUTS:
            raise KeyError(f"unknown stage {name!r}; known stages are {[s for s, _ in STAGE_TABLE]}")
        missing = [k for k in STAGE_INPUTS[name] if k not in env]
        if missing:
            raise KeyError(f"stage {name!r} needs {list(STAGE_INPUTS[name])}; missing {missing}")
        cfg, s = self.config, self._scale
        e = env
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
            return tf.square(e["pred_amp"])
        if name == "loss_nll":
            return physics.poisson_nll(e["pred_intensity"], e["diffraction"])
        return physics.mean_abs_error(e["pred_amp"], e["diffraction"])

    def _run_all_eager(self, diffraction, offsets, probe_raw):
        env = {"diffraction": diffraction, "offsets": offsets, "probe_raw": probe_raw}
        for name, _ in STAGE_TABLE:
            env[name] = self.stage(name, env)
        return {name: env[name] for name, _ in STAGE_TABLE}

    def forward(self, diffraction, offsets, probe_raw, taps: Optional[dict] = None):
        """Run one batch. Inputs channels-last: diffraction (B, N, N, C), offsets (B, C, 2),
        probe_raw (N, N). Returns the outputs; fills ``taps`` with every stage."""
        d, o, p = self._check_inputs(diffraction, offsets, probe_raw)
        stages = self._run_all(d, o, p)
        if taps is not None:
            taps.update(stages)
        return {k: stages[k] for k in OUTPUTS}
