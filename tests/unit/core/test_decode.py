"""The decoder: every reason code it can produce, from minimal realistic input, and what survives.

Each bad input is checked three ways where that makes sense: as a single message (index -1), as
one element of a JSON-array batch between two valid samples (index = its position; the neighbours
must still come out), and as a point of a columnar batch for the column-only checks. A reject
accounts for the samples it stands for (`samples`, schemas/deadletter.schema.json): 1 for a
single sample or an unreadable message, every point of a rejected columnar batch.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest

from pipeline.core.decode import DecodeLimits, Decoder, DecodeResult, RawMessage, Reject
from pipeline.core.reasons import Reason
from pipeline.core.series import MetricKind, SeriesTable
from pipeline.core.validate import MAX_ABS_VALUE
from tests.support.samples import timer_sample

from .helpers import BASE_MS

HOUR = 3_600_000
MAX_AGE = 6 * HOUR  # DecodeLimits defaults
MAX_FUTURE = 10 * 60_000


# -- building input -------------------------------------------------------------------------


def sample(**changes: Any) -> dict[str, Any]:
    """A valid timer sample at BASE_MS; `changes` overrides (value None deletes the field)."""
    return timer_sample(**{"ts": BASE_MS, **changes})


def with_token(field: str, token: bytes, **changes: Any) -> bytes:
    """A sample's JSON text with `field` written as a raw token (NaN, 1e999, 2**63 ...)."""
    body = orjson.dumps(sample(**{field: None}, **changes))
    return body[:-1] + b',"' + field.encode() + b'":' + token + b"}"


def with_token_obj(field: str, token: bytes) -> orjson.Fragment:
    """A sample object with a raw token, for embedding in orjson.dumps of a list."""
    return orjson.Fragment(with_token(field, token))


def columnar(ts: list[Any], value: list[Any], **changes: Any) -> dict[str, Any]:
    out = sample(**changes)
    out["ts"], out["value"] = ts, value
    return out


GOOD = orjson.dumps(sample())


def same_result(a: DecodeResult, b: DecodeResult) -> bool:
    fields = ("series", "ts", "value", "instance", "offset", "index")
    return a.rejects == b.rejects and all(
        np.array_equal(getattr(a.columns, f), getattr(b.columns, f)) for f in fields
    )


def decode(
    values: list[bytes | None],
    timestamp_ms: int | None = BASE_MS,
    limits: DecodeLimits | None = None,
    table: SeriesTable | None = None,
) -> DecodeResult:
    """Decode once with a fresh decoder, then again with the same one (every series it accepted
    now known: the fast path); the decoder keeps no other state, so both must agree."""
    msgs = [RawMessage(v, i, timestamp_ms) for i, v in enumerate(values)]
    decoder = Decoder(SeriesTable() if table is None else table, limits)
    cold = decoder.decode(msgs)
    warm = decoder.decode(msgs)
    assert same_result(cold, warm), (cold, warm)
    return cold


def only_reject(result: DecodeResult) -> Reject:
    assert len(result.rejects) == 1, result.rejects
    return result.rejects[0]


def assert_whole_message_rejected(
    bad: bytes | None, reason: Reason, samples: int = 1, **kw: Any
) -> Reject:
    """`bad` between two valid single-sample messages: only it is rejected, as a whole."""
    result = decode([GOOD, bad, GOOD], **kw)
    rej = only_reject(result)
    assert (rej.reason, rej.offset, rej.index, rej.samples) == (reason, 1, -1, samples), rej
    assert rej.detail
    assert result.columns.offset.tolist() == [0, 2]
    assert result.columns.index.tolist() == [-1, -1]
    return rej


def assert_element_rejected(bad_item: bytes, reason: Reason, **kw: Any) -> Reject:
    """`bad_item` as element 1 of a JSON-array batch: elements 0 and 2 still come out."""
    batch = b"[" + GOOD + b"," + bad_item + b"," + GOOD + b"]"
    result = decode([batch], **kw)
    rej = only_reject(result)
    assert (rej.reason, rej.offset, rej.index, rej.samples) == (reason, 0, 1, 1), rej
    assert result.columns.offset.tolist() == [0, 0]
    assert result.columns.index.tolist() == [0, 2]
    np.testing.assert_array_equal(result.columns.value, [12.5, 12.5])
    return rej


# -- sample-level defects: rejected alone, as a message or as an array element ----------------

SEVENTEEN_LABELS = {f"l{i:02d}": "v" for i in range(17)}

