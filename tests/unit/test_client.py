"""The producer client without a broker: encodings, batching, keys, validation, buffer bound.

Records are checked against the JSON Schemas and decoded by the worker's own `Decoder`, so
"valid" means what the worker accepts. Where Kafka must be absent, the client talks to a closed
loopback port: a real librdkafka that cannot connect, not a fake.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from pipeline.client import (
    BufferFullError,
    ClientClosedError,
    InvalidSampleError,
    MetricsProducer,
)
from pipeline.client.batches import Record, make_batcher
from pipeline.client.producer import kafka_config
from pipeline.client.validation import SampleChecker
from pipeline.core.decode import Decoder, RawMessage
from pipeline.core.series import SeriesTable
from tests.support.samples import timer_sample

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
NOW = 1_796_000_000_000
QUIET = {"log_level": 0}  # librdkafka: no "connection refused" lines on stderr


@cache
def validator(name: str) -> Draft202012Validator:
    docs = [json.loads(p.read_text()) for p in sorted(SCHEMAS.glob("*.schema.json"))]
    registry: Registry[Any] = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in docs
    )
    schema = next(d for d in docs if d["$id"].endswith(f"/{name}.schema.json"))
    return Draft202012Validator(schema, registry=registry)


def closed_port() -> str:
    """A loopback address nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def sample(**changes: Any) -> dict[str, Any]:
    return timer_sample(**{"ts": NOW, **changes})


def build(samples: list[dict[str, Any]], encoding: str, **limits: int) -> list[Record]:
    checker = SampleChecker()
    batcher = make_batcher(
        encoding,  # type: ignore[arg-type]
        limits.get("max_samples", 1000),
        limits.get("max_bytes", 1_000_000),
    )
    for item in samples:
        batcher.add(checker.check(item, NOW))
    return batcher.drain()


def decode(records: list[Record]) -> tuple[SeriesTable, Any]:
    """The records through the worker's decoder: (its series table, the decoded columns)."""
    table = SeriesTable()
    result = Decoder(table).decode(
        [RawMessage(r.value, offset, NOW) for offset, r in enumerate(records)]
    )
    assert result.rejects == []
    return table, result.columns


def mixed_samples() -> list[dict[str, Any]]:
    out = []
    for i in range(30):
        out.append(sample(value=float(i), ts=NOW - 1000 + i, labels={"route": f"/r{i % 3}"}))
        out.append(sample(name="http.requests", type="counter", unit=None, value=i, ts=NOW + i))
        out.append(sample(service="cart", name="queue.depth", type="gauge", unit="1", value=i / 3))
    out.append(
        sample(
            name="bytes.sent",
            type="counter",
            temporality="cumulative",
            instance="host-1",
            unit="By",
            value=10**6,
        )
    )
    return out


