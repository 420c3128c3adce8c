"""The backend-neutral weight set of the port, and the one place where layouts change.

Neutral names (``i`` counts blocks from 0; ``dec`` is ``decoder_amp`` or ``decoder_phase``)::

    encoder.block{i}.conv{1,2}.{kernel,bias}
    {dec}.block{i}.conv{1,2}.{kernel,bias}        decoder-base ConvUp blocks
    {dec}.last.conv1.{kernel,bias}                centre conv, pad_object=True only
    {dec}.last.up.conv{1,2}.{kernel,bias}         full-size ConvUp (border branch / pad_object=False)
    {dec}.last.conv2.{kernel,bias}                conv after that ConvUp

Neutral kernels are ``(kh, kw, in, out)``, biases ``(out,)``. :func:`to_torch_state` and
:func:`from_torch_state` are the only functions that convert them to and from the torch
module's ``state_dict`` (``Conv2d.weight`` is ``(out, in, kh, kw)``: transpose (3, 2, 0, 1),
no flip; biases unchanged). Torch parameter names differ from the neutral ones in two ways:
``kernel`` is ``weight``, and the decoder-base blocks live under ``{dec}.base``.
"""
from __future__ import annotations

import io
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import torch

from .config import ModelConfig

WEIGHTS_FORMAT_VERSION = 1

#: neutral kernel (kh, kw, in, out) -> torch weight (out, in, kh, kw)
KERNEL_TO_TORCH = (3, 2, 0, 1)
#: torch weight (out, in, kh, kw) -> neutral kernel (kh, kw, in, out); inverse of the above
KERNEL_FROM_TORCH = (2, 3, 1, 0)

_DECODERS = ("decoder_amp", "decoder_phase")


def _conv(spec, name: str, cin: int, cout: int) -> None:
    spec[f"{name}.kernel"] = (3, 3, cin, cout)
    spec[f"{name}.bias"] = (cout,)


def weight_spec(config: ModelConfig) -> "OrderedDict[str, Tuple[int, ...]]":
    """Ordered neutral name -> neutral shape of every array the model of ``config`` owns."""
    spec: "OrderedDict[str, Tuple[int, ...]]" = OrderedDict()
    cin = config.C
    for i, f in enumerate(config.encoder_filters):
        _conv(spec, f"encoder.block{i}.conv1", cin, f)
        _conv(spec, f"encoder.block{i}.conv2", f, f)
        cin = f
    bottleneck = cin
    width = 32 * config.n_filters_scale  # decoder-base output channels
    fb = config.border_filters
    for dec in _DECODERS:
        cin = bottleneck
        for i, f in enumerate(config.decoder_filters):
            _conv(spec, f"{dec}.block{i}.conv1", cin, f)
            _conv(spec, f"{dec}.block{i}.conv2", f, f)
            cin = f
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
    return int(sum(int(np.prod(shape)) for shape in weight_spec(config).values()))


def init_weights(config: ModelConfig, seed: int) -> Dict[str, np.ndarray]:
    """Glorot-uniform kernels and zero biases, float64, from ``numpy.random.default_rng(seed)``.

    Arrays are drawn in :func:`weight_spec` order, so the set equals the reference's.
    """
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
    """Raise ``ValueError`` naming every missing, extra or mis-shaped array (expected vs got)."""
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
            arr = _as_numpy(weights[k])
            if not np.issubdtype(arr.dtype, np.floating):
                problems.append(f"array {k} has dtype {arr.dtype}, expected a floating type")
            elif not np.all(np.isfinite(arr)):
                problems.append(f"array {k} holds NaN or Inf")
    if problems:
        raise ValueError("weight set does not fit the model config: " + "; ".join(problems))


def _as_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


# ---- neutral <-> torch ----------------------------------------------------------------------
def torch_name(neutral_name: str) -> str:
    """Torch ``state_dict`` key of a neutral array name."""
    parts = neutral_name.split(".")
    if parts[0] in _DECODERS and parts[1].startswith("block"):
        parts.insert(1, "base")
    if parts[-1] == "kernel":
        parts[-1] = "weight"
    return ".".join(parts)


def to_torch_state(
    config: ModelConfig, weights: Mapping[str, np.ndarray], dtype: Optional[torch.dtype] = None
) -> "OrderedDict[str, torch.Tensor]":
    """Neutral weight set -> ``state_dict`` for :class:`torch_impl.network.Generator`.

    Kernels are transposed (3, 2, 0, 1) (no flip), biases copied. ``dtype=None`` keeps each
    array's dtype (bitwise copy); otherwise values are cast to ``dtype``.
    """
    check_weights(config, weights)
    state: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for name in weight_spec(config):
        arr = _as_numpy(weights[name])
        if name.endswith(".kernel"):
            arr = arr.transpose(KERNEL_TO_TORCH)
        tensor = torch.from_numpy(np.array(arr, copy=True, order="C"))
        if dtype is not None:
            tensor = tensor.to(dtype)
        state[torch_name(name)] = tensor
    return state


def from_torch_state(config: ModelConfig, state: Mapping[str, torch.Tensor]) -> Dict[str, np.ndarray]:
    """``state_dict`` of a :class:`~torch_impl.network.Generator` -> neutral weight set.

    Inverse of :func:`to_torch_state`: arrays keep the tensors' dtype (a float64 model gives
    float64 arrays); the result is validated with :func:`check_weights`.
    """
    spec = weight_spec(config)
    expected = {torch_name(k): k for k in spec}
    missing = [t for t in expected if t not in state]
    extra = sorted(k for k in state if k not in expected)
    if missing or extra:
        raise ValueError(
            f"torch state does not fit the model config: missing {missing}, unexpected {extra}"
        )
    out: Dict[str, np.ndarray] = {}
    for tname, name in expected.items():
        arr = _as_numpy(state[tname])
        if name.endswith(".kernel"):
            if arr.ndim != 4:
                raise ValueError(f"torch state {tname}: expected a 4-d weight, got shape {arr.shape}")
            arr = arr.transpose(KERNEL_FROM_TORCH)
        out[name] = np.array(arr, copy=True, order="C")
    check_weights(config, out)
    return out


# ---- npz I/O -------------------------------------------------------------------------------
def save_weights_npz(path, weights: Mapping[str, np.ndarray]) -> None:
    """Write the weight set to ``path`` (uncompressed ``.npz``; written atomically)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as fh:
        np.savez(fh, **{k: _as_numpy(v) for k, v in weights.items()})
    tmp.replace(path)


def load_weights_npz(path) -> Dict[str, np.ndarray]:
    """Read a weight set from an ``.npz``; refuse pickles and name the file when it is unreadable."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.is_dir():
        raise ValueError(f"weights file {path} is a directory, not an .npz archive")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic.startswith(b"\x93NUMPY"):
        raise ValueError(f"weights file {path} is a single .npy array, not an .npz archive of named arrays")
    if not magic.startswith(b"PK"):
        raise ValueError(
            f"weights file {path} is not a readable .npz archive (no zip header; "
            "a pickle or text file is refused)"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except ValueError as exc:
        if "pickle" in str(exc):  # object arrays need pickle
            raise ValueError(f"weights file {path} holds pickled objects, which are refused: {exc}") from None
        raise ValueError(f"weights file {path} is not a readable .npz archive: {exc}") from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, io.UnsupportedOperation, KeyError) as exc:
        raise ValueError(f"weights file {path} is not a readable .npz archive: {exc}") from None
