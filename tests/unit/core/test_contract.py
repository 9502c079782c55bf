"""The schemas in schemas/ and the worker's decoder accept exactly the same raw records.

pipeline/core/contract.py holds every pattern and limit; sample.schema.json's $defs are generated
from it (tests/unit/test_schemas.py checks that). Here the two are compared on input: records
generated from the schemas with hypothesis-jsonschema must decode, and mutated records must be
rejected by both or by neither. Deliberate differences, documented in docs/contracts.md: the worker
ignores unknown fields (the schemas forbid them), rejects strings with lone surrogates (which
JSON Schema cannot express), and rejects a columnar batch whose ts and value lengths differ.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline.core.contract import MAX_ABS_VALUE, MAX_TS
from pipeline.core.decode import DecodeLimits, Decoder, DecodeResult
from pipeline.core.reasons import Reason
from pipeline.core.series import SeriesTable
from tests.support.schemas import from_schema, schema_errors, standalone

from .helpers import BASE_MS

RECORD_SCHEMAS = ("sample", "batch-array", "batch-columnar")
# Generating from the schemas costs ~50 ms an example: a few dozen in every run, hundreds in the
# slow ones. Mutating hand-written valid records is cheap: hundreds in every run.
FROM_SCHEMA = settings(
    max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
THOROUGH = settings(FROM_SCHEMA, max_examples=100)
MUTATIONS = settings(FROM_SCHEMA, max_examples=250)
GOOD: dict[str, Any] = {
    "service": "checkout",
    "region": "eu-west-1",
    "name": "http.server.duration",
    "type": "timer",
    "value": 12.5,
    "ts": BASE_MS,
}


def decode(doc: Any, limits: DecodeLimits | None = None) -> DecodeResult:
    """One record, no message time (the age checks are not part of the schema)."""
    record = json.dumps(doc).encode()
    return Decoder(SeriesTable(), limits).decode_lists([record], [0], [-1])


def points_of(doc: Any) -> int:
    if isinstance(doc, list):
        return len(doc)
    return len(doc["ts"]) if isinstance(doc.get("ts"), list) else 1


def schema_accepts(doc: Any) -> bool:
    return any(not schema_errors(name, doc) for name in RECORD_SCHEMAS)


def decoder_accepts(doc: Any) -> bool:
    result = decode(doc)
    return not result.rejects and len(result.columns) == points_of(doc)


# -- the reported mismatches ----------------------------------------------------------------------

OTEL_UNITS = ["%", "{request}", "By", "1", "ms", "s", "KiBy", "By/s", "{packet}/s", "Cel", "m/s2"]


@pytest.mark.parametrize("unit", OTEL_UNITS)
def test_otel_ucum_units_are_accepted_by_schema_and_worker(unit: str) -> None:
    gauge = {**GOOD, "type": "gauge", "name": "system.cpu.utilization", "unit": unit}
    assert schema_errors("sample", gauge) == []
    assert decoder_accepts(gauge)
    batch = {**gauge, "ts": [BASE_MS, BASE_MS + 1], "value": [0.5, 0.75]}
    assert schema_errors("batch-columnar", batch) == []
    assert decoder_accepts(batch)


@pytest.mark.parametrize("unit", ["milli seconds", 'a"b', "a\\b", "µs", "ms\n", "\t", "x" * 33])
def test_units_outside_the_grammar_are_rejected_by_both(unit: str) -> None:
    doc = {**GOOD, "unit": unit}
    assert schema_errors("sample", doc)
    assert [r.reason for r in decode(doc).rejects] == [Reason.INVALID_IDENTIFIER]


def test_integral_float_ts_is_accepted_by_schema_and_worker() -> None:
    ts = 1796020000000.0
    single = {**GOOD, "ts": ts}
    batch = {**GOOD, "ts": [ts, ts + 1000.0], "value": [1.0, 2.0]}
    for name, doc in (
        ("sample", single),
        ("batch-array", [single, GOOD]),
        ("batch-columnar", batch),
    ):
        assert schema_errors(name, doc) == []
        result = decode(doc)
        assert result.rejects == []
        assert result.columns.ts.tolist()[0] == 1796020000000


@pytest.mark.parametrize("ts", [1796020000000.5, -1.0, float(MAX_TS)])
def test_fractional_or_out_of_range_float_ts_is_rejected_by_both(ts: float) -> None:
    doc = {**GOOD, "ts": ts}
    assert schema_errors("sample", doc)
    assert [r.reason for r in decode(doc).rejects] == [Reason.WRONG_TYPE]


@pytest.mark.parametrize("value", [1e308, -1e308, 1.0000001e290, 10**300])
def test_values_beyond_the_limit_are_rejected_by_both(value: float) -> None:
    doc = {**GOOD, "value": value}
    assert schema_errors("sample", doc)
    assert [r.reason for r in decode(doc).rejects] == [Reason.VALUE_OUT_OF_RANGE]


@pytest.mark.parametrize("value", [MAX_ABS_VALUE, -MAX_ABS_VALUE, 5e-324, 2**64])
def test_values_within_the_limit_are_accepted_by_both(value: float) -> None:
    doc = {**GOOD, "value": value}
    assert schema_errors("sample", doc) == []
    assert decoder_accepts(doc)


def test_rejected_columnar_batch_counts_all_its_points() -> None:
    points = 100_000
    batch = {**GOOD, "service": "check out", "ts": [BASE_MS] * points, "value": [1] * points}
    result = decode(batch, DecodeLimits(max_message_bytes=4 << 20))
    assert [(r.reason, r.index, r.samples) for r in result.rejects] == [
        (Reason.INVALID_IDENTIFIER, -1, points)
    ]


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ({**GOOD, "service": "checkout\n"}, "trailing newline ($ in Python)"),
        ({**GOOD, "labels": {"route\n": "x"}}, "label name with a trailing newline"),
        ({**GOOD, "temporality": "delta"}, "temporality on a timer"),
        ({**GOOD, "type": "counter", "value": -1}, "negative delta counter"),
        ({**GOOD, "type": "counter", "temporality": "cumulative"}, "cumulative, no instance"),
        (
            {**GOOD, "type": "counter", "temporality": "cumulative", "instance": None},
            "cumulative, null instance",
        ),
        ({**GOOD, "ts": [BASE_MS], "value": [-1], "type": "counter"}, "negative delta points"),
        ({**GOOD, "instance": ""}, "empty instance"),
    ],
)
def test_rules_beyond_field_types_are_rejected_by_both(doc: dict[str, Any], why: str) -> None:
    assert not schema_accepts(doc), why
    assert decode(doc).rejects, why


@pytest.mark.parametrize(
    "doc",
    [
        {**GOOD, "unit": None, "labels": None, "instance": None, "temporality": None},
        {**GOOD, "type": "counter", "temporality": None, "value": 0},
        {**GOOD, "type": "counter", "temporality": "cumulative", "instance": "a", "value": -5},
    ],
)
def test_null_optional_fields_mean_absent_for_both(doc: dict[str, Any]) -> None:
    assert schema_errors("sample", doc) == []
    assert decoder_accepts(doc)


def test_unknown_fields_are_forbidden_by_the_schema_and_ignored_by_the_worker() -> None:
    # The documented difference: producers learn of a typo from the schema, while the worker
    # stays forward compatible with fields it does not know yet.
    doc = {**GOOD, "host": "web-1"}
    assert schema_errors("sample", doc)
    assert decoder_accepts(doc)


# -- schema-valid ⇒ decoded -----------------------------------------------------------------------

SAMPLES = from_schema(standalone("sample"))
ARRAYS = st.lists(SAMPLES, min_size=1, max_size=3)
COLUMNAR = from_schema(standalone("batch-columnar"))


def check_sample(doc: dict[str, Any]) -> None:
    assert schema_errors("sample", doc) == []
    result = decode(doc)
    assert result.rejects == []
    assert result.columns.ts.tolist() == [int(doc["ts"])]
    assert result.columns.value.tolist() == [float(doc["value"])]


def check_array(docs: list[dict[str, Any]]) -> None:
    assert schema_errors("batch-array", docs) == []
    result = decode(docs)
    assert result.rejects == []
    assert result.columns.index.tolist() == list(range(len(docs)))


def check_columnar(doc: dict[str, Any]) -> None:
    points = min(len(doc["ts"]), len(doc["value"]))  # equal lengths: beyond JSON Schema
    doc = {**doc, "ts": doc["ts"][:points], "value": doc["value"][:points]}
    assert schema_errors("batch-columnar", doc) == []
    result = decode(doc)
    assert result.rejects == []
    assert result.columns.ts.tolist() == [int(t) for t in doc["ts"]]


@FROM_SCHEMA
@given(SAMPLES)
def test_every_sample_the_schema_accepts_is_decoded(doc: dict[str, Any]) -> None:
    check_sample(doc)


@FROM_SCHEMA
@given(ARRAYS)
def test_every_array_batch_the_schema_accepts_is_decoded(docs: list[dict[str, Any]]) -> None:
    check_array(docs)


@FROM_SCHEMA
@given(COLUMNAR)
def test_every_columnar_batch_the_schema_accepts_is_decoded(doc: dict[str, Any]) -> None:
    check_columnar(doc)


@pytest.mark.slow
@THOROUGH
@given(SAMPLES | ARRAYS | COLUMNAR)
def test_many_records_the_schemas_accept_are_decoded(doc: Any) -> None:
    if isinstance(doc, list):
        check_array(doc)
    elif isinstance(doc["ts"], list):
        check_columnar(doc)
    else:
        check_sample(doc)


# -- schema rejects ⇔ decoder rejects ------------------------------------------------------------

EDGE_STRINGS = [
    *["", "a", "_", "x" * 32, "x" * 33, "x" * 200, "x" * 201, "x" * 256, "x" * 257],
    *["%", "{request}", "By/s", "a b", "a\n", "\n", 'a"b', "a\\b", "µs", "checkout|eu"],
    *["timer", "gauge", "counter", "delta", "cumulative", "monotonic", "histogram"],
    *["route", "1route", "http-route", "Route_2", "\x7f", "~", "ä"],
]
EDGE_NUMBERS = [
    *[0, -1, 1, -0.0, 0.5, MAX_TS - 1, MAX_TS, 2**63, 2**64, 10**300, float(MAX_TS - 1)],
    *[1796020000000.0, 1796020000000.5, 1e12, MAX_ABS_VALUE, -MAX_ABS_VALUE, 1e291, 1e308],
]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(EDGE_STRINGS)
    | st.sampled_from(EDGE_NUMBERS)
)
KEYS = st.text(max_size=6) | st.sampled_from(EDGE_STRINGS)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=6,
)
LABELS = st.dictionaries(KEYS, st.sampled_from(EDGE_STRINGS) | SCALARS, max_size=18)
FIELDS = ["service", "region", "name", "type", "value", "ts"]
FIELDS += ["labels", "unit", "instance", "temporality"]


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A schema-valid record with one to three known fields deleted or replaced."""
    doc = dict(draw(base))
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from(FIELDS))
        action = draw(st.sampled_from(["delete", "value", "labels", "list"]))
        if action == "delete":
            doc.pop(field, None)
        elif action == "labels":
            doc[field] = draw(LABELS)
        elif action == "list":
            doc[field] = draw(st.lists(SCALARS | JSON_VALUES, min_size=1, max_size=3))
        else:
            doc[field] = draw(JSON_VALUES)
    return doc