SAMPLE_DEFECTS: list[tuple[str, bytes, Reason]] = [
    ("not_an_object_number", b"42", Reason.NOT_AN_OBJECT),
    ("not_an_object_string", b'"checkout"', Reason.NOT_AN_OBJECT),
    ("not_an_object_null", b"null", Reason.NOT_AN_OBJECT),
    *[
        (f"missing_{f}", orjson.dumps(sample(**{f: None})), Reason.MISSING_FIELD)
        for f in ("service", "region", "name", "type", "value", "ts")
    ],
    ("value_as_string", orjson.dumps(sample(value="12.5")), Reason.WRONG_TYPE),
    ("value_as_bool", orjson.dumps(sample(value=True)), Reason.WRONG_TYPE),
    ("value_as_list", orjson.dumps(sample(value=[12.5])), Reason.WRONG_TYPE),
    ("ts_as_string", orjson.dumps(sample(ts=str(BASE_MS))), Reason.WRONG_TYPE),
    ("ts_with_fraction", with_token("ts", b"1767225600000.5"), Reason.WRONG_TYPE),
    ("ts_as_float_seconds", orjson.dumps(sample(ts=BASE_MS / 1000 + 0.25)), Reason.WRONG_TYPE),
    ("ts_negative", orjson.dumps(sample(ts=-1)), Reason.WRONG_TYPE),
    ("ts_as_bool", orjson.dumps(sample(ts=True)), Reason.WRONG_TYPE),
    ("service_as_list", orjson.dumps(sample(service=["checkout"])), Reason.WRONG_TYPE),
    ("region_as_object", orjson.dumps(sample(region={"id": "eu"})), Reason.WRONG_TYPE),
    ("name_as_number", orjson.dumps(sample(name=5)), Reason.WRONG_TYPE),
    ("type_as_number", orjson.dumps(sample(type=1)), Reason.WRONG_TYPE),
    ("labels_as_list", orjson.dumps(sample(labels=["route", "/cart"])), Reason.WRONG_TYPE),
    ("labels_as_string", orjson.dumps(sample(labels="route=/cart")), Reason.WRONG_TYPE),
    ("instance_as_number", orjson.dumps(sample(instance=7)), Reason.WRONG_TYPE),
    ("instance_empty", orjson.dumps(sample(instance="")), Reason.WRONG_TYPE),
    ("temporality_on_timer", orjson.dumps(sample(temporality="delta")), Reason.WRONG_TYPE),
    (
        "counter_bad_temporality",
        orjson.dumps(sample(type="counter", temporality="monotonic")),
        Reason.WRONG_TYPE,
    ),
    ("service_with_space", orjson.dumps(sample(service="check out")), Reason.INVALID_IDENTIFIER),
    ("service_with_pipe", orjson.dumps(sample(service="checkout|eu")), Reason.INVALID_IDENTIFIER),
    ("region_empty", orjson.dumps(sample(region="")), Reason.INVALID_IDENTIFIER),
    ("name_too_long", orjson.dumps(sample(name="n" * 201)), Reason.INVALID_IDENTIFIER),
    ("unit_with_space", orjson.dumps(sample(unit="milli seconds")), Reason.INVALID_IDENTIFIER),
    ("type_histogram", orjson.dumps(sample(type="histogram")), Reason.UNKNOWN_METRIC_TYPE),
    ("type_summary", orjson.dumps(sample(type="summary")), Reason.UNKNOWN_METRIC_TYPE),
    ("value_NaN", with_token("value", b"NaN"), Reason.NON_FINITE_VALUE),
    ("value_Infinity", with_token("value", b"Infinity"), Reason.NON_FINITE_VALUE),
    ("value_minus_Infinity", with_token("value", b"-Infinity"), Reason.NON_FINITE_VALUE),
    ("value_1e999", with_token("value", b"1e999"), Reason.NON_FINITE_VALUE),
    ("value_minus_1e999", with_token("value", b"-1e999"), Reason.NON_FINITE_VALUE),
    (
        "negative_delta_counter",
        orjson.dumps(sample(type="counter", temporality="delta", unit="1", value=-3)),
        Reason.NEGATIVE_DELTA_COUNTER,
    ),
    (
        "negative_counter_default_delta",
        orjson.dumps(sample(type="counter", unit="1", value=-0.5)),
        Reason.NEGATIVE_DELTA_COUNTER,
    ),
    (
        "cumulative_without_instance",
        orjson.dumps(sample(type="counter", temporality="cumulative", value=10)),
        Reason.MISSING_INSTANCE,
    ),
    ("ts_too_old", orjson.dumps(sample(ts=BASE_MS - MAX_AGE - 1)), Reason.TS_TOO_OLD),
    ("ts_in_future", orjson.dumps(sample(ts=BASE_MS + MAX_FUTURE + 1)), Reason.TS_IN_FUTURE),
    ("seventeen_labels", orjson.dumps(sample(labels=SEVENTEEN_LABELS)), Reason.TOO_MANY_LABELS),
    ("label_name_digit", orjson.dumps(sample(labels={"1route": "/"})), Reason.INVALID_LABEL),
    ("label_name_dash", orjson.dumps(sample(labels={"http-route": "/"})), Reason.INVALID_LABEL),
    ("label_name_empty", orjson.dumps(sample(labels={"": "/"})), Reason.INVALID_LABEL),
    ("label_value_number", orjson.dumps(sample(labels={"status": 200})), Reason.INVALID_LABEL),
    ("label_value_long", orjson.dumps(sample(labels={"route": "x" * 257})), Reason.INVALID_LABEL),
]


