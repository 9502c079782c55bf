"""The consumer shell on the real broker with a plain batch handler: a flush that cannot happen
keeps the batch, pauses consumption and is retried; only finished batches are committed."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from confluent_kafka import Message
from prometheus_client import CollectorRegistry, Counter, Gauge

from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.kafka.consumer import Done, GroupConsumer, RetryAfter
from pipeline.observability import Health
from pipeline.sinks.backoff import Backoff
from tests.support.kafka_helpers import produce_all

from .harness import stage_thread

PARTITIONS = 2
BATCH = 10


@dataclass
class Settings:
    bootstrap: str
    group_id: str
    session_timeout_ms: int = 6000
    create_topics: bool = False
    topic_partitions: int = PARTITIONS

    def client_config(self) -> dict[str, str]:
        return {"bootstrap.servers": self.bootstrap}


class Metrics:
    def __init__(self) -> None:
        r = CollectorRegistry()
        self.assigned = Gauge("assigned", "", registry=r)
        self.paused = Gauge("paused", "", registry=r)
        self.commit_lag = Gauge("commit_lag", "", registry=r)
        self.retries = Counter("retries", "", registry=r)


class Collector:
    """Keeps what it flushed; its first `failures` flushes cannot happen."""

    def __init__(self, topic: str, failures: int) -> None:
        self.topic = topic
        self.failures = failures
        self.batch: list[tuple[int, int, bytes]] = []  # (partition, offset, value)
        self.flushed: list[tuple[int, int, bytes]] = []
        self.failing = False
        self.added_while_failing = 0
        self.largest_batch = 0
        self.committed: dict[tuple[str, int], int] = {}  # the consumer's record of its commits
        self.committed_while_failing: list[dict[tuple[str, int], int]] = []

    def room(self) -> int:
        return max(1, BATCH - len(self.batch))

    def add(self, messages: list[Message]) -> None:
        if self.failing:
            self.added_while_failing += len(messages)
        for m in messages:
            self.batch.append((m.partition() or 0, m.offset() or 0, m.value() or b""))
        self.largest_batch = max(self.largest_batch, len(self.batch))

    def pending(self) -> bool:
        return bool(self.batch)

    def due(self) -> bool:
        return len(self.batch) >= BATCH

    def flush(self) -> Done | RetryAfter:
        if self.failures:
            self.failures -= 1
            self.failing = True
            self.committed_while_failing.append(dict(self.committed))
            # Alternately a delay of its own and none (the consumer's back-off decides).
            return RetryAfter(0.05 if self.failures % 2 else None)
        self.failing = False
        ends = {(self.topic, partition): offset + 1 for partition, offset, _ in self.batch}
        self.flushed += self.batch
        self.batch = []
        return Done(ends)

    def drop(self, partitions: set[tuple[str, int]]) -> None:
        gone = {p for t, p in partitions if t == self.topic}
        self.batch = [r for r in self.batch if r[0] not in gone]

    def tick(self) -> None:
        return None


@pytest.mark.slow
def test_a_failing_flush_pauses_and_commits_only_finished_batches(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = f"in-{unique_name}"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, PARTITIONS)])
    sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(5 * BATCH)]
    where = produce_all(kafka_bootstrap, topic, sent)
    ends = {(topic, p): max(o for q, o in where if q == p) + 1 for p in range(PARTITIONS)}
    handler = Collector(topic, failures=3)
    metrics = Metrics()
    committed = handler.committed
    group = GroupConsumer(
        Settings(kafka_bootstrap, f"group-{unique_name}"),
        [topic],
        handler,
        metrics=metrics,
        backoff=Backoff(0.05, 0.2),
        health=Health(),
        committed=committed,
        retries=metrics.retries,
        name="test",
    )
    with stage_thread(group):
        deadline = time.monotonic() + 60
        while committed != ends:
            assert time.monotonic() < deadline, f"committed {committed}, want {ends}"
            time.sleep(0.1)
        assert not group.retrying

    # Every record flushed once, in partition order; none taken while the flush was failing.
    assert sorted(handler.flushed) == sorted(
        (p, o, v) for (p, o), (_, v) in zip(where, sent, strict=True)
    )
    for p in range(PARTITIONS):
        offsets = [o for q, o, _ in handler.flushed if q == p]
        assert offsets == sorted(offsets)
    assert handler.added_while_failing == 0
    # The first batch is the failing one: nothing was committed before it was finished.
    assert handler.committed_while_failing == [{}, {}, {}]
    assert handler.largest_batch <= BATCH
    assert metrics.retries._value.get() == 3
    assert metrics.paused._value.get() == 0
    assert metrics.commit_lag._value.get() == 0
