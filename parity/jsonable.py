"""Plain JSON of numeric containers: non-finite floats as the strings "nan", "inf", "-inf".

Strict JSON has no NaN; results, reports and self-test documents write non-finite floats as
these strings and read them back with :func:`from_json` / :func:`decode_float`.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np


def encode_float(v: float) -> Any:
    """JSON form of a float: itself when finite, else the string "nan", "inf" or "-inf"."""
    v = float(v)
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def decode_float(v: Any) -> Any:
    """Inverse of :func:`encode_float` (None and other values pass through)."""
    if isinstance(v, str) and v in _NONFINITE:
        return _NONFINITE[v]
    return v


def to_json(obj: Any) -> Any:
    """Plain JSON types: arrays -> nested lists, NumPy scalars -> Python, tuples -> lists,
    non-finite floats -> "nan"/"inf"/"-inf" (strict JSON has no NaN)."""
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "fc":
            return to_json(obj.tolist())
        return obj.tolist()
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return encode_float(obj)
    if isinstance(obj, (complex, np.complexfloating)):
        return [encode_float(obj.real), encode_float(obj.imag)]
    return obj


def from_json(obj: Any) -> Any:
    """Inverse of :func:`to_json` for numeric containers: "nan"/"inf"/"-inf" -> floats."""
    if isinstance(obj, Mapping):
        return {k: from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_json(v) for v in obj]
    return decode_float(obj)
