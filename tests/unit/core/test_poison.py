"""Poison pills: records that once crashed or stalled the worker's decode and dead-letter path.

Each test runs the record through the Decoder and builds its dead-letter records, as the worker
does, and asserts that nothing escapes, every sample is accounted for, and the records are valid.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from pipeline.core.decode import DecodeLimits, Decoder, DecodeResult, Reject
from pipeline.core.reasons import Reason
from pipeline.core.series import SeriesTable
from pipeline.core.validate import SampleValidator
from pipeline.kafka.deadletter import reject_records
from tests.support.schemas import schema_errors

from .helpers import BASE_MS

HOUR = 3_600_000
# A dead-letter record never exceeds this (docs/contracts.md).
MAX_DEADLETTER_BYTES = 8192
# orjson reads up to 1024 levels of nesting; the stdlib parser behind it fewer.
PARSER_MAX_DEPTH = 1024
GOOD: dict[str, Any] = {
    "service": "checkout",
    "region": "eu-west-1",
    "name": "http.server.duration",
    "type": "timer",
    "value": 12.5,
    "ts": BASE_MS,
}


def decode_and_deadletter(
    values: list[bytes | None], limits: DecodeLimits | None = None
) -> tuple[DecodeResult, list[dict[str, Any]]]:
    result = Decoder(SeriesTable(), limits).decode_lists(
        values, list(range(len(values))), [BASE_MS] * len(values)
    )
    bodies = []
    for _key, value in reject_records("metrics.raw", 0, result.rejects):
        assert len(value) <= MAX_DEADLETTER_BYTES
        body = orjson.loads(value)
        assert schema_errors("deadletter", body) == [], body
        bodies.append(body)
    return result, bodies


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def with_junk(sample: dict[str, Any], junk: bytes) -> bytes:
    """`sample` as JSON with an unknown field holding `junk` (raw JSON text)."""
    return orjson.dumps(sample)[:-1] + b',"junk":' + junk + b"}"


# -- deep nesting ---------------------------------------------------------------------------------


def test_deeply_nested_unknown_field_in_a_bad_array_element_is_dead_lettered() -> None:
    # The reported poison pill: a ~2.2 kB array whose bad element holds 1,000 levels of nesting.
    # Dumping that element for the excerpt raised RecursionError out of the decoder, on every
    # replay of the record.
    bad = with_junk({**GOOD, "value": "x"}, nested(1000))
    batch = b"[" + orjson.dumps(GOOD) + b"," + bad + b"]"
    assert 2000 < len(batch) < 2300
    result, bodies = decode_and_deadletter([batch])
    assert result.columns.index.tolist() == [0]
    assert [(b["reason"], b["index"], b["samples"]) for b in bodies] == [("wrong_type", 1, 1)]


@pytest.mark.parametrize("depth", [254, 256, 1000, 5000, 100_000, 500_000])
@pytest.mark.parametrize("shape", ["single", "array_element", "columnar", "label_value"])
def test_any_nesting_depth_is_dead_lettered_or_decoded(shape: str, depth: int) -> None:
    junk = nested(depth)
    if shape == "single":
        record = with_junk({**GOOD, "value": None}, junk)
        offered = 1
    elif shape == "array_element":
        record = b"[" + orjson.dumps(GOOD) + b"," + with_junk({**GOOD, "ts": "x"}, junk) + b"]"
        offered = 2
    elif shape == "columnar":
        record = with_junk({**GOOD, "ts": [BASE_MS, BASE_MS + 1], "value": [1, "x"]}, junk)
        offered = 2
    else:
        record = orjson.dumps({**GOOD, "labels": {"a": "b"}})[:-2] + b',"b":' + junk + b"}}"
        offered = 1
    result, bodies = decode_and_deadletter([orjson.dumps(GOOD), record, orjson.dumps(GOOD)])
    assert result.columns.offset.tolist().count(0) == 1
    assert result.columns.offset.tolist().count(2) == 1
    assert bodies and {b["offset"] for b in bodies} == {1}
    if depth > PARSER_MAX_DEPTH:  # cannot be read as samples at all: one malformed record
        assert [(b["reason"], b["index"], b["samples"]) for b in bodies] == [
            ("malformed_json", -1, 1)
        ]
        return
    decoded_here = result.columns.offset.tolist().count(1)
    assert decoded_here + sum(b["samples"] for b in bodies) == offered


def test_an_unexpected_exception_dead_letters_only_its_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fake fault: no real input is known to raise inside the validator any more, so a defect
    # of ours is simulated by making series identity raise for one service name.
    real: Callable[..., Any] = SampleValidator.identity

    def flaky(self: SampleValidator, service: Any, *args: Any) -> Any:
        if service == "boom":
            raise RuntimeError("simulated defect")
        return real(self, service, *args)

    monkeypatch.setattr(SampleValidator, "identity", flaky)
    values: list[bytes | None] = [
        orjson.dumps(GOOD),
        orjson.dumps({**GOOD, "service": "boom"}),
        orjson.dumps([GOOD, {**GOOD, "service": "boom"}]),
        orjson.dumps({**GOOD, "service": "boom", "ts": [BASE_MS], "value": [1.0]}),
        orjson.dumps({**GOOD, "ts": BASE_MS + 1}),
    ]
    result, bodies = decode_and_deadletter(values)
    assert result.columns.offset.tolist() == [0, 4]
    got = [(b["offset"], b["reason"], b["samples"]) for b in bodies]
    assert got == [(1, "undecodable", 1), (2, "undecodable", 2), (3, "undecodable", 1)]
    assert "simulated defect" in bodies[0]["error"]


# -- cost of per-point rejects ----------------------------------------------------------------


def too_old_columnar(points: int) -> bytes:
    old = BASE_MS - 7 * HOUR
    return orjson.dumps({**GOOD, "ts": [old + i for i in range(points)], "value": [1.5] * points})


def cpu_seconds(record: bytes) -> float:
    """Least CPU time of three runs of decode + dead-letter building for one record."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        result, _ = decode_and_deadletter([record])
        best = min(best, time.process_time() - start)
        assert len(result.columns) == 0
    return best


