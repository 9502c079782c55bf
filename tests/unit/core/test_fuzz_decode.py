"""Fuzzing the decode and dead-letter path: whatever the bytes, nothing escapes, nothing is lost.

Batches mix well-formed and hostile records of every encoding (single samples, JSON arrays,
columnar batches) with wrong types, huge numbers, NaN, unicode and lone surrogates, deep
nesting, random and truncated bytes. For each batch:
- decode never raises, and never needs its `undecodable` safety net (that would be our defect);
- every record's points are accounted exactly once: decoded + dead-lettered samples = offered;
- decoded columns hold only values the contract allows;
- dead-letter records are valid (schemas/deadletter.schema.json), bounded in size, uniquely keyed;
- decoding again with the now-warm decoder gives the same result.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.contract import MAX_ABS_VALUE, MAX_TS
from pipeline.core.decode import DecodeLimits, Decoder, DecodeResult
from pipeline.core.reasons import Reason
from pipeline.core.series import SeriesTable
from pipeline.kafka.deadletter import MAX_RECORD_BYTES, reject_records
from tests.support.schemas import schema_errors

from .helpers import BASE_MS

LIMITS = DecodeLimits(max_message_bytes=64 * 1024)  # small, so oversize records are cheap
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
LONG_FUZZ = settings(FUZZ, max_examples=400)

# -- building hostile records ---------------------------------------------------------------------

EDGE_STRINGS = st.sampled_from(
    [
        *["", "checkout", "a b", "%", "{request}", "timer", "gauge", "counter", "delta"],
        *["cumulative", "x" * 201, "é", "\x00", "\n", "a|b", "route", "1a", "\U0001f600"],
        "\ud800",
    ]
)
TEXT = st.text(st.characters(codec=None), max_size=20) | EDGE_STRINGS
NUMBERS = (
    st.integers()  # unbounded: beyond 64 bits and the float range
    | st.floats()  # NaN and ±Infinity written as such
    | st.sampled_from([0, -1, MAX_TS - 1, MAX_TS, 2**63, 2**64, 10**400, 1e308, MAX_ABS_VALUE])
    | st.sampled_from([BASE_MS, BASE_MS - 7 * 3_600_000, BASE_MS + 3_600_000, 1796020000000.0])
)
LEAVES = st.none() | st.booleans() | NUMBERS | TEXT
JSON_VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=10,
)


def deep(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


# Depths around the limits of orjson (254 to write, 1024 to read) and of Python's recursion.
NESTED = st.one_of(
    st.sampled_from([254, 256, 1000, 1010, 1020, 1030, 5000]),
    st.sampled_from([1000, 1010, 1020]),
    st.integers(1, 3000),
).map(deep)


def field_values(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return good | good | good | JSON_VALUES


IDENTITY = {
    "service": field_values(st.sampled_from(["checkout", "cart", "a.b:c/d-e"])),
    "region": field_values(st.just("eu-west-1")),
    "name": field_values(st.sampled_from(["latency", "requests"])),
    "type": field_values(st.sampled_from(["timer", "gauge", "counter"])),
}
OPTIONAL = {
    "unit": field_values(st.sampled_from(["ms", "%", "By/s", None])),
    "instance": field_values(st.sampled_from(["pod-1", "pod-2"])),
    "temporality": field_values(st.sampled_from(["delta", "cumulative"])),
    "labels": field_values(
        st.dictionaries(st.sampled_from(["route", "code", "a-b"]), TEXT, max_size=3)
    ),
    "junk": JSON_VALUES,
}
GOOD_TS = st.integers(BASE_MS - 8 * 3_600_000, BASE_MS + 3_600_000)
GOOD_VALUE = st.floats(-1e6, 1e6) | st.integers(-5, 1000)

SAMPLES = st.fixed_dictionaries(
    {**IDENTITY, "ts": field_values(GOOD_TS), "value": field_values(GOOD_VALUE)},
    optional=OPTIONAL,
)
COLUMNAR = st.fixed_dictionaries(
    {
        **IDENTITY,
        "ts": st.lists(field_values(GOOD_TS), max_size=12) | JSON_VALUES,
        "value": st.lists(field_values(GOOD_VALUE), max_size=12) | JSON_VALUES,
    },
    optional=OPTIONAL,
).map(lambda d: d if isinstance(d["ts"], list) else {**d, "ts": [d["ts"]]})
DOCS = SAMPLES | COLUMNAR | st.lists(SAMPLES | JSON_VALUES, max_size=8) | JSON_VALUES


@st.composite
def encoded(draw: st.DrawFn) -> bytes:
    """A document written as JSON text, objects sometimes with deep nesting spliced in."""
    ascii_only = draw(st.booleans())

    def write(doc: Any) -> str:
        text = json.dumps(doc, ensure_ascii=ascii_only)
        if isinstance(doc, dict) and doc and draw(st.booleans()):
            text = text[:-1] + ', "nested": ' + draw(NESTED) + "}"
        return text

    doc = draw(DOCS)
    text = "[" + ",".join(map(write, doc)) + "]" if isinstance(doc, list) else write(doc)
    return text.encode("utf-8", "surrogatepass")  # lone surrogates: invalid UTF-8


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A record truncated, with bytes flipped, or padded beyond the size limit."""
    raw = draw(encoded())
    how = draw(st.sampled_from(["truncate", "flip", "oversize"]))
    if how == "truncate":
        return raw[: draw(st.integers(0, len(raw)))]
    if how == "flip" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        return raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1 :]
    return raw + b" " * LIMITS.max_message_bytes