def assert_agree(doc: dict[str, Any]) -> None:
    ts, value = doc.get("ts"), doc.get("value")
    # Equal lengths of a columnar batch are beyond JSON Schema (length_mismatch).
    assume(not (isinstance(ts, list) and isinstance(value, list) and len(ts) != len(value)))
    schema_ok, decoder_ok = schema_accepts(doc), decoder_accepts(doc)
    assert schema_ok == decoder_ok, (doc, schema_errors("sample", doc), decode(doc).rejects)


VALID_SAMPLES: list[dict[str, Any]] = [
    GOOD,
    {**GOOD, "type": "gauge", "unit": "%", "labels": {"cpu": "0", "state": "user"}},
    {**GOOD, "type": "counter", "unit": "{request}", "value": 3, "instance": "pod-1"},
    {**GOOD, "type": "counter", "temporality": "cumulative", "instance": "pod-1", "value": 9},
    {**GOOD, "ts": 1796020000000.0, "value": -MAX_ABS_VALUE, "labels": None, "unit": None},
]
VALID_COLUMNAR = [
    {**s, "ts": [s["ts"], s["ts"] + 1.0], "value": [s["value"], 0]} for s in VALID_SAMPLES
]


@MUTATIONS
@given(mutated(st.sampled_from(VALID_SAMPLES)))
def test_schema_and_decoder_agree_on_mutated_samples(doc: dict[str, Any]) -> None:
    assert_agree(doc)


@MUTATIONS
@given(mutated(st.sampled_from(VALID_COLUMNAR)))
def test_schema_and_decoder_agree_on_mutated_columnar_batches(doc: dict[str, Any]) -> None:
    assert_agree(doc)


@pytest.mark.slow
@THOROUGH
@given(mutated(SAMPLES) | mutated(COLUMNAR))
def test_schema_and_decoder_agree_on_mutated_generated_records(doc: dict[str, Any]) -> None:
    assert_agree(doc)