@pytest.mark.parametrize(
    ("bad", "reason"), [pytest.param(b, r, id=i) for i, b, r in SAMPLE_DEFECTS]
)
def test_sample_defect_rejects_the_message(bad: bytes, reason: Reason) -> None:
    rej = assert_whole_message_rejected(bad, reason)
    assert rej.excerpt == bad  # a single message is its own excerpt (all are short)


@pytest.mark.parametrize(
    ("bad", "reason"), [pytest.param(b, r, id=i) for i, b, r in SAMPLE_DEFECTS]
)
def test_sample_defect_in_array_rejects_only_that_element(bad: bytes, reason: Reason) -> None:
    rej = assert_element_rejected(bad, reason)
    # The excerpt is the offending element, re-serialized (orjson writes NaN/Inf as null).
    element = json.loads(bad)
    if reason is Reason.NON_FINITE_VALUE:
        element["value"] = None
    assert orjson.loads(rej.excerpt) == element


def test_array_element_excerpt_is_that_element() -> None:
    bad = sample(value="12.5")
    rej = assert_element_rejected(orjson.dumps(bad), Reason.WRONG_TYPE)
    assert orjson.loads(rej.excerpt) == bad


def test_missing_field_detail_names_every_missing_field() -> None:
    rej = assert_whole_message_rejected(
        orjson.dumps(sample(ts=None, region=None)), Reason.MISSING_FIELD
    )
    assert "region" in rej.detail and "ts" in rej.detail


# -- message-level defects ----------------------------------------------------------------------

MALFORMED = [
    pytest.param(GOOD[:-7], id="truncated"),
    pytest.param(GOOD[:-1] + b",}", id="trailing_comma"),
    pytest.param(repr(sample()).encode(), id="python_repr_single_quotes"),
    pytest.param(b"\xff\xfe\x00not json", id="invalid_utf8"),
    pytest.param(b"", id="empty_value"),
    pytest.param(None, id="tombstone_none"),
    pytest.param(b"[" + GOOD + b"," + GOOD, id="unclosed_array"),
]


@pytest.mark.parametrize("bad", MALFORMED)
def test_malformed_json(bad: bytes | None) -> None:
    rej = assert_whole_message_rejected(bad, Reason.MALFORMED_JSON)
    assert rej.excerpt == (bad or b"")


def test_malformed_json_excerpt_is_cut() -> None:
    bad = b"{" + b"x" * 5000
    rej = assert_whole_message_rejected(bad, Reason.MALFORMED_JSON)
    assert rej.excerpt == bad[:1024]


@pytest.mark.parametrize("bad", [b"true", b"12.5", b'"x"', b"null"])
def test_top_level_scalar_is_not_an_object(bad: bytes) -> None:
    assert_whole_message_rejected(bad, Reason.NOT_AN_OBJECT)


def test_oversize_message_at_the_default_limit() -> None:
    limit = DecodeLimits().max_message_bytes
    # A valid sample padded with whitespace: only its size is wrong.
    exactly = GOOD[:-1] + b" " * (limit - len(GOOD)) + b"}"
    over = GOOD[:-1] + b" " * (limit + 1 - len(GOOD)) + b"}"
    assert len(exactly) == limit and len(over) == limit + 1
    result = decode([exactly])
    assert result.rejects == [] and len(result.columns) == 1
    rej = assert_whole_message_rejected(over, Reason.OVERSIZE_MESSAGE)
    assert rej.excerpt == over[:1024]


def test_oversize_array_batch_is_one_reject() -> None:
    limits = DecodeLimits(max_message_bytes=1024)
    batch = orjson.dumps([sample(ts=BASE_MS + i) for i in range(20)])
    assert len(batch) > 1024
    assert_whole_message_rejected(batch, Reason.OVERSIZE_MESSAGE, limits=limits)


def test_empty_array_is_empty_batch() -> None:
    rej = assert_whole_message_rejected(b"[]", Reason.EMPTY_BATCH)
    assert rej.samples == 1


def test_too_many_labels_respects_the_limit() -> None:
    sixteen = {f"l{i:02d}": "v" for i in range(16)}
    result = decode([orjson.dumps(sample(labels=sixteen))])
    assert result.rejects == [] and len(result.columns) == 1
    limits = DecodeLimits(max_labels=2)
    three = orjson.dumps(sample(labels={"a": "1", "b": "2", "c": "3"}))
    assert_whole_message_rejected(three, Reason.TOO_MANY_LABELS, limits=limits)


def test_label_value_at_the_length_limit_is_fine() -> None:
    result = decode([orjson.dumps(sample(labels={"route": "x" * 256}))])
    assert result.rejects == [] and len(result.columns) == 1


