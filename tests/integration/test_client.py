"""The producer client on the real broker: exact records on the owning partitions, and rollups."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import orjson
import pytest

from pipeline.client import MetricsProducer
from pipeline.core.series import MetricKind, SeriesIdentity
from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.kafka.partitioner import owner_partition
from tests.support.kafka_helpers import read_all

from .harness import RESOLUTION_MS, rollups_by_window, wait_for, worker_settings, worker_thread

PARTITIONS = 4
SERVICES = ("checkout", "cart", "search")
REGIONS = ("eu-west-1", "us-east-1")


def record_workload(metrics: MetricsProducer, base_ms: int) -> list[dict[str, Any]]:
    """Timers, gauges and both kinds of counters for every (service, region), one sample per
    event-time second for a minute, recorded in one burst (a replay of history); returns what
    was recorded, as samples."""
    sent: list[dict[str, Any]] = []
    for i in range(60):
        ts = base_ms + i * 1_000
        for service in SERVICES:
            for region in REGIONS:
                common = {"service": service, "region": region, "ts": ts}
                route = f"/r{i % 2}"
                metrics.timer("http.server.duration", 5.0 + i % 7, unit="ms",
                              labels={"route": route}, **common)  # fmt: skip
                metrics.gauge("queue.depth", float(i % 5), **common)
                metrics.counter("http.requests", 1 + i % 3, **common)
                metrics.counter("bytes.sent", 1_000 * i, temporality="cumulative",
                                instance=f"{service}-1", **common)  # fmt: skip
                sent += [
                    {**common, "name": "http.server.duration", "type": "timer",
                     "value": 5.0 + i % 7, "labels": {"route": route}},
                    {**common, "name": "queue.depth", "type": "gauge", "value": float(i % 5)},
                    {**common, "name": "http.requests", "type": "counter", "value": 1 + i % 3},
                    {**common, "name": "bytes.sent", "type": "counter", "value": 1_000 * i,
                     "temporality": "cumulative", "instance": f"{service}-1"},
                ]  # fmt: skip
    return sent


def stream_of(sample: dict[str, Any]) -> tuple[Any, ...]:
    labels = tuple(sorted((sample.get("labels") or {}).items()))
    return (sample["service"], sample["region"], sample["name"], labels, sample.get("instance"))


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ["columnar", "array"])
def test_records_are_exact_and_on_the_owning_partition(
    kafka_bootstrap: str, unique_name: str, encoding: str
) -> None:
    topic = f"raw-{unique_name}"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, PARTITIONS)])
    before = int(time.time() * 1000)
    with MetricsProducer(kafka_bootstrap, topic=topic, encoding=encoding) as metrics:  # type: ignore[arg-type]
        sent = record_workload(metrics, before - 120_000)
        assert metrics.flush(timeout=30) == 0
    after = int(time.time() * 1000)
    stats = metrics.stats()
    assert stats.delivered == stats.accepted == len(sent) and stats.dropped == stats.failed == 0

    records = read_all(kafka_bootstrap, topic)
    assert len(records) == stats.records
    received: dict[tuple[Any, ...], list[tuple[int, float]]] = defaultdict(list)
    for record in records:
        assert record.key is not None and record.value is not None
        assert record.partition == owner_partition(record.key, PARTITIONS)  # no detour needed
        assert record.timestamp_ms is not None and before <= record.timestamp_ms <= after
        body = orjson.loads(record.value)
        if encoding == "columnar":
            assert max(body["ts"]) - min(body["ts"]) <= metrics.flush_span_ms
            points = list(zip(body.pop("ts"), body.pop("value"), strict=True))
            samples = [{**body, "ts": t, "value": v} for t, v in points]
        else:
            samples = body
        for item in samples:
            assert record.key == f"{item['service']}|{item['region']}".encode()
            received[stream_of(item)].append((item["ts"], item["value"]))
    expected: dict[tuple[Any, ...], list[tuple[int, float]]] = defaultdict(list)
    for item in sent:
        expected[stream_of(item)].append((item["ts"], item["value"]))
    # Kafka keeps order per partition; the client keeps order per series: every series arrives
    # complete and in recording order.
    assert received == expected


@pytest.mark.slow
def test_the_worker_rolls_up_what_the_client_sent(kafka_bootstrap: str, unique_name: str) -> None:
    settings = worker_settings(kafka_bootstrap, unique_name)
    ensure_topics(kafka_bootstrap, [TopicSpec(settings.input_topic, PARTITIONS)])
    now = int(time.time() * 1000)
    base = now - now % RESOLUTION_MS - 180_000
    with MetricsProducer(kafka_bootstrap, topic=settings.input_topic) as metrics:
        # A minute replayed in a burst: the client's span rule keeps every record within 2 s
        # of event time, so nothing is late for the worker.
        sent = record_workload(metrics, base)
        assert metrics.flush(timeout=30) == 0

    expected: dict[tuple[str, int], list[float]] = defaultdict(list)
    previous: dict[tuple[Any, ...], float] = {}
    for item in sent:
        kind = MetricKind.parse(item["type"], item.get("temporality"))
        assert kind is not None
        labels = tuple(sorted((item.get("labels") or {}).items()))
        unit = "ms" if item["type"] == "timer" else ""
        identity = SeriesIdentity(item["service"], item["region"], item["name"], kind, unit, labels)
        window = item["ts"] - item["ts"] % RESOLUTION_MS
        value = float(item["value"])
        if kind is MetricKind.COUNTER_CUMULATIVE:  # increase per instance; the first counts 0
            stream = stream_of(item)
            value, previous[stream] = value - previous.get(stream, value), value
        expected[(identity.key, window)].append(value)

    with worker_thread(settings):
        outputs = wait_for(settings, PARTITIONS, len(sent))
    assert outputs.deadletters == {}
    got = rollups_by_window(outputs)
    assert set(got) == set(expected)
    for key, values in expected.items():
        assert got[key]["count"] == len(values), key
        assert got[key]["sum"] == pytest.approx(sum(values)), key
