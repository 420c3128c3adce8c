"""JSON Schema (draft 2020-12) of parity_report.json, written beside it as parity_report.schema.json.

The schema pins what later checks and the nightly gate read: the top-level verdict, provenance,
tolerances, devices, timings, and per case and stage the fields of the report contract. Objects
accept additional properties, so a new field is not a breaking change; removing or retyping a
listed field is, and needs ``SCHEMA_VERSION`` bumped. Validation happens in the tests
(jsonschema is a test dependency, not a runtime one).
"""
from __future__ import annotations

from typing import Any, Dict

from parity.divergences import CASE_VERDICTS, STATUSES
from parity.results import LABELS

from .document import SCHEMA, SCHEMA_VERSION

NONFINITE = {"enum": ["nan", "inf", "-inf"]}
NUM = {"anyOf": [{"type": "number"}, NONFINITE]}
NUM_OR_NULL = {"anyOf": [{"type": ["number", "null"]}, NONFINITE]}
STR_OR_NULL = {"type": ["string", "null"]}
VERDICT = {"enum": ["pass", "fail"]}
INDEX = {"anyOf": [{"type": "array", "items": {"type": "integer", "minimum": 0}}, {"type": "null"}]}


def _obj(required: Dict[str, Any], optional: Dict[str, Any] | None = None, **kw: Any) -> Dict[str, Any]:
    props = dict(required)
    props.update(optional or {})
    return {"type": "object", "required": list(required), "properties": props, **kw}


TOLERANCE = _obj({"rtol": NUM, "atol": NUM, "atol_scaled": NUM},
                 {"max_mismatch_fraction": NUM, "source": {"type": "string"}, "reason": {"type": "string"}})
MIN_TOL = _obj({"rtol": NUM, "atol": NUM, "atol_scaled": NUM})
DRIFT_STAGE = _obj({"then": NUM, "now": NUM, "ratio": NUM, "flagged": {"type": "boolean"}},
                   {"metric": {"type": "string"}, "floor": NUM})

STAGE = _obj({
    "name": {"type": "string"},
    "shape": INDEX,
    "dtype": STR_OR_NULL,
    "verdict": VERDICT,
    "tolerance": {"anyOf": [TOLERANCE, {"type": "null"}]},
    "max_abs": NUM_OR_NULL,
    "max_rel": NUM_OR_NULL,
    "rel_l2": NUM_OR_NULL,
    "mismatch_fraction": NUM_OR_NULL,
    "worst_index": INDEX,
    "min_passing_tolerance": {"anyOf": [MIN_TOL, {"type": "null"}]},
    "local_error": NUM_OR_NULL,
    "label": {"enum": list(LABELS)},
}, {
    "margin": NUM_OR_NULL, "rel_max": NUM_OR_NULL, "mismatch_count": {"type": ["integer", "null"]},
    "n_elements": {"type": ["integer", "null"]}, "ref_max_abs": NUM_OR_NULL, "problem": STR_OR_NULL,
    "message": {"type": "string"},
    "worst_patches": {"anyOf": [{"type": "null"}, {"type": "array", "items": _obj(
        {"b": {"type": "integer"}, "c": {"type": "integer"}, "max_abs": NUM})}]},
    "drift": {"anyOf": [DRIFT_STAGE, {"type": "null"}]},
    "divergence": _obj({"status": {"enum": list(STATUSES)}, "entry": STR_OR_NULL, "message": {"type": "string"}},
                       {"from": {"anyOf": [{"type": "null"}, {"type": "array", "items": {"type": "string"}}]},
                        "reason": {"type": "string"}, "where": {"type": "string"}, "registered": NUM_OR_NULL}),
})

APPLIED = _obj({"id": {"type": "string"}, "stage": {"type": "string"}, "status": {"enum": list(STATUSES)},
                "err_over_tol": NUM_OR_NULL, "registered": NUM_OR_NULL, "message": {"type": "string"}})