# -- columnar batches ---------------------------------------------------------------------------


def test_columnar_batch_decodes_every_point() -> None:
    doc = columnar([BASE_MS, BASE_MS + 1, BASE_MS + 2], [1.0, 2, 3.5], labels={"route": "/"})
    result = decode([orjson.dumps(doc)])
    assert result.rejects == []
    cols = result.columns
    assert cols.ts.tolist() == [BASE_MS, BASE_MS + 1, BASE_MS + 2]
    assert cols.value.tolist() == [1.0, 2.0, 3.5]
    assert cols.offset.tolist() == [0, 0, 0]
    assert cols.index.tolist() == [0, 1, 2]
    assert cols.instance.tolist() == [-1, -1, -1]
    assert len(set(cols.series.tolist())) == 1


COLUMNAR_WHOLE = [
    pytest.param(columnar([BASE_MS, BASE_MS + 1], [1.0]), Reason.LENGTH_MISMATCH, id="ts_longer"),
    pytest.param(columnar([BASE_MS], [1.0, 2.0]), Reason.LENGTH_MISMATCH, id="value_longer"),
    pytest.param(columnar([], []), Reason.EMPTY_BATCH, id="empty_arrays"),
    pytest.param(
        {k: v for k, v in columnar([BASE_MS], [1.0]).items() if k != "value"},
        Reason.MISSING_FIELD,
        id="no_value",
    ),
    pytest.param(columnar([BASE_MS], [1.0], service=None), Reason.MISSING_FIELD, id="no_svc"),
    pytest.param(
        {**columnar([BASE_MS], [1.0]), "value": 1.0}, Reason.WRONG_TYPE, id="value_scalar"
    ),
    pytest.param(columnar([BASE_MS + 0.5], [1.0]), Reason.WRONG_TYPE, id="ts_float"),
    pytest.param(columnar([BASE_MS, -1], [1.0, 2.0]), Reason.WRONG_TYPE, id="ts_negative"),
    pytest.param(columnar([str(BASE_MS)], [1.0]), Reason.WRONG_TYPE, id="ts_string"),
    pytest.param(columnar([BASE_MS], ["1.0"]), Reason.WRONG_TYPE, id="value_string"),
    pytest.param(columnar([BASE_MS], [True]), Reason.WRONG_TYPE, id="value_bool"),
    pytest.param(columnar([BASE_MS], [None]), Reason.WRONG_TYPE, id="value_null"),
    pytest.param(columnar([BASE_MS], [1.0], instance=3), Reason.WRONG_TYPE, id="instance_number"),
    pytest.param(
        columnar([BASE_MS], [1.0], service="check out"), Reason.INVALID_IDENTIFIER, id="svc"
    ),
    pytest.param(
        columnar([BASE_MS], [1.0], type="histogram"), Reason.UNKNOWN_METRIC_TYPE, id="type"
    ),
    pytest.param(
        columnar([BASE_MS], [1.0], type="counter", temporality="cumulative"),
        Reason.MISSING_INSTANCE,
        id="cumulative_no_instance",
    ),
    pytest.param(
        columnar([BASE_MS], [1.0], labels=SEVENTEEN_LABELS), Reason.TOO_MANY_LABELS, id="labels"
    ),
    pytest.param(
        columnar([BASE_MS], [1.0], labels={"a-b": "x"}), Reason.INVALID_LABEL, id="label_name"
    ),
]


@pytest.mark.parametrize(("doc", "reason"), COLUMNAR_WHOLE)
def test_columnar_defect_rejects_the_whole_batch(doc: dict[str, Any], reason: Reason) -> None:
    bad = orjson.dumps(doc)
    # It accounts for all of its points: the longer of its arrays.
    points = max(1, *(len(doc[k]) for k in ("ts", "value") if isinstance(doc.get(k), list)))
    rej = assert_whole_message_rejected(bad, reason, samples=points)
    assert rej.excerpt == bad


COLUMNAR_POINT = [
    pytest.param(b"NaN", {}, Reason.NON_FINITE_VALUE, id="NaN"),
    pytest.param(b"Infinity", {}, Reason.NON_FINITE_VALUE, id="Infinity"),
    pytest.param(b"-1e999", {}, Reason.NON_FINITE_VALUE, id="minus_1e999"),
    pytest.param(
        b"-2", {"type": "counter", "unit": "1"}, Reason.NEGATIVE_DELTA_COUNTER, id="neg_delta"
    ),
]