# Clean JSON (no NaN, no surrogates) reaches orjson's reading and the validator's verdicts.
CLEAN_SAMPLES = st.fixed_dictionaries(
    {
        "service": st.sampled_from(["checkout", "check out"]),
        "region": st.just("eu"),
        "name": st.just("latency"),
        "type": st.sampled_from(["timer", "counter", "summary"]),
        "ts": GOOD_TS | st.sampled_from([-1, MAX_TS, 1.5]),
        "value": GOOD_VALUE | st.sampled_from(["x", -1, 1e300, None]),
    }
)
CLEAN_DOCS = (
    st.lists(CLEAN_SAMPLES, min_size=1, max_size=6)
    | CLEAN_SAMPLES
    | CLEAN_SAMPLES.map(lambda d: {**d, "ts": [d["ts"]] * 3, "value": [d["value"]] * 3})
)


@st.composite
def clean(draw: st.DrawFn) -> bytes:
    """Valid JSON with deep nesting spliced into objects, as in a real poison pill."""

    def write(doc: dict[str, Any]) -> str:
        return json.dumps(doc)[:-1] + ', "junk": ' + draw(NESTED) + "}"

    doc = draw(CLEAN_DOCS)
    text = "[" + ",".join(map(write, doc)) + "]" if isinstance(doc, list) else write(doc)
    return text.encode()


RECORDS = encoded() | clean() | damaged() | st.binary(max_size=64) | st.just(b"")
BATCHES = st.lists(RECORDS, min_size=1, max_size=8)
TIMES = st.sampled_from([-1, BASE_MS])


# -- what must hold -------------------------------------------------------------------------------


def offered(raw: bytes) -> int:
    """Points a record offers (docs/contracts.md): 1 unless it reads as a batch."""
    if len(raw) > LIMITS.max_message_bytes:
        return 1
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError):
            return 1
    if isinstance(doc, list):
        return max(1, len(doc))
    if isinstance(doc, dict) and isinstance(doc.get("ts"), list):
        lengths = [len(doc[k]) for k in ("ts", "value") if isinstance(doc.get(k), list)]
        return max([1, *lengths])
    return 1


def same(a: DecodeResult, b: DecodeResult) -> bool:
    names = ("series", "ts", "value", "instance", "offset", "index")
    return a.rejects == b.rejects and all(
        np.array_equal(getattr(a.columns, n), getattr(b.columns, n)) for n in names
    )


@contextmanager
def default_recursion_limit() -> Iterator[None]:
    """Python's default recursion limit, which the worker runs with: Hypothesis raises it while
    a test runs, which hid the RecursionError of the deep-nesting poison pill from the fuzzer."""
    raised = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        yield
    finally:
        sys.setrecursionlimit(raised)


def check_batch(records: list[bytes], mtime: int) -> None:
    with default_recursion_limit():
        check_decoding(records, mtime)


def check_decoding(records: list[bytes], mtime: int) -> None:
    offsets = list(range(100, 100 + len(records)))
    decoder = Decoder(SeriesTable(), LIMITS)
    values: list[bytes | None] = list(records)
    result = decoder.decode_lists(values, offsets, [mtime] * len(records))
    assert Reason.UNDECODABLE not in {r.reason for r in result.rejects}, result.rejects
    warm = decoder.decode_lists(values, offsets, [mtime] * len(records))
    assert same(result, warm)

    cols = result.columns
    assert bool(np.all(np.isfinite(cols.value))) and bool(np.all(np.abs(cols.value) <= 1e290))
    assert bool(np.all((cols.ts >= 0) & (cols.ts < MAX_TS)))
    for offset, raw in zip(offsets, records, strict=True):
        decoded = int(np.count_nonzero(cols.offset == offset))
        rejected = sum(r.samples for r in result.rejects if r.offset == offset)
        assert decoded + rejected == offered(raw), (raw[:300], result.rejects)

    dead = reject_records("metrics.raw", 0, result.rejects)
    assert len({key for key, _ in dead}) == len(dead)  # a keyed consumer keeps every one
    for _key, value in dead:
        assert len(value) <= MAX_RECORD_BYTES
        body = orjson.loads(value)
        assert schema_errors("deadletter", body) == [], body
        if body["index"] >= 0:
            covered = sum(last - first + 1 for first, last in body["indices"])
            assert covered == body["samples"] or body["indices_truncated"]


@FUZZ
@given(BATCHES, TIMES)
def test_any_batch_is_decoded_or_dead_lettered_exactly_once(records: list[bytes], t: int) -> None:
    check_batch(records, t)


@pytest.mark.slow
@LONG_FUZZ
@given(BATCHES, TIMES)
def test_any_batch_is_decoded_or_dead_lettered_exactly_once_long(
    records: list[bytes], t: int
) -> None:
    check_batch(records, t)


def test_the_fuzzer_reaches_every_shape() -> None:
    # A guard against a fuzzer that silently stopped producing some kind of input.
    kinds: set[str] = set()

    @settings(FUZZ, max_examples=100)
    @given(RECORDS)
    def classify(raw: bytes) -> None:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            kinds.add("unparsed")
            return
        if isinstance(doc, list):
            kinds.add("array")
        elif isinstance(doc, dict):
            kinds.add("columnar" if isinstance(doc.get("ts"), list) else "object")

    classify()
    assert {"unparsed", "array", "columnar", "object"} <= kinds
