"""Layout conversion between the canonical channels-first layout and TensorFlow's native one.

The single place where stage tensors change layout (docs/architecture.md, "Native layouts").
Never reshapes to make a shape fit: a rank that does not match the stage raises.
"""
from __future__ import annotations

import numpy as np

from . import stages

#: Canonical rank of the batch inputs (stages take theirs from parity.stages).
_INPUT_RANK = {"diffraction": 4, "offsets": 3, "probe_raw": 2}


def _canonical_rank(name: str) -> int:
    if name in _INPUT_RANK:
        return _INPUT_RANK[name]
    return len(stages.get(name).shape)


def _is_image_stack(name: str) -> bool:
    """(B, C, H, W) tensors that TF holds as (B, H, W, C)."""
    return _canonical_rank(name) == 4


def _is_single_channel_image(name: str) -> bool:
    """canvas and trimmed_object: canonical (B, H, W), TF (B, H, W, 1)."""
    return name in ("canvas", "trimmed_object")


def tf_to_canonical(name: str, array: np.ndarray) -> np.ndarray:
    a = np.asarray(array)
    rank = _canonical_rank(name)
    if _is_image_stack(name):
        if a.ndim != 4:
            raise ValueError(f"TensorFlow stage {name!r} should be (B, H, W, C), got shape {a.shape}")
        return np.ascontiguousarray(np.transpose(a, (0, 3, 1, 2)))
    if _is_single_channel_image(name):
        if a.ndim != 4 or a.shape[-1] != 1:
            raise ValueError(f"TensorFlow stage {name!r} should be (B, H, W, 1), got shape {a.shape}")
        return np.ascontiguousarray(a[..., 0])
    if a.ndim != rank:
        raise ValueError(f"TensorFlow stage {name!r} should have rank {rank}, got shape {a.shape}")
    return a


def canonical_to_tf(name: str, array: np.ndarray) -> np.ndarray:
    a = np.asarray(array)
    rank = _canonical_rank(name)
    if a.ndim != rank:
        raise ValueError(f"canonical {name!r} should have rank {rank}, got shape {a.shape}")
    if _is_image_stack(name):
        return np.ascontiguousarray(np.transpose(a, (0, 2, 3, 1)))
    if _is_single_channel_image(name):
        return np.ascontiguousarray(a[..., None])
    return a