@pytest.mark.parametrize(("token", "changes", "reason"), COLUMNAR_POINT)
def test_columnar_point_defect_rejects_only_that_point(
    token: bytes, changes: dict[str, Any], reason: Reason
) -> None:
    head = orjson.dumps(sample(ts=None, value=None, **changes))[:-1]
    ts = [BASE_MS, BASE_MS + 1, BASE_MS + 2]
    bad = head + b',"ts":' + orjson.dumps(ts) + b',"value":[1,' + token + b",3]}"
    result = decode([GOOD, bad, GOOD])
    rej = only_reject(result)
    assert (rej.reason, rej.offset, rej.index, rej.samples) == (reason, 1, 1, 1)
    assert result.columns.offset.tolist() == [0, 1, 1, 2]
    assert result.columns.index.tolist() == [-1, 0, 2, -1]
    assert result.columns.value.tolist() == [12.5, 1.0, 3.0, 12.5]
    # The excerpt is that point as a single sample.
    point = orjson.loads(rej.excerpt.replace(b"NaN", b"null").replace(b"Infinity", b"1"))
    assert point["ts"] == BASE_MS + 1 and point["service"] == "checkout"


def test_columnar_timestamp_checks_are_per_point() -> None:
    ts = [BASE_MS - MAX_AGE - 1, BASE_MS, BASE_MS + MAX_FUTURE + 1, BASE_MS + MAX_FUTURE]
    result = decode([orjson.dumps(columnar(ts, [1.0, 2.0, 3.0, 4.0]))])
    got = [(r.reason, r.offset, r.index, r.samples) for r in result.rejects]
    assert got == [(Reason.TS_TOO_OLD, 0, 0, 1), (Reason.TS_IN_FUTURE, 0, 2, 1)]
    assert result.columns.index.tolist() == [1, 3]
    assert result.columns.value.tolist() == [2.0, 4.0]


def test_columnar_batches_keep_partition_order() -> None:
    values: list[bytes | None] = [
        orjson.dumps(sample(ts=BASE_MS + 10)),
        orjson.dumps(columnar([BASE_MS + 20, BASE_MS + 21, BASE_MS + 22], [1.0, 2.0, 3.0])),
        orjson.dumps([sample(ts=BASE_MS + 30), sample(ts=BASE_MS + 31)]),
        orjson.dumps(columnar([BASE_MS + 40], [4.0], service="cart")),
        orjson.dumps(sample(ts=BASE_MS + 50)),
        orjson.dumps(columnar([BASE_MS + 60, BASE_MS + 61], [6.0, 7.0])),
    ]
    result = decode(values)
    cols = result.columns
    assert result.rejects == []
    assert cols.offset.tolist() == [0, 1, 1, 1, 2, 2, 3, 4, 5, 5]
    assert cols.index.tolist() == [-1, 0, 1, 2, 0, 1, 0, -1, 0, 1]
    assert cols.ts.tolist() == [BASE_MS + t for t in (10, 20, 21, 22, 30, 31, 40, 50, 60, 61)]
    assert bool(np.all(np.diff(cols.offset) >= 0))


def test_columnar_counter_with_instance() -> None:
    doc = columnar(
        [BASE_MS, BASE_MS + 1000],
        [10, 15],
        type="counter",
        temporality="cumulative",
        unit="1",
        instance="pod-1",
    )
    table = SeriesTable()
    result = decode([orjson.dumps(doc)], table=table)
    assert result.rejects == []
    assert result.columns.instance.tolist() == [0, 0]
    assert table.instance_names == ["pod-1"]
    assert table.identities[0].kind is MetricKind.COUNTER_CUMULATIVE


# -- values that are fine -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "ok",
    [
        pytest.param(sample(type="gauge", value=-40.5, unit="Cel"), id="negative_gauge"),
        pytest.param(sample(value=-1.0), id="negative_timer"),
        pytest.param(sample(type="counter", value=0), id="zero_delta_counter"),
        pytest.param(
            sample(type="counter", temporality="cumulative", value=-5, instance="pod-1"),
            id="cumulative_counter_with_instance",
        ),
        pytest.param(sample(value=3), id="integer_value"),
        pytest.param(sample(ts=0, value=1.0), id="ts_zero_without_message_time_check"),
    ],
)
def test_valid_samples_are_kept(ok: dict[str, Any]) -> None:
    result = decode([orjson.dumps(ok)], timestamp_ms=None)
    assert result.rejects == []
    assert result.columns.value.tolist() == [float(ok["value"])]
    assert result.columns.ts.tolist() == [ok["ts"]]


def test_timestamp_bounds_are_inclusive() -> None:
    edge = [sample(ts=BASE_MS - MAX_AGE), sample(ts=BASE_MS + MAX_FUTURE)]
    result = decode([orjson.dumps(edge)])
    assert result.rejects == [] and len(result.columns) == 2


def test_timestamps_not_checked_without_message_time() -> None:
    far = [sample(ts=BASE_MS - 100 * MAX_AGE), sample(ts=BASE_MS + 100 * MAX_FUTURE)]
    result = decode([orjson.dumps(far)], timestamp_ms=None)
    assert result.rejects == []
    assert result.columns.ts.tolist() == [BASE_MS - 100 * MAX_AGE, BASE_MS + 100 * MAX_FUTURE]
    # The same samples against a message time are rejected.
    result = decode([orjson.dumps(far)], timestamp_ms=BASE_MS)
    assert [r.reason for r in result.rejects] == [Reason.TS_TOO_OLD, Reason.TS_IN_FUTURE]


