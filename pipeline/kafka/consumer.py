"""One consumer-group member for consumers that work in batches: the sinks and the alert bridge.

`GroupConsumer` owns Kafka: it makes sure the topics exist, subscribes, follows assignments,
hands records to a `BatchHandler` and commits what the handler reports finished. The handler owns
the batch: it takes records (`add`), stores or sends them (`flush`) and forgets the records of
partitions taken away by a rebalance (`drop`). It never touches the consumer.

A flush that cannot happen now answers `RetryAfter`. The consumer then keeps the same batch,
pauses every assigned partition and keeps polling (heartbeats, rebalances) until the retry is
due, with capped exponential back-off between attempts; a long outage costs one batch of memory
and no records. Offsets are committed only after a flush answered `Done`, and only for
partitions still assigned, so every committed record is finished (stored, sent or
dead-lettered). A revoked partition's records leave the batch uncommitted: its next owner reads
them again, which is harmless because every handler's output is idempotent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from prometheus_client import Counter, Gauge

from pipeline.kafka.admin import TopicSpec, ensure_present
from pipeline.kafka.clients import Connection, consumer_config
from pipeline.kafka.commits import PartitionKey, commit, commit_lag
from pipeline.observability import Health
from pipeline.sinks.backoff import Backoff

#: How long one poll waits while paused: a stop or a due retry is noticed this fast.
_PAUSED_POLL_S = 0.2
_CONSUME_WAIT_S = 0.1


@dataclass(frozen=True, slots=True)
class Done:
    """The batch is finished: commit `offsets` (per partition, the next offset to read)."""

    offsets: Mapping[PartitionKey, int]


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """The batch cannot be flushed now; keep it and try again after `seconds` (None: after the
    consumer's own back-off, which grows with every failure in a row)."""

    seconds: float | None = None


class BatchHandler(Protocol):
    """What a `GroupConsumer` drives. Called from its thread only."""

    def room(self) -> int:
        """How many records `add` may take now (at least 1)."""
        ...

    def add(self, messages: list[Message]) -> None:
        """Records consumed in partition order, without consume errors."""
        ...

    def pending(self) -> bool:
        """Whether a batch waits to be flushed (and committed)."""
        ...

    def due(self) -> bool:
        """Whether to flush the batch now."""
        ...

    def flush(self) -> Done | RetryAfter: ...

    def drop(self, partitions: set[PartitionKey]) -> None:
        """Forget what the batch holds of these partitions: a rebalance took them away."""
        ...

    def tick(self) -> None:
        """Called once a loop while the handler is not waiting to retry (timers, producer poll)."""
        ...


class GroupSettings(Protocol):
    """The settings a group member reads (every consumer process's settings have them)."""

    group_id: str
    session_timeout_ms: int
    create_topics: bool
    topic_partitions: int

    def client_config(self) -> dict[str, str]: ...


class ConsumerMetrics(Protocol):
    """The gauges a group member keeps (each process names them in its own metric family)."""

    assigned: Gauge
    paused: Gauge
    commit_lag: Gauge


def prepare_topics(
    connection: Connection, topics: Sequence[str], partitions: int, create: bool
) -> dict[str, int]:
    """Check (or create, with `partitions`) the topics a process reads and writes; their
    partition counts. Inputs belong here too: a consumer often starts before the stage that
    writes its topic, and librdkafka would notice a topic created later only at its next
    metadata refresh (5 min)."""
    return ensure_present(connection, [TopicSpec(t, partitions) for t in topics], create)


def readable(messages: list[Message], log: Any) -> list[Message]:
    """The records among what `consume` returned. Consume errors are logged and left out;
    end-of-partition events silently (news, not trouble)."""
    records = [m for m in messages if m.error() is None]
    if len(records) != len(messages):
        for msg in messages:
            err = msg.error()
            if err is not None and err.code() != KafkaError._PARTITION_EOF:
                log.warning("consume error", error=str(err))
    return records


class GroupConsumer:
    """Subscribe to `topics` and drive `handler` until stopped (see the module docstring).

    `committed` receives every offset this process committed, by partition (kept after a
    partition is revoked: it says what this process did). `retries` counts flushes retried."""

    def __init__(
        self,
        settings: GroupSettings,
        topics: Sequence[str],
        handler: BatchHandler,
        *,
        outputs: Sequence[str] = (),
        metrics: ConsumerMetrics,
        backoff: Backoff,
        health: Health,
        committed: dict[PartitionKey, int] | None = None,
        retries: Counter | None = None,
        name: str = "consumer",
    ) -> None:
        self.settings = settings
        self.topics = list(topics)
        self.outputs = list(outputs)
        self.handler = handler
        self.metrics = metrics
        self.backoff = backoff
        self.health = health
        self.committed: dict[PartitionKey, int] = {} if committed is None else committed
        self.assigned: set[PartitionKey] = set()
        self._retries = retries
        self._retry_at: float | None = None  # set while the handler waits to flush again
        self._log = structlog.get_logger(name)

    @property
    def retrying(self) -> bool:
        return self._retry_at is not None

    # -- rebalance ------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)
        # librdkafka keeps a partition's pause flag across an eager revoke/assign: set it anew.
        if self._retry_at is not None:
            consumer.pause(partitions)  # the handler cannot flush: take no new work yet
        else:
            consumer.resume(partitions)
        self.assigned |= {(tp.topic, tp.partition) for tp in partitions}
        self.metrics.assigned.set(len(self.assigned))
        self.health.set_ready(True)
        self._log.info("assigned", partitions=sorted(self.assigned))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self.handler.drop(gone)
        self.assigned -= gone
        self.metrics.assigned.set(len(self.assigned))
        self._log.info("revoked", partitions=sorted(gone))

    # -- main loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume, flush and commit until `stop` is set; then one last flush of a batch that
        has not failed yet (a failing one is left uncommitted for the next owner)."""
        s = self.settings
        prepare_topics(
            s.client_config(), [*self.outputs, *self.topics], s.topic_partitions, s.create_topics
        )
        consumer = Consumer(consumer_config(s.client_config(), s.group_id, s.session_timeout_ms))
        consumer.subscribe(
            self.topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        self._log.info("subscribed", group=s.group_id, topics=self.topics)
        handler = self.handler
        try:
            while not stop.is_set():
                self.health.beat()
                if self._retry_at is not None:
                    self._wait_or_retry(consumer, self._retry_at - time.monotonic())
                    continue
                messages = consumer.consume(handler.room(), timeout=_CONSUME_WAIT_S)
                records = readable(messages, self._log)
                if records:
                    handler.add(records)
                if handler.due():
                    self._flush(consumer)
                if self._retry_at is None:
                    handler.tick()
            if handler.pending() and not (self._retry_at is None and self._flush(consumer)):
                self._log.warning("stopping with an unfinished batch; not committed")
        finally:
            consumer.close()

    def _wait_or_retry(self, consumer: Consumer, wait: float) -> None:
        if not self.handler.pending():  # a rebalance took every pending record away
            self._end_retries(consumer)
        elif wait > 0:
            self._poll_paused(consumer, min(wait, _PAUSED_POLL_S))
        else:
            if self._retries is not None:
                self._retries.inc()
            self._flush(consumer)

    def _poll_paused(self, consumer: Consumer, timeout: float) -> None:
        """Serve heartbeats and rebalances while paused. A record can still slip through (one
        fetched for a partition assigned a moment ago): rewind to it so it is read again."""
        msg = consumer.poll(timeout)
        if msg is not None and msg.error() is None:
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if topic is not None and partition is not None and offset is not None:
                consumer.seek(TopicPartition(topic, partition, offset))
                consumer.pause([TopicPartition(topic, partition)])

    # -- flushing and committing ----------------------------------------------------------------

    def _flush(self, consumer: Consumer) -> bool:
        """Flush the handler's batch; True once it is finished and committed."""
        outcome = self.handler.flush()
        if isinstance(outcome, RetryAfter):
            if self._retry_at is None:
                consumer.pause(consumer.assignment())
                self.metrics.paused.set(1)
            delay = self.backoff.next_delay() if outcome.seconds is None else outcome.seconds
            self._retry_at = time.monotonic() + delay
            self._log.info("batch kept for retry; consumption paused", retry_in=round(delay, 2))
            return False
        self._commit(consumer, outcome.offsets)
        if self._retry_at is not None:
            self._log.info("batch finished after retries; consuming again")
        self._end_retries(consumer)
        return True

    def _end_retries(self, consumer: Consumer) -> None:
        self.backoff.reset()
        if self._retry_at is not None:
            self._retry_at = None
            consumer.resume(consumer.assignment())
            self.metrics.paused.set(0)

    def _commit(self, consumer: Consumer, offsets: Mapping[PartitionKey, int]) -> None:
        todo = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in offsets.items()
            if (topic, partition) in self.assigned
            and self.committed.get((topic, partition)) != offset
        ]
        # A failed commit is only logged: its records are read again after a restart or a
        # rebalance, and handlers' outputs are idempotent.
        if commit(consumer, todo, self.committed):
            self.metrics.commit_lag.set(commit_lag(consumer, self.committed, self.assigned))
