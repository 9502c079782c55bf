"""The raw-sample contract: every pattern and limit the decoder checks, in one place.

These constants are the single source of truth. The `$defs` of schemas/sample.schema.json are
generated from `schema_defs()` (`python -m pipeline.core.contract` rewrites them; a unit test
fails when the file drifts), and pipeline/core/validate.py compiles the very same patterns and
applies them the way a JSON Schema validator does (`re.search`), so schema and worker agree.

Patterns end in `(?!\\n)$`: a Python `$` also matches before a trailing newline, and JSON Schema
validators written in Python use `re.search`; the lookahead makes "abc\\n" fail in Python exactly
as it does in ECMA-262, where `$` is only the end of input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# Epoch ms below 2**42 (year 2109): leaves room to pack keys beside a timestamp in an int64.
MAX_TS = 2**42
# |value| at most this: a window sum of up to ~1e18 such values stays finite in float64.
MAX_ABS_VALUE = 1e290
IDENTIFIER_PATTERN = r"^[A-Za-z0-9_.:/-]+(?!\n)$"
IDENTIFIER_MAX_CHARS = 200
# UCUM as OpenTelemetry writes units ("ms", "By", "KiBy", "By/s", "%", "{request}", "1"):
# printable ASCII without space, `"` and `\`; empty means dimensionless/unspecified.
UNIT_PATTERN = r"^[!#-\[\]-~]*(?!\n)$"
UNIT_MAX_CHARS = 32
LABEL_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}(?!\n)$"
MAX_LABELS = 16
MAX_LABEL_VALUE_CHARS = 256
INSTANCE_MAX_CHARS = 256
METRIC_TYPES = ("timer", "gauge", "counter")
TEMPORALITIES = ("delta", "cumulative")

_SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schemas" / "sample.schema.json"


def _counter_rules(value_rule: dict[str, Any]) -> dict[str, Any]:
    """What depends on `type` and `temporality`; value_rule constrains a delta counter's value."""
    is_counter = {"required": ["type"], "properties": {"type": {"const": "counter"}}}
    return {
        "allOf": [
            {
                "$comment": "temporality is for counters only (absent or null otherwise)",
                "if": is_counter,
                "else": {"properties": {"temporality": {"const": None}}},
            },
            {
                "$comment": "a cumulative counter names its instance",
                "if": {
                    "required": ["type", "temporality"],
                    "properties": {
                        "type": {"const": "counter"},
                        "temporality": {"const": "cumulative"},
                    },
                },
                "then": {"required": ["instance"], "properties": {"instance": {"type": "string"}}},
            },
            {
                "$comment": "a delta counter (the default temporality) only adds: value >= 0",
                "if": {
                    "required": ["type"],
                    "properties": {
                        "type": {"const": "counter"},
                        "temporality": {"enum": ["delta", None]},
                    },
                },
                "then": {"properties": {"value": value_rule}},
            },
        ]
    }


def schema_defs() -> dict[str, Any]:
    """The `$defs` of sample.schema.json (batch-columnar.schema.json refers to them)."""
    return {
        "identifier": {
            "type": "string",
            "minLength": 1,
            "maxLength": IDENTIFIER_MAX_CHARS,
            "pattern": IDENTIFIER_PATTERN,
        },
        "type": {"enum": list(METRIC_TYPES)},
        "temporality": {
            "enum": [*TEMPORALITIES, None],
            "description": "Counters only; absent or null means delta.",
        },
        "unit": {
            "type": ["string", "null"],
            "maxLength": UNIT_MAX_CHARS,
            "pattern": UNIT_PATTERN,
            "description": "UCUM as OpenTelemetry uses it: ms, s, By, KiBy, By/s, %, {request}, 1.",
        },
        "labels": {
            "type": ["object", "null"],
            "maxProperties": MAX_LABELS,
            "propertyNames": {"pattern": LABEL_NAME_PATTERN},
            "additionalProperties": {"type": "string", "maxLength": MAX_LABEL_VALUE_CHARS},
        },
        "instance": {"type": ["string", "null"], "minLength": 1, "maxLength": INSTANCE_MAX_CHARS},
        "ts": {
            "type": "integer",
            "minimum": 0,
            "exclusiveMaximum": MAX_TS,
            "description": "Event time, epoch ms (UTC); an integral float such as 1.7e12 is fine.",
        },
        "value": {"type": "number", "minimum": -MAX_ABS_VALUE, "maximum": MAX_ABS_VALUE},
        "sample_rules": _counter_rules({"minimum": 0}),
        "columnar_rules": _counter_rules({"items": {"minimum": 0}}),
    }


def write_schema_defs(path: Path = _SCHEMA_FILE) -> None:
    doc = json.loads(path.read_text())
    doc["$defs"] = schema_defs()
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write_schema_defs(Path(sys.argv[1]) if len(sys.argv) > 1 else _SCHEMA_FILE)