def test_timestamps_are_checked_against_each_message_time() -> None:
    old = orjson.dumps(sample(ts=BASE_MS))
    msgs = [
        RawMessage(old, 0, BASE_MS),
        RawMessage(old, 1, BASE_MS + MAX_AGE + 1),  # same ts, message sent 6 h later
        RawMessage(old, 2, None),
        RawMessage(old, 3, BASE_MS - MAX_FUTURE - 1),
    ]
    result = Decoder(SeriesTable()).decode(msgs)
    assert [(r.reason, r.offset) for r in result.rejects] == [
        (Reason.TS_TOO_OLD, 1),
        (Reason.TS_IN_FUTURE, 3),
    ]
    assert result.columns.offset.tolist() == [0, 2]


def test_unknown_extra_fields_are_ignored() -> None:
    extra = sample(host="web-1", sdk={"name": "otel", "version": [1, 2]}, note=None)
    extra["trace_id"] = "abc"
    table = SeriesTable()
    result = decode([orjson.dumps(extra), GOOD], table=table)
    assert result.rejects == []
    assert len(table) == 1
    assert result.columns.series.tolist() == [0, 0]


def test_every_reject_is_sorted_by_offset_then_index() -> None:
    values: list[bytes | None] = [
        orjson.dumps([sample(value="x"), sample(), sample(ts=BASE_MS + MAX_FUTURE + 1)]),
        with_token("value", b"NaN"),
        b"{",
        orjson.dumps([sample(value=None), with_token_obj("value", b"Infinity")]),
    ]
    result = decode(values)
    got = [(r.offset, r.index, r.reason) for r in result.rejects]
    assert got == [
        (0, 0, Reason.WRONG_TYPE),
        (0, 2, Reason.TS_IN_FUTURE),
        (1, -1, Reason.NON_FINITE_VALUE),
        (2, -1, Reason.MALFORMED_JSON),
        (3, 0, Reason.MISSING_FIELD),
        (3, 1, Reason.NON_FINITE_VALUE),
    ]
    assert result.columns.offset.tolist() == [0]
    assert result.columns.index.tolist() == [1]


def test_all_decoder_reasons_are_covered() -> None:
    covered = {r for _, _, r in SAMPLE_DEFECTS}
    covered |= {p.values[1] for p in COLUMNAR_WHOLE}
    covered |= {Reason.MALFORMED_JSON, Reason.OVERSIZE_MESSAGE, Reason.EMPTY_BATCH}
    covered |= {Reason.VALUE_OUT_OF_RANGE}  # test_values_beyond_the_magnitude_limit_...
    covered |= {Reason.UNDECODABLE}  # test_poison.py: a fault injected into the decoder
    # Late is the aggregator's verdict; the rollup reasons are the tier's (test_tier.py) and the
    # sinks' (tests/unit/sinks), the anomaly ones the alert bridge's (tests/unit/alerting).
    not_decoder = {
        Reason.LATE,
        Reason.UNEXPECTED_RECORD,
        Reason.INVALID_ROLLUP,
        Reason.WRONG_RESOLUTION,
        Reason.STORE_REJECTED,
        Reason.INVALID_ANOMALY,
        Reason.ALERT_REJECTED,
    }
    assert covered == set(Reason) - not_decoder


# -- series identity -------------------------------------------------------------------------------


def test_label_order_does_not_make_a_new_series() -> None:
    a = b'{"service":"checkout","region":"eu","name":"m","type":"timer","value":1,"ts":%d,' % (
        BASE_MS
    )
    table = SeriesTable()
    result = decode(
        [
            a + b'"labels":{"route":"/cart","method":"GET"}}',
            a + b'"labels":{"method":"GET","route":"/cart"}}',
            orjson.dumps(
                columnar(
                    [BASE_MS],
                    [2.0],
                    region="eu",
                    name="m",
                    unit=None,
                    labels={"method": "GET", "route": "/cart"},
                )
            ),
        ],
        table=table,
    )
    assert result.rejects == []
    assert result.columns.series.tolist() == [0, 0, 0]
    assert len(table) == 1
    assert table.identities[0].labels == (("method", "GET"), ("route", "/cart"))


def test_absent_and_empty_labels_and_unit_are_one_series() -> None:
    table = SeriesTable()
    result = decode(
        [
            orjson.dumps(sample(unit=None)),
            orjson.dumps(sample(unit="", labels={})),
            orjson.dumps(sample(unit=None, labels={})),
        ],
        table=table,
    )
    assert result.rejects == []
    assert result.columns.series.tolist() == [0, 0, 0]
    assert len(table) == 1