def per_stream(samples: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """(ts, value) of each series in recording order, keyed by the series' identity fields."""
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for item in samples:
        identity = {k: v for k, v in item.items() if k not in ("ts", "value")}
        identity.setdefault("temporality", "delta" if item["type"] == "counter" else None)
        out[orjson.dumps(identity, option=orjson.OPT_SORT_KEYS).decode()].append(
            (item["ts"], float(item["value"]))
        )
    return out


def per_stream_decoded(table: SeriesTable, columns: Any) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for sid, ts, value, inst in zip(
        columns.series.tolist(),
        columns.ts.tolist(),
        columns.value.tolist(),
        columns.instance.tolist(),
        strict=True,
    ):
        identity = table.identities[sid]
        fields: dict[str, Any] = {
            "service": identity.service,
            "region": identity.region,
            "name": identity.name,
            "type": identity.kind.type_name,
            "temporality": identity.kind.temporality,
        }
        if identity.unit:
            fields["unit"] = identity.unit
        if identity.labels:
            fields["labels"] = dict(identity.labels)
        if inst >= 0:
            fields["instance"] = table.instance_names[inst]
        out[orjson.dumps(fields, option=orjson.OPT_SORT_KEYS).decode()].append((ts, value))
    return out


# -- encodings ------------------------------------------------------------------------------


def test_columnar_is_one_record_per_series_and_decodes_to_the_exact_samples() -> None:
    samples = mixed_samples()
    records = build(samples, "columnar")
    # 3 timer label variants + 1 delta counter + 1 gauge + 1 cumulative counter
    assert len(records) == 6
    for record in records:
        body = orjson.loads(record.value)
        validator("batch-columnar").validate(body)
        assert record.key == f"{body['service']}|{body['region']}".encode()
        assert record.samples == len(body["ts"]) == len(body["value"])
        if body["type"] == "counter":  # integers stay integers on the wire
            assert all(type(v) is int for v in body["value"])
    table, columns = decode(records)
    assert per_stream_decoded(table, columns) == per_stream(samples)


def test_array_is_one_record_per_key_in_call_order() -> None:
    samples = mixed_samples()
    records = build(samples, "array")
    assert [r.key for r in records] == [b"checkout|eu-west-1", b"cart|eu-west-1"]
    for record in records:
        body = orjson.loads(record.value)
        validator("batch-array").validate(body)
        assert {f"{s['service']}|{s['region']}".encode() for s in body} == {record.key}
    first = orjson.loads(records[0].value)
    expected = [s for s in samples if s["service"] == "checkout"]
    assert [(s["name"], s["ts"], s["value"]) for s in first] == [
        (s["name"], s["ts"], s["value"]) for s in expected
    ]
    table, columns = decode(records)
    assert per_stream_decoded(table, columns) == per_stream(samples)


@pytest.mark.parametrize("encoding", ["columnar", "array"])
def test_records_are_capped_by_samples_and_by_bytes(encoding: str) -> None:
    samples = [sample(value=float(i), ts=NOW + i) for i in range(2_500)]
    records = build(samples, encoding, max_samples=1_000)
    assert [r.samples for r in records] == [1_000, 1_000, 500]
    small = build(samples, encoding, max_samples=1_000, max_bytes=4_096)
    assert all(len(r.value) <= 4_096 for r in small)
    assert sum(r.samples for r in small) == 2_500
    _, columns = decode(small)
    assert columns.ts.tolist() == [s["ts"] for s in samples]  # order survives the splits
    assert columns.value.tolist() == [s["value"] for s in samples]


# -- validation: the client refuses what the worker would dead-letter, for the same reason ----

BAD = {
    "invalid_identifier": sample(name="http server"),
    "invalid_label": sample(labels={"bad-name": "x"}),
    "too_many_labels": sample(labels={f"l{i}": "x" for i in range(17)}),
    "unknown_metric_type": sample(type="histogram"),
    "wrong_type": sample(value=True),
    "value_out_of_range": sample(value=1e295),  # finite, but sums of such values would not be
    "negative_delta_counter": sample(type="counter", unit=None, value=-1),
    "missing_instance": sample(type="counter", temporality="cumulative", unit=None),
    "ts_too_old": sample(ts=NOW - 7 * 3_600_000),
    "ts_in_future": sample(ts=NOW + 11 * 60_000),
    "missing_field": sample(region=None),
}


@pytest.mark.parametrize("reason", sorted(BAD))
def test_validation_matches_the_worker(reason: str) -> None:
    item = BAD[reason]
    with pytest.raises(InvalidSampleError) as caught:
        SampleChecker().check(dict(item), NOW)
    assert caught.value.reason == reason
    # The worker, given the same sample as a message stamped NOW, dead-letters it likewise.
    result = Decoder(SeriesTable()).decode([RawMessage(orjson.dumps(item), 0, NOW)])
    assert [r.reason for r in result.rejects] == [reason]


def test_typed_calls_validate_and_fill_defaults() -> None:
    with MetricsProducer(
        closed_port(),
        service="checkout",
        region="eu-west-1",
        instance="host-1",
        labels={"env": "prod"},
        flush_interval=None,
        config=QUIET,
        clock=lambda: NOW,
    ) as metrics:
        metrics.timer("db.query.duration", np.float64(3.5), unit="ms", labels={"op": "get"})
        metrics.counter("jobs.done", np.int64(2), temporality="cumulative")
        metrics.record({"name": "queue.depth", "type": "gauge", "value": 7, "region": "us-east-1"})
        with pytest.raises(InvalidSampleError, match="unknown_field"):
            metrics.record({"name": "x", "type": "gauge", "value": 1, "colour": "red"})
        with pytest.raises(InvalidSampleError) as caught:
            metrics.gauge("cpu", 1.0, labels={"9lives": "x"})
        assert caught.value.reason == "invalid_label"
        records = metrics._batcher.drain()  # what the next flush would send
    bodies = [orjson.loads(r.value) for r in records]
    assert [(r.key, b["name"]) for r, b in zip(records, bodies, strict=True)] == [
        (b"checkout|eu-west-1", "db.query.duration"),
        (b"checkout|eu-west-1", "jobs.done"),
        (b"checkout|us-east-1", "queue.depth"),
    ]
    assert bodies[0]["labels"] == {"env": "prod", "op": "get"}
    assert bodies[0]["instance"] == "host-1" and bodies[0]["ts"] == [NOW]
    assert bodies[1]["temporality"] == "cumulative" and bodies[1]["value"] == [2]
    assert bodies[2]["labels"] == {"env": "prod"} and bodies[2]["value"] == [7]
    with pytest.raises(ClientClosedError):
        metrics.timer("late", 1.0)


def test_kafka_settings_partition_like_java_and_allow_overrides() -> None:
    conf = kafka_config("k:9092", {"partitioner": "consistent_random", "sasl.mechanism": "PLAIN"})
    assert conf["sasl.mechanism"] == "PLAIN" and conf["partitioner"] == "consistent_random"
    assert kafka_config("k:9092", None)["partitioner"] == "murmur2_random"


# -- Kafka unreachable: bounded buffer, drop or raise, delivery failures counted --------------


def test_full_buffer_drops_and_counts_by_default() -> None:
    # librdkafka may queue two records; everything else must wait in (and fill) our buffer.
    config = {**QUIET, "queue.buffering.max.messages": 2}
    metrics = MetricsProducer(
        closed_port(), service="s", region="r", flush_interval=None, config=config,
        max_buffered_samples=10,
    )  # fmt: skip
    for i in range(15):
        metrics.gauge(f"g{i % 4}", float(i))
    stats = metrics.stats()
    assert (stats.accepted, stats.dropped, stats.buffered) == (10, 5, 10)
    # 4 records built (g0, g1: 3 samples; g2, g3: 2); librdkafka takes the first two.
    assert metrics.flush(timeout=0.2) == 10
    stats = metrics.stats()
    assert (stats.records, stats.in_flight, stats.buffered, stats.delivered) == (2, 6, 4, 0)
    for _ in range(7):  # room for 6 more: the records librdkafka refused still count
        metrics.gauge("g0", 1.0)
    stats = metrics.stats()
    assert (stats.accepted, stats.dropped, stats.buffered) == (16, 6, 10)
    metrics.close(timeout=0.1)
    with pytest.raises(ClientClosedError):
        metrics.gauge("g0", 1.0)


def test_full_buffer_raises_when_asked() -> None:
    metrics = MetricsProducer(
        closed_port(), service="s", region="r", flush_interval=None, config=QUIET,
        max_buffered_samples=3, on_full="raise",
    )  # fmt: skip
    for _ in range(3):
        metrics.timer("t", 1.0)
    with pytest.raises(BufferFullError, match="max_buffered_samples"):
        metrics.timer("t", 1.0)
    assert metrics.stats().dropped == 0
    metrics.close(timeout=0.1)


def test_undeliverable_records_are_counted_as_failed() -> None:
    metrics = MetricsProducer(
        closed_port(), service="s", region="r", flush_interval=None,
        config={**QUIET, "message.timeout.ms": 300},
    )  # fmt: skip
    for i in range(7):
        metrics.counter("c", i, labels={"k": str(i % 2)})
    assert metrics.flush(timeout=10) == 0
    stats = metrics.stats()
    assert (stats.failed, stats.delivered, stats.records) == (7, 0, 2)
    assert metrics.last_error is not None
    metrics.close(timeout=0.1)


def test_background_thread_flushes_without_being_asked() -> None:
    metrics = MetricsProducer(
        closed_port(), service="s", region="r", flush_interval=0.05,
        config={**QUIET, "message.timeout.ms": 200},
    )  # fmt: skip
    metrics.timer("t", 1.0)
    done = threading.Event()
    for _ in range(200):  # up to ~10 s; normally one interval plus the timeout
        if metrics.stats().failed == 1:
            done.set()
            break
        done.wait(0.05)
    assert done.is_set(), metrics.stats()
    metrics.close(timeout=0.1)


def test_a_replay_of_history_is_flushed_every_flush_span() -> None:
    metrics = MetricsProducer(
        closed_port(), service="s", region="r", flush_interval=None, config=QUIET,
        flush_span_ms=2_000, clock=lambda: NOW,
    )  # fmt: skip
    for second in range(10):
        metrics.gauge("g", float(second), ts=NOW - 60_000 + second * 1_000)
    # ts 0,1,2 s | 3,4,5 | 6,7,8 went out as the span passed 2 s; 9 waits for a flush.
    assert (metrics.stats().records, metrics.stats().buffered) == (3, 1)
    metrics.close(timeout=0.1)


def test_concurrent_callers_keep_every_sample_in_order() -> None:
    metrics = MetricsProducer(
        closed_port(), service="s", region="r", flush_interval=None, config=QUIET,
        max_buffered_samples=100_000, clock=lambda: NOW,
    )  # fmt: skip
    threads = 4
    per_thread = 2_000

    def work(n: int) -> None:
        for i in range(per_thread):
            metrics.timer(f"t{n}", float(i), ts=NOW + i, labels={"thread": str(n)})

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    records = metrics._batcher.drain()
    metrics.close(timeout=0.1)
    assert metrics.stats().accepted == threads * per_thread
    values: dict[str, list[float]] = defaultdict(list)
    for record in records:
        body = orjson.loads(record.value)
        values[body["name"]].extend(body["value"])
    assert values == {f"t{n}": [float(i) for i in range(per_thread)] for n in range(threads)}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_are_refused_at_the_call_site(value: float) -> None:
    # JSON cannot carry them, so the worker never sees one: the client says why instead.
    with pytest.raises(InvalidSampleError) as caught:
        SampleChecker().check(dict(sample(value=value)), NOW)
    assert caught.value.reason == "non_finite_value"
