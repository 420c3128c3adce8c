"""The backend-neutral weight set: named NumPy arrays in one ``.npz``.

Names (``i`` counts blocks from 0; ``dec`` is ``decoder_amp`` or ``decoder_phase``)::

    encoder.block{i}.conv{1,2}.{kernel,bias}
    {dec}.block{i}.conv{1,2}.{kernel,bias}        decoder-base ConvUp blocks
    {dec}.last.conv1.{kernel,bias}                centre conv, pad_object=True only
    {dec}.last.up.conv{1,2}.{kernel,bias}         full-size ConvUp (border branch / pad_object=False)
    {dec}.last.conv2.{kernel,bias}                conv after that ConvUp

Kernels are stored as ``(kh, kw, in, out)`` (the TensorFlow layout, so the reference
needs no conversion); biases as ``(out,)``. Initialisation is Glorot-uniform for kernels
and zero for biases, drawn with NumPy from one seed in the order of :func:`weight_spec`,
so a weight set is the same whichever backend asks for it.
"""
from __future__ import annotations

import io
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Mapping, Tuple

import numpy as np

from .config import ModelConfig

WEIGHTS_FORMAT_VERSION = 1


def _conv(spec, name, cin, cout):
    spec[f"{name}.kernel"] = (3, 3, cin, cout)
    spec[f"{name}.bias"] = (cout,)


def weight_spec(config: ModelConfig) -> "OrderedDict[str, Tuple[int, ...]]":
    """Ordered name -> shape of every array the model of ``config`` owns."""
    spec: "OrderedDict[str, Tuple[int, ...]]" = OrderedDict()
    cin = config.C
    for i, f in enumerate(config.encoder_filters):
        _conv(spec, f"encoder.block{i}.conv1", cin, f)
        _conv(spec, f"encoder.block{i}.conv2", f, f)
        cin = f
    bottleneck = cin
    width = 32 * config.n_filters_scale
    for dec in ("decoder_amp", "decoder_phase"):
        cin = bottleneck
        for i, f in enumerate(config.decoder_filters):
            _conv(spec, f"{dec}.block{i}.conv1", cin, f)
            _conv(spec, f"{dec}.block{i}.conv2", f, f)
            cin = f
        fb = config.border_filters
        if config.pad_object:
            _conv(spec, f"{dec}.last.conv1", width - 4, config.K)
            if config.probe_big:
                _conv(spec, f"{dec}.last.up.conv1", 4, fb)
                _conv(spec, f"{dec}.last.up.conv2", fb, fb)
                _conv(spec, f"{dec}.last.conv2", fb, config.K)
        else:
            _conv(spec, f"{dec}.last.up.conv1", width, fb)
            _conv(spec, f"{dec}.last.up.conv2", fb, fb)
            _conv(spec, f"{dec}.last.conv2", fb, config.K)
    return spec


def parameter_count(config: ModelConfig) -> int:
    return int(sum(np.prod(shape) for shape in weight_spec(config).values()))


def init_weights(config: ModelConfig, seed: int) -> Dict[str, np.ndarray]:
    """Glorot-uniform kernels and zero biases, float64, from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    out: Dict[str, np.ndarray] = {}
    for name, shape in weight_spec(config).items():
        if name.endswith(".kernel"):
            kh, kw, cin, cout = shape
            limit = np.sqrt(6.0 / (kh * kw * cin + kh * kw * cout))
            out[name] = rng.uniform(-limit, limit, size=shape)
        else:
            out[name] = np.zeros(shape)
    return out


def check_weights(config: ModelConfig, weights: Mapping[str, np.ndarray]) -> None:
    """Raise ``ValueError`` naming every missing, extra or mis-shaped array."""
    spec = weight_spec(config)
    missing = [k for k in spec if k not in weights]
    extra = sorted(k for k in weights if k not in spec)
    wrong = [
        f"{k}: expected shape {spec[k]}, got {tuple(np.shape(weights[k]))}"
        for k in spec
        if k in weights and tuple(np.shape(weights[k])) != spec[k]
    ]
    problems = []
    if missing:
        problems.append(f"missing arrays {missing}")
    if extra:
        problems.append(f"unexpected arrays {extra}")
    if wrong:
        problems.append("mis-shaped arrays [" + "; ".join(wrong) + "]")
    for k in spec:
        if k in weights and tuple(np.shape(weights[k])) == spec[k]:
            arr = np.asarray(weights[k])
            if not np.issubdtype(arr.dtype, np.floating):
                problems.append(f"array {k} has dtype {arr.dtype}, expected a floating type")
            elif not np.all(np.isfinite(arr)):
                problems.append(f"array {k} holds NaN or Inf")
    if problems:
        raise ValueError("weight set does not fit the model config: " + "; ".join(problems))


def save_weights_npz(path, weights: Mapping[str, np.ndarray]) -> None:
    """Write the weight set to ``path`` (uncompressed ``.npz``; written atomically)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as fh:
        np.savez(fh, **{k: np.asarray(v) for k, v in weights.items()})
    tmp.replace(path)


def load_weights_npz(path) -> Dict[str, np.ndarray]:
    """Read a weight set; refuse pickles and name the file when it is unreadable."""
    path = Path(path)
    if path.exists() and not zipfile.is_zipfile(path):
        raise ValueError(f"weights file {path} is not a readable .npz archive (no zip header)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise FileNotFoundError(f"weights file {path} does not exist") from None
    except ValueError as exc:  # object arrays need pickle
        raise ValueError(f"weights file {path} holds pickled objects, which are refused: {exc}") from None
    except (zipfile.BadZipFile, OSError, EOFError, io.UnsupportedOperation) as exc:
        raise ValueError(f"weights file {path} is not a readable .npz archive: {exc}") from None