def test_timer_and_gauge_of_the_same_name_are_two_series() -> None:
    table = SeriesTable()
    result = decode(
        [
            orjson.dumps(sample(type="timer")),
            orjson.dumps(sample(type="gauge")),
            orjson.dumps(sample(type="timer")),
            orjson.dumps(sample(type="counter", value=1)),
            orjson.dumps(sample(type="counter", temporality="cumulative", value=1, instance="a")),
        ],
        table=table,
    )
    assert result.rejects == []
    assert result.columns.series.tolist() == [0, 1, 0, 2, 3]
    kinds = [i.kind for i in table.identities]
    assert kinds == [
        MetricKind.TIMER,
        MetricKind.GAUGE,
        MetricKind.COUNTER_DELTA,
        MetricKind.COUNTER_CUMULATIVE,
    ]
    assert len({table.key_of(s) for s in range(4)}) == 4


def test_series_ids_and_keys_are_stable_per_identity() -> None:
    table = SeriesTable()
    decoder = Decoder(table)
    first = decoder.decode(
        [RawMessage(orjson.dumps(sample(service=s)), i, BASE_MS) for i, s in enumerate("abc")]
    )
    # Later batches, in another order and encoding, map to the same ids.
    again = decoder.decode(
        [
            RawMessage(orjson.dumps(columnar([BASE_MS], [1.0], service="c")), 3, BASE_MS),
            RawMessage(orjson.dumps([sample(service="a"), sample(service="b")]), 4, BASE_MS),
        ]
    )
    assert first.columns.series.tolist() == [0, 1, 2]
    assert again.columns.series.tolist() == [2, 0, 1]
    assert len(table) == 3
    assert table.key_of(0) == "a|eu-west-1|http.server.duration|timer|ms|"
    # A table that meets the series in another order gives other ids but the same keys.
    other = SeriesTable()
    decode([orjson.dumps(sample(service=s)) for s in "cba"], table=other)
    assert {other.key_of(i) for i in range(3)} == {table.key_of(i) for i in range(3)}
    assert other.key_of(0) == table.key_of(2)


def test_series_key_of_labelled_counter() -> None:
    table = SeriesTable()
    doc = sample(type="counter", unit="1", value=2, labels={"z": "1", "a": "|"})
    decode([orjson.dumps(doc)], table=table)
    assert (
        table.key_of(0)
        == 'checkout|eu-west-1|http.server.duration|counter.delta|1|{"a":"|","z":"1"}'
    )


# -- hostile input must be rejected, never crash the batch --------------------------------------
# Each of these crashed decode(), a later checkpoint or a window close, or was silently
# mis-aggregated, in an earlier version of the decoder.

MAX_TS = 2**42  # pipeline.core.validate.MAX_TS: ts must be an integer epoch ms in [0, 2**42)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(str(MAX_TS).encode(), id="2**42"),
        pytest.param(str(2**63).encode(), id="2**63_u64"),  # orjson reads it as u64
        pytest.param(str(2**64 - 1).encode(), id="2**64-1"),
        pytest.param(str(2**70).encode(), id="2**70"),  # beyond 64 bits: parsed as a float
    ],
)
def test_ts_out_of_range_is_wrong_type(token: bytes) -> None:
    assert_whole_message_rejected(with_token("ts", token), Reason.WRONG_TYPE)
    assert_element_rejected(with_token("ts", token), Reason.WRONG_TYPE)


def test_ts_just_below_the_range_limit_is_accepted() -> None:
    result = decode([orjson.dumps(sample(ts=MAX_TS - 1))], timestamp_ms=None)
    assert result.rejects == [] and result.columns.ts.tolist() == [MAX_TS - 1]


@pytest.mark.parametrize("ts", [MAX_TS, 2**63, 2**64 - 1])
def test_columnar_ts_out_of_range_is_wrong_type(ts: int) -> None:
    # Without a message time no ts check would catch a wrapped-around negative ts later.
    head = orjson.dumps(sample(ts=None, value=None))[:-1]
    bad = head + b',"ts":[' + str(BASE_MS).encode() + b"," + str(ts).encode()
    bad += b'],"value":[1.0,2.0]}'
    assert_whole_message_rejected(bad, Reason.WRONG_TYPE, samples=2, timestamp_ms=None)


def test_integer_value_beyond_float_range_is_out_of_range() -> None:
    bad = with_token("value", b"1" + b"0" * 309)
    assert_whole_message_rejected(bad, Reason.VALUE_OUT_OF_RANGE)
    assert_element_rejected(bad, Reason.VALUE_OUT_OF_RANGE)


def test_large_integer_values_are_kept_as_floats() -> None:
    big = 2**64 - 1  # orjson reads it as u64; float() is fine
    result = decode([with_token("value", str(big).encode())])
    assert result.rejects == [] and result.columns.value.tolist() == [float(big)]
    doc = columnar([BASE_MS, BASE_MS], [big, -(2**63)])
    result = decode([orjson.dumps(doc)])
    assert result.rejects == []
    assert result.columns.value.tolist() == [float(big), float(-(2**63))]


