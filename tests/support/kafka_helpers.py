"""Plain helpers for tests that talk to a real broker (no fixtures here; see conftest.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)

from pipeline.kafka.admin import high_watermarks
from pipeline.kafka.clients import producer_config


@dataclass(frozen=True)
class Record:
    """One consumed message, detached from librdkafka's ``Message``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int | None


def consumer_config(bootstrap: str, group: str, **overrides: Any) -> dict[str, Any]:
    """Consumer settings for tests.

    A 6 s session timeout because a new group's first join on Tansu waits about half of it
    (23 s with librdkafka's 45 s default); earliest reset so a test sees what it produced before
    subscribing; no auto-commit so tests commit deliberately. Use a fresh ``group`` per test: a
    consumer closed in the middle of a join can leave a Tansu group unjoinable.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        # Tansu holds an empty fetch for the full wait; a short one keeps tests snappy.
        "fetch.wait.max.ms": 50,
    }
    config.update(overrides)
    return config


def produce_all(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes | None]],
    *,
    timeout: float = 15.0,
    **overrides: Any,
) -> list[tuple[int, int]]:
    """Produce ``(key, value)`` pairs and wait for every delivery.

    Returns ``(partition, offset)`` per message, in input order. Raises ``AssertionError`` on a
    delivery error or if some message is still undelivered after ``timeout`` seconds.
    """
    # Java-compatible key partitioning, as the pipeline's own clients expect; a small linger.
    producer = Producer(
        producer_config(bootstrap, {"partitioner": "murmur2_random", "linger.ms": 5, **overrides})
    )
    results: list[tuple[int, int] | None] = []
    errors: list[str] = []

    def on_delivery(index: int) -> Callable[[KafkaError | None, Message], None]:
        def callback(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                errors.append(f"message {index}: {err}")
            else:
                partition, offset = msg.partition(), msg.offset()
                assert partition is not None and offset is not None
                results[index] = (partition, offset)

        return callback

    for index, (key, value) in enumerate(messages):
        results.append(None)
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery(index))
                break
            except BufferError:  # local queue full: let deliveries drain, then retry
                producer.poll(0.1)
    remaining = producer.flush(timeout)
    assert not errors, f"delivery failed: {errors[:5]}"
    assert remaining == 0, f"{remaining} messages undelivered after {timeout} s"
    delivered = [r for r in results if r is not None]
    assert len(delivered) == len(results), "some deliveries were not reported"
    return delivered


def read_all(bootstrap: str, topic: str, timeout: float = 15.0) -> list[Record]:
    """Read every message of ``topic`` up to its current end, in (partition, offset) order.

    The end of each partition is taken once, up front, from the fetch high watermarks (Tansu's
    ListOffsets "latest" is wrong), so messages produced meanwhile are not waited for. Raises
    ``AssertionError`` if the end is not reached within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    ends = high_watermarks(bootstrap, topic, timeout=timeout)
    pending = {partition for partition, end in ends.items() if end > 0}
    records: list[Record] = []
    if not pending:
        return records
    consumer = Consumer(
        consumer_config(
            bootstrap,
            f"read-all-{uuid.uuid4().hex[:12]}",  # assign-mode: never joined or committed
            **{"enable.partition.eof": True, "isolation.level": "read_uncommitted"},
        )
    )
    try:
        # Priming the metadata cache (all topics: naming one would auto-create it on Tansu) saves
        # the ~0.5 s a fresh consumer otherwise waits before its first fetch.
        consumer.list_topics(timeout=max(0.1, deadline - time.monotonic()))
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(pending)])
        while pending:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"read_all({topic!r}): partitions {sorted(pending)} not read"
            for message in consumer.consume(num_messages=10_000, timeout=min(0.2, remaining)):
                partition, offset = message.partition(), message.offset()
                if partition is None or offset is None or partition not in pending:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise AssertionError(f"read_all({topic!r})[{partition}]: {error}")
                    # EOF at the snapshot end also finishes a partition whose records were
                    # deleted by retention, which would otherwise never yield offset end-1.
                    if offset >= ends[partition]:
                        pending.discard(partition)
                    continue
                if offset >= ends[partition]:
                    pending.discard(partition)
                    continue
                records.append(_record(message))
                if offset == ends[partition] - 1:
                    pending.discard(partition)
    finally:
        consumer.close()
    records.sort(key=lambda r: (r.partition, r.offset))
    return records


def _record(message: Message) -> Record:
    _, timestamp = message.timestamp()
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    assert topic is not None and partition is not None and offset is not None
    return Record(
        topic=topic,
        partition=partition,
        offset=offset,
        key=message.key(),
        value=message.value(),
        headers=_headers(message),
        timestamp_ms=timestamp if timestamp > 0 else None,
    )


def _headers(message: Message) -> tuple[tuple[str, bytes | None], ...]:
    raw = message.headers() or ()
    pairs = raw.items() if isinstance(raw, dict) else raw
    return tuple((k, v.encode() if isinstance(v, str) else v) for k, v in pairs)


def by_partition(records: Iterable[Record]) -> Mapping[int, list[Record]]:
    """Group records by partition, keeping offset order."""
    grouped: dict[int, list[Record]] = {}
    for record in records:
        grouped.setdefault(record.partition, []).append(record)
    return grouped