CASE = _obj({
    "name": {"type": "string"},
    "key": {"type": "string"},
    "config": {"type": "object"},
    "dtype": {"enum": ["float32", "float64"]},
    "device": {"type": "string"},
    "verdict": {"enum": list(CASE_VERDICTS)},
    "first_divergent_stage": STR_OR_NULL,
    "stages": {"type": "array", "items": STAGE},
    "error": STR_OR_NULL,
    "timings": {"type": "object", "additionalProperties": NUM},
}, {
    "root_cause_stage": STR_OR_NULL,
    "problems": {"type": "array", "items": {"type": "string"}},
    "tolerance_mode": {"enum": ["table", "noise_floor"]},
    "isolation": {"enum": ["inprocess", "workers", "subprocess"]},
    "captures": {"type": "object", "additionalProperties": {"type": "string"},
                 "propertyNames": {"enum": ["reference", "candidate", "local", "reference_float32"]}},
    "figures": {"type": "object"},
    "drift_flagged": {"type": "integer", "minimum": 0},
    "raw_verdict": VERDICT,
    "divergences": {"type": "array", "items": APPLIED},
    "sides": _obj({"reference": {"type": "string"}, "candidate": {"type": "string"}}),
    "errors": {"type": "array", "items": _obj({"side": {"type": "string"}, "job": {"type": "string"},
                                               "kind": {"enum": ["error", "crash", "timeout", "unavailable"]},
                                               "reason": {"type": "string"},
                                               "tail": {"type": "array", "items": {"type": "string"}}})},
    # sides that translate the case config (parity.sides.base.Side.given / own_losses), by side name
    "given": {"type": "object", "additionalProperties": {"type": "object"}},
    "upstream": {"type": "object", "additionalProperties": _obj({"path": {"type": "string"},
                                                                  "commit": {"type": "string"}})},
    "own_losses": {"type": "object", "additionalProperties": {
        "type": "object", "additionalProperties": _obj({"value": {"type": ["number", "string", "null"]},
                                                         "computed_by": {"type": "string"}})}},
})

PAIR = _obj({"name": {"type": "string"}, "reference": {"type": "string"}, "candidate": {"type": "string"},
             "stages": {"type": "array", "items": {"type": "string"}}}, {"description": {"type": "string"}})

DEVICE = _obj({"device": {"type": "string"}, "status": {"enum": ["available", "unavailable"]},
               "reason": STR_OR_NULL, "verdict": {"enum": ["pass", "fail", None]},
               "cases": {"type": "array", "items": {"type": "string"}}},
              {"passed": {"type": "integer"}, "failed": {"type": "integer"}, "names": {"type": "object"}})

PROVENANCE = _obj({
    "python": {"type": "string"}, "numpy": {"type": "string"}, "tensorflow": STR_OR_NULL, "torch": STR_OR_NULL,
    "cuda": {"type": "object"}, "devices": {"type": "array", "items": DEVICE},
    "determinism": {"type": "object", "additionalProperties": {"type": "object"}},  # side -> flags
    "fixture_hashes": {"type": "object"},
    "git": {"anyOf": [{"type": "null"}, _obj({"commit": {"type": "string"}}, {"dirty": {"type": ["boolean", "null"]}})]},
    "tolerance_mode": {"enum": ["table", "noise_floor", "per_case"]},
    "isolation": {"enum": ["inprocess", "workers", "subprocess"]},
    "os": {"type": "string"}, "cpu": {"type": "string"}, "threads": {"type": "object"},
    "environment": {"type": "object"}, "TF_ENABLE_ONEDNN_OPTS": STR_OR_NULL, "command": STR_OR_NULL,
})

DRIFT = _obj({
    "baseline": _obj({"hub": {"type": "string"}}),
    "factor": NUM, "metric": {"type": "string"}, "verdict": VERDICT, "n_flagged": {"type": "integer"},
    "flagged": {"type": "array", "items": _obj({"case": {"type": "string"}, "device": {"type": "string"},
                                               "stage": {"type": "string"}, "then": NUM, "now": NUM, "ratio": NUM})},
    "cases": {"type": "array"},
})

DIVERGENCE_ENTRY = _obj({k: {"type": "string"} for k in ("id", "pair", "cases", "stage", "reason", "where")}
                        | {"measured": _obj({"command": {"type": "string"}, "date": {"type": "string"}},
                                            {"err_over_tol": NUM, "shape": {"type": "string"},
                                             "error": {"type": "string"}}),
                           "grow_factor": NUM})
DIVERGENCES = _obj({
    "pair": {"type": "string"}, "enabled": {"type": "boolean"},
    "files": {"type": "array", "items": _obj({"path": {"type": "string"}, "sha256": {"type": "string"},
                                              "origin": {"enum": ["shipped", "given"]}})},
    "entries": {"type": "array", "items": DIVERGENCE_ENTRY},
    "applied": {"type": "object", "additionalProperties": _obj({"verdict": {"enum": list(CASE_VERDICTS)},
                                                                 "raw_verdict": VERDICT,
                                                                 "entries": {"type": "array", "items": APPLIED}})},
    "counts": _obj({v: {"type": "integer", "minimum": 0} for v in CASE_VERDICTS}),
    "unused": {"type": "array", "items": {"type": "string"}},
})