def test_cost_of_rejected_points_is_linear_in_their_number() -> None:
    # Every rejected point re-parsed the whole record for its excerpt: quadratic (x64 for x8).
    small, large = too_old_columnar(1000), too_old_columnar(8000)
    cpu_seconds(small)  # warm-up
    ratio = cpu_seconds(large) / max(cpu_seconds(small), 1e-4)
    assert ratio < 16, ratio


def test_50k_too_old_points_are_one_dead_letter_counting_them_all() -> None:
    record = too_old_columnar(50_000)
    assert len(record) < DecodeLimits().max_message_bytes
    result, bodies = decode_and_deadletter([record])
    assert len(result.columns) == 0
    (body,) = bodies
    assert (body["reason"], body["index"], body["samples"]) == ("ts_too_old", 0, 50_000)
    assert body["indices"] == [[0, 49_999]]
    assert orjson.loads(body["excerpt"])["ts"] == BASE_MS - 7 * HOUR


def test_point_rejects_of_one_record_group_by_reason_with_their_indices() -> None:
    old, future = BASE_MS - 7 * HOUR, BASE_MS + HOUR
    ts = [old, BASE_MS, old, old, future, BASE_MS, old, future]
    record = orjson.dumps({**GOOD, "ts": ts, "value": [1.0] * len(ts)})
    result, bodies = decode_and_deadletter([record])
    assert result.columns.index.tolist() == [1, 5]
    got = [(b["reason"], b["index"], b["samples"], b["indices"]) for b in bodies]
    assert got == [
        ("ts_too_old", 0, 4, [[0, 0], [2, 3], [6, 6]]),
        ("ts_in_future", 4, 2, [[4, 4], [7, 7]]),
    ]


def test_bad_elements_of_an_array_group_by_reason() -> None:
    batch = [GOOD, {**GOOD, "value": "x"}, {**GOOD, "value": [1]}, GOOD, {**GOOD, "ts": None}]
    result, bodies = decode_and_deadletter([orjson.dumps(batch)])
    assert result.columns.index.tolist() == [0, 3]
    got = [(b["reason"], b["index"], b["samples"], b["indices"]) for b in bodies]
    assert got == [("wrong_type", 1, 3, [[1, 2], [4, 4]])]


def test_array_of_many_bad_elements_costs_linear_time() -> None:
    def batch(n: int) -> bytes:
        return orjson.dumps([{**GOOD, "service": f"s{i}", "value": "x"} for i in range(n)])

    small, large = batch(500), batch(4000)
    cpu_seconds(small)
    ratio = cpu_seconds(large) / max(cpu_seconds(small), 1e-4)
    assert ratio < 16, ratio


def test_indices_of_an_alternating_pattern_are_bounded() -> None:
    points = 20_000
    ts = [BASE_MS - 7 * HOUR if i % 2 else BASE_MS for i in range(points)]
    record = orjson.dumps({**GOOD, "ts": ts, "value": [1.0] * points})
    result, bodies = decode_and_deadletter([record])
    assert len(result.columns) == points // 2
    (body,) = bodies
    assert body["samples"] == points // 2
    assert body["indices_truncated"] is True
    assert body["indices"][:2] == [[1, 1], [3, 3]]


def test_worst_case_dead_letter_stays_within_its_size_bound() -> None:
    # Control characters take 6 bytes as JSON escapes, lone surrogates in an error text 7.
    worst = Reject(
        2**62,
        3,
        Reason.UNDECODABLE,
        "\ud800" * 2000,
        b"\x01" * 5000,
        10**6,
        [(i, i) for i in range(3, 100_000, 2)],
    )
    ((_key, value),) = reject_records("t" * 249, 2**30, [worst], stage="worker")
    assert len(value) <= MAX_DEADLETTER_BYTES
    body = orjson.loads(value)
    assert schema_errors("deadletter", body) == []
    assert body["indices_truncated"] is True and len(body["indices"]) == 64