@pytest.mark.parametrize("field", ["ts", "value"])
def test_ragged_columnar_array_is_wrong_type(field: str) -> None:
    doc = columnar([BASE_MS, BASE_MS + 1], [1.0, 2.0])
    doc[field] = [doc[field][0], [doc[field][1]]]
    assert_whole_message_rejected(orjson.dumps(doc), Reason.WRONG_TYPE, samples=2)


def lone_surrogate(field: str, **changes: Any) -> bytes:
    """A sample whose `field` is the JSON string "\\ud800" (valid JSON, not valid Unicode)."""
    head = orjson.dumps(sample(**{field: None}, **changes))[:-1]
    return head + b',"' + field.encode() + b'":"\\ud800"}'


def test_lone_surrogate_label_value_is_invalid_label() -> None:
    head = orjson.dumps(sample())[:-1]
    bad = head + b',"labels":{"k":"\\ud800"}}'
    assert_whole_message_rejected(bad, Reason.INVALID_LABEL)
    assert_element_rejected(bad, Reason.INVALID_LABEL)


def test_lone_surrogate_service_is_invalid_identifier() -> None:
    assert_whole_message_rejected(lone_surrogate("service"), Reason.INVALID_IDENTIFIER)


def test_lone_surrogate_instance_is_wrong_type() -> None:
    bad = lone_surrogate("instance", type="counter", temporality="cumulative", value=5)
    assert_whole_message_rejected(bad, Reason.WRONG_TYPE)
    assert_element_rejected(bad, Reason.WRONG_TYPE)


def test_unhashable_label_value_is_invalid_label() -> None:
    bad = orjson.dumps(sample(labels={"route": ["/cart"]}))
    assert_whole_message_rejected(bad, Reason.INVALID_LABEL)
    assert_element_rejected(bad, Reason.INVALID_LABEL)


def test_columnar_lone_surrogate_instance_is_rejected() -> None:
    table = SeriesTable()
    values: list[bytes | None] = []
    for i in range(3):  # 20 s apart: the first windows close, so the checkpoint holds counters
        head = orjson.dumps(sample(type="counter", temporality="cumulative", ts=None, value=None))
        values.append(
            head[:-1]
            + b',"instance":"\\ud800","ts":['
            + str(BASE_MS + 20_000 * i).encode()
            + b'],"value":['
            + str(5 + i).encode()
            + b"]}"
        )
    # Accepted, it reached the checkpoint, whose orjson encode raised TypeError at commit time.
    result = decode(values, timestamp_ms=None, table=table)
    assert [(r.reason, r.index) for r in result.rejects] == [(Reason.WRONG_TYPE, -1)] * 3
    assert len(result.columns) == 0 and table.instance_names == []


@pytest.mark.parametrize("field", ["ts", "value"])
def test_columnar_boolean_elements_are_wrong_type(field: str) -> None:
    # np.array coerced [true, 1767...] to int64 [1, 1767...]: aggregated as ts=1 / value=1.0.
    doc = columnar([BASE_MS, BASE_MS + 1], [1.0, 2.5])
    doc[field] = [True, doc[field][1]]
    assert_whole_message_rejected(
        orjson.dumps(doc), Reason.WRONG_TYPE, samples=2, timestamp_ms=None
    )


def test_values_beyond_the_magnitude_limit_are_out_of_range() -> None:
    # |value| <= MAX_ABS_VALUE (1e290) keeps every window sum finite (math.fsum raised
    # OverflowError at window close for two samples of 1e308: a poison pill on every replay).
    limit = MAX_ABS_VALUE
    for token in (b"1e291", b"-1e300", b"1.7e308"):
        assert_whole_message_rejected(with_token("value", token), Reason.VALUE_OUT_OF_RANGE)
        assert_element_rejected(with_token("value", token), Reason.VALUE_OUT_OF_RANGE)
    result = decode([orjson.dumps([sample(value=limit), sample(value=-limit)])])
    assert result.rejects == [] and result.columns.value.tolist() == [limit, -limit]
    head = orjson.dumps(sample(ts=None, value=None))[:-1]
    bad = head + b',"ts":[%d,%d],"value":[1.0,1e299]}' % (BASE_MS, BASE_MS + 1)
    result = decode([bad])
    assert [(r.reason, r.index) for r in result.rejects] == [(Reason.VALUE_OUT_OF_RANGE, 1)]


def test_null_record_value_is_malformed_not_a_crash() -> None:
    # A tombstone (Kafka record with a null value) must be dead-lettered like any bad input.
    decoder = Decoder(SeriesTable())
    result = decoder.decode_lists([None, b"{}"], [0, 1], [-1, -1])
    assert [(r.reason.value, r.offset) for r in result.rejects] == [
        ("malformed_json", 0),
        ("missing_field", 1),
    ]
    assert len(result.columns) == 0
