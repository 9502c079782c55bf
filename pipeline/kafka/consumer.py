"""One consumer-group member: the one consume/assign/commit loop of every process.

`GroupConsumer` owns Kafka: it makes sure the topics exist, subscribes, follows assignments,
hands records to its handler and commits what the handler reports finished. Two kinds of
handler (kafka/handlers.py) share that loop:

- a `BatchHandler` (sinks, the alert bridge) owns a batch: it takes records (`add`), stores or
  sends them (`flush`) and forgets the records of partitions taken away by a rebalance (`drop`).
  A flush that cannot happen now answers `RetryAfter`. The consumer then keeps the same batch,
  pauses every assigned partition and keeps polling (heartbeats, rebalances) until the retry is
  due, with capped exponential back-off between attempts; a long outage costs one batch of
  memory and no records. Offsets are committed only after a flush answered `Done`, and only for
  partitions still assigned, so every committed record is finished (stored, sent or
  dead-lettered). A revoked partition's records leave the batch uncommitted: its next owner
  reads them again, which is harmless because every handler's output is idempotent.
- a `PartitionHandler` (the windowed stages, kafka/stage.py) owns replayable state per input
  partition: on assignment it restores each partition from its checkpoint and says where to
  start reading (a side topic's partitions included); every `commit_interval` it writes
  checkpoints after the outputs they cover are acknowledged, and the consumer commits the
  offsets they resume from. A revoked partition gets a last checkpoint and commit first; a lost
  one is dropped at once (someone else may own it already). After an error nothing more is
  committed: the next owner replays from the last good checkpoint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from confluent_kafka import Consumer, Message, TopicPartition
from prometheus_client import Counter

from pipeline.kafka.clients import KafkaStatus, consumer_config
from pipeline.kafka.commits import PartitionKey, commit, commit_lag
from pipeline.kafka.group_io import (
    broker_end,
    by_partition,
    committed_lookup,
    prepare_topics,
    readable,
)
from pipeline.kafka.handlers import (
    BatchHandler,
    ConsumerMetrics,
    Done,
    GroupSettings,
    PartitionHandler,
    RetryAfter,
)
from pipeline.observability import Health
from pipeline.sinks.backoff import Backoff

__all__ = [
    "BatchHandler",
    "ConsumerMetrics",
    "Done",
    "GroupConsumer",
    "GroupSettings",
    "PartitionHandler",
    "RetryAfter",
    "broker_end",
    "prepare_topics",
    "readable",
]

#: How long one poll waits while paused: a stop or a due retry is noticed this fast.
_PAUSED_POLL_S = 0.2
_CONSUME_WAIT_S = 0.1


class GroupConsumer:
    """Subscribe to `topics` and drive `handler` until stopped (see the module docstring).

    `committed` receives every offset this process committed, by partition (kept after a
    partition is revoked: it says what this process did). `retries` counts flushes retried.
    A batch consumer needs `metrics` and `backoff`; see `for_partitions` for the other kind."""

    def __init__(
        self,
        settings: GroupSettings,
        topics: Sequence[str],
        handler: BatchHandler | None,
        *,
        outputs: Sequence[str] = (),
        metrics: ConsumerMetrics | None = None,
        backoff: Backoff | None = None,
        health: Health,
        committed: dict[PartitionKey, int] | None = None,
        retries: Counter | None = None,
        name: str = "consumer",
        partitions: PartitionHandler | None = None,
        group_id: str | None = None,
        commit_every: float = 0.0,
        status: KafkaStatus | None = None,
        consumer_extra: Mapping[str, Any] | None = None,
    ) -> None:
        if (handler is None) == (partitions is None):
            raise ValueError("a GroupConsumer drives one handler: a batch or a partition one")
        self.settings = settings
        self.topics = list(topics)
        self.outputs = list(outputs)
        self.handler = handler
        self.partitions = partitions
        self.metrics = metrics
        self.backoff = backoff
        self.health = health
        self.group_id = settings.group_id if group_id is None else group_id
        self.committed: dict[PartitionKey, int] = {} if committed is None else committed
        self.assigned: set[PartitionKey] = set()
        self._retries = retries
        self._retry_at: float | None = None  # set while the handler waits to flush again
        self._commit_every = commit_every
        self._next_commit = 0.0
        self._status = status
        self._consumer_extra = dict(consumer_extra or {})
        self._failed = False  # set when run() dies: from then on nothing is committed
        self._log = structlog.get_logger(name)

    @classmethod
    def for_partitions(
        cls,
        settings: GroupSettings,
        topics: Sequence[str],
        handler: PartitionHandler,
        *,
        group_id: str,
        commit_every: float,
        health: Health,
        status: KafkaStatus | None = None,
        consumer_extra: Mapping[str, Any] | None = None,
        name: str = "consumer",
    ) -> GroupConsumer:
        """A member driving a `PartitionHandler`: its topics already checked by the handler,
        checkpoints and commits every `commit_every` seconds; `status` follows Kafka's
        reachability from the consumer's errors and fetches."""
        return cls(
            settings,
            topics,
            None,
            partitions=handler,
            group_id=group_id,
            commit_every=commit_every,
            health=health,
            status=status,
            consumer_extra=consumer_extra,
            name=name,
        )

    @property
    def retrying(self) -> bool:
        return self._retry_at is not None

    @property
    def failed(self) -> bool:
        """run() stopped on an error (nothing was committed after it)."""
        return self._failed

    # -- rebalance ------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.partitions is not None:
            given = {(tp.topic, tp.partition): tp for tp in partitions}
            starts = self.partitions.assign(list(given), committed_lookup(consumer))
            partitions = []
            for key, offset in starts:
                tp = given[key]
                if offset is not None:
                    tp.offset = offset
                partitions.append(tp)
        consumer.assign(partitions)
        # librdkafka keeps a partition's pause flag across an eager revoke/assign: set it anew.
        if self._retry_at is not None:
            consumer.pause(partitions)  # the handler cannot flush: take no new work yet
        else:
            consumer.resume(partitions)
        self.assigned |= {(tp.topic, tp.partition) for tp in partitions}
        if self.metrics is not None:
            self.metrics.assigned.set(len(self.assigned))
        self.health.set_ready(True)
        if self.handler is not None:
            self._log.info("assigned", partitions=sorted(self.assigned))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        if self.partitions is not None:
            if not self._failed:  # a last checkpoint, so the next owner replays nothing twice
                self._commit_partitions(consumer, sorted({p for _, p in gone}), force=True)
            self.partitions.drop(sorted(gone), lost=False)
        elif self.handler is not None:
            self.handler.drop(gone)
        self._forget(gone)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        if self.partitions is not None:
            # Someone else may own them already: committing now could move their offsets.
            self.partitions.drop(sorted(gone), lost=True)
        elif self.handler is not None:
            self.handler.drop(gone)
        self._forget(gone)

    def _forget(self, gone: set[PartitionKey]) -> None:
        self.assigned -= gone
        if self.metrics is not None:
            self.metrics.assigned.set(len(self.assigned))
        if self.handler is not None:
            self._log.info("revoked", partitions=sorted(gone))

    # -- main loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume, hand over and commit until `stop` is set; then a last flush of a batch that
        has not failed yet (a failing one is left uncommitted for the next owner), or a last
        checkpoint and commit of every partition."""
        s = self.settings
        if self.handler is not None:
            prepare_topics(
                s.client_config(),
                [*self.outputs, *self.topics],
                s.topic_partitions,
                s.create_topics,
            )
        config = {
            **consumer_config(s.client_config(), self.group_id, s.session_timeout_ms),
            **self._consumer_extra,
        }
        if self._status is not None:
            config["error_cb"] = self._status.on_error  # unreachable Kafka → not ready, and why
        consumer = Consumer(config)
        consumer.subscribe(
            self.topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._log.info("subscribed", group=self.group_id, topics=self.topics)
        self._next_commit = time.monotonic() + self._commit_every
        try:
            while not stop.is_set():
                self.health.beat()
                if self._retry_at is not None:
                    self._wait_or_retry(consumer, self._retry_at - time.monotonic())
                    continue
                messages = consumer.consume(self._room(), timeout=_CONSUME_WAIT_S)
                if self._status is not None:
                    self._status.after_consume(consumer, messages)
                self._take(consumer, messages)
                self._after_turn(consumer)
            self._finish(consumer)
        except BaseException:
            # Outputs may be lost or half-made: the revoke that close() triggers must not
            # checkpoint past them.
            self._failed = True
            raise
        finally:
            consumer.close()

    def _room(self) -> int:
        if self.partitions is not None:
            return self.partitions.room()
        assert self.handler is not None
        return self.handler.room()

    def _take(self, consumer: Consumer, messages: list[Message]) -> None:
        if self.partitions is not None:
            if messages:
                batches = by_partition(messages, self._log)
                self.partitions.process(consumer, batches, len(messages), time.time())
            return
        assert self.handler is not None
        records = readable(messages, self._log)
        if records:
            self.handler.add(records)

    def _after_turn(self, consumer: Consumer) -> None:
        if self.partitions is not None:
            self.partitions.tick(consumer)
            if time.monotonic() >= self._next_commit:
                self._commit_partitions(consumer, None, force=False)
                self._next_commit = time.monotonic() + self._commit_every
            return
        assert self.handler is not None
        if self.handler.due():
            self._flush(consumer)
        if self._retry_at is None:
            self.handler.tick()

    def _finish(self, consumer: Consumer) -> None:
        if self.partitions is not None:
            self._commit_partitions(consumer, None, force=True)
            return
        assert self.handler is not None
        if self.handler.pending() and not (self._retry_at is None and self._flush(consumer)):
            self._log.warning("stopping with an unfinished batch; not committed")

    def _wait_or_retry(self, consumer: Consumer, wait: float) -> None:
        assert self.handler is not None
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

    # -- flushing, checkpointing and committing -------------------------------------------------

    def _flush(self, consumer: Consumer) -> bool:
        """Flush the handler's batch; True once it is finished and committed."""
        assert self.handler is not None and self.backoff is not None
        outcome = self.handler.flush()
        if isinstance(outcome, RetryAfter):
            if self._retry_at is None:
                consumer.pause(consumer.assignment())
                if self.metrics is not None:
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
        assert self.backoff is not None
        self.backoff.reset()
        if self._retry_at is not None:
            self._retry_at = None
            consumer.resume(consumer.assignment())
            if self.metrics is not None:
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
        if commit(consumer, todo, self.committed) and self.metrics is not None:
            self.metrics.commit_lag.set(commit_lag(consumer, self.committed, self.assigned))

    def _commit_partitions(
        self, consumer: Consumer, numbers: list[int] | None, force: bool
    ) -> None:
        """Checkpoint (the handler) and commit (here) the partitions numbered `numbers` (None:
        every one owned). Every offset is committed even if unchanged: the commit also says the
        checkpoint behind it was written."""
        assert self.partitions is not None
        offsets = self.partitions.checkpoint(consumer, numbers, force)
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except Exception as exc:
            # Only logged: the checkpoint is what a new owner trusts, and it was written.
            self._log.warning("offset commit failed", error=str(exc))
            self.partitions.committed(offsets, ok=False)
            return
        for tp in offsets:
            self.committed[(tp.topic, tp.partition)] = tp.offset
        self.partitions.committed(offsets, ok=True)
