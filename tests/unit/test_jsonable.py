"""parity.jsonable: plain JSON types, non-finite floats as strings, and back."""
import json
import math

import numpy as np

from parity.jsonable import decode_float, encode_float, from_json, to_json
from parity.stats.errors import error_stats


def test_to_json_plain_types_and_nonfinite_strings():
    obj = {"a": np.float32(1.5), "b": np.array([[1.0, np.nan], [np.inf, -np.inf]]), "c": (np.int64(2), 3),
           "d": np.bool_(True), "e": None, "f": 1 + 2j}
    j = to_json(obj)
    assert j == {"a": 1.5, "b": [[1.0, "nan"], ["inf", "-inf"]], "c": [2, 3], "d": True, "e": None, "f": [1.0, 2.0]}
    json.dumps(j, allow_nan=False)
    back = from_json(j)
    assert math.isnan(back["b"][0][1]) and back["b"][1] == [math.inf, -math.inf]


def test_error_stats_is_json_able():
    s = error_stats(np.array([1.0, np.nan]), np.array([1.5, 2.0 + 0j]), {"rtol": 0.0, "atol": 1.0, "atol_scaled": 0.0})
    json.dumps(to_json(s), allow_nan=False)


def test_encode_decode_float():
    assert [encode_float(v) for v in (1.5, math.nan, math.inf, -math.inf)] == [1.5, "nan", "inf", "-inf"]
    assert decode_float("inf") == math.inf and math.isnan(decode_float("nan")) and decode_float(None) is None
    assert decode_float("other") == "other" and decode_float(2.0) == 2.0