TIMINGS = _obj({k: NUM for k in ("wall_s", "forward_s", "backend_s", "harness_s", "harness_fraction",
                                 "outside_forward_s", "outside_forward_fraction")})

REPORT_SCHEMA: Dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "parity_report.schema.json",
    "title": "Forward-parity report (python -m parity.report)",
    "description": "Non-finite floats are the strings nan, inf, -inf; null means not computed.",
    **_obj({
        "schema": {"const": SCHEMA},
        "schema_version": {"const": SCHEMA_VERSION},
        "verdict": VERDICT,
        "parity_verdict": VERDICT,
        "verdict_reasons": {"type": "array", "items": {"type": "string"}},
        "created": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"},
        "mode": {"enum": ["run", "recheck"]},
        "pair": PAIR,
        "provenance": PROVENANCE,
        "config": {"type": "object"},
        "tolerances": _obj({"mode": {"enum": ["table", "noise_floor", "per_case"]}, "path": {"type": "string"},
                            "table": {"type": "object"}}),
        "devices": {"type": "array", "items": DEVICE},
        "cases": {"type": "array", "items": CASE},
        "drift": {"anyOf": [{"type": "null"}, DRIFT]},
        "divergences": DIVERGENCES,
        "timings": TIMINGS,
        "summary": {"type": "object"},
        "files": {"type": "object"},
        "artifacts": {"type": "array", "items": {"type": "string"}},
    }, {
        "recheck_of": {"anyOf": [{"type": "null"}, {"type": "object"}]},
        "finished": {"type": "string"},
        # cases a side cannot express (parity.sides.base.Side.refuses): case -> {side: reason}; not run
        "not_expressible": {"type": "object", "additionalProperties": {
            "type": "object", "additionalProperties": {"type": "string"}}},
        "training": _obj({"schema": {"const": "parity.training"}, "schema_version": {"const": 1},
                          "status": {"enum": ["decided", "unavailable", "error"]}, "case": {"type": "string"},
                          "steps": {"type": "integer"}, "settings": {"type": "object"}}),
    }),
}


BACKWARD_STAGE = _obj({"name": {"type": "string"}, "verdict": VERDICT, "label": {"enum": list(LABELS)},
                       "margin": NUM_OR_NULL, "rel_l2": NUM_OR_NULL, "max_abs": NUM_OR_NULL},
                      {"local_error": NUM_OR_NULL, "tolerance": {"anyOf": [TOLERANCE, {"type": "null"}]},
                       "message": {"type": "string"}})
BACKWARD_CASE = _obj({"verdict": {"enum": ["pass", "fail", "not_available"]}, "available": {"type": "boolean"},
                      "reason": {"type": "string"}, "losses": {"type": "object", "additionalProperties": _obj({
                          "verdict": VERDICT, "first_divergent_stage": STR_OR_NULL, "root_cause_stage": STR_OR_NULL,
                          "first_divergent_weight": STR_OR_NULL,
                          "stages": {"type": "array", "items": BACKWARD_STAGE},
                          "weights": {"type": "array", "items": BACKWARD_STAGE}})}},
                     {"tolerance_mode": {"enum": ["table", "noise_floor"]}, "summary": {"type": "string"}})
BACKWARD = _obj({"verdict": {"enum": ["pass", "fail", "not_available"]}, "cases": {"type": "integer"}, "passed": {"type": "integer"},
                 "failed": {"type": "array", "items": {"type": "string"}},
                 "not_available": {"type": "array", "items": {"type": "string"}}},
                {"reasons": {"type": "array"}, "worst": {"type": "object"}, "figures": {"type": "object"}})


def report_schema(backward: bool = False) -> Dict[str, Any]:
    """The schema as a fresh dict; ``backward``: that of a ``--backward`` report (version 3: a
    ``backward`` block and, per case, a ``backward`` entry; everything of version 2 unchanged)."""
    import copy

    from .backward import SCHEMA_VERSION as BACKWARD_VERSION

    out = copy.deepcopy(REPORT_SCHEMA)
    if backward:
        out["title"] = "Forward- and backward-parity report (python -m parity.report --backward)"
        out["properties"]["schema_version"] = {"const": BACKWARD_VERSION}
        out["required"].append("backward")
        out["properties"]["backward"] = copy.deepcopy(BACKWARD)
        case = out["properties"]["cases"]["items"]
        case["properties"]["backward"] = {"anyOf": [{"type": "null"}, copy.deepcopy(BACKWARD_CASE)]}
    return out
