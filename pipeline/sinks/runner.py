"""The sink runner: a consumer-group member that stores rollup topics through one `RollupSink`.

Loop (driven by pipeline/kafka/consumer.py:GroupConsumer): consume → decode (orjson) → batch up
to `batch_records` records or `batch_interval` → `sink.write(batch)` → dead-letter what could not
be read or was refused → commit (synchronously). Offsets are committed only after the write
returned and the dead letters were acknowledged, so every committed record is either stored or
dead-lettered.

While the store is failing (`RetryableSinkError`) the flush answers `RetryAfter`: the consumer
keeps the same batch, pauses its partitions and keeps polling (heartbeats, rebalances) between
attempts, so a long outage costs one batch of memory and no records. A rebalance drops the
revoked partitions' records from the pending batch uncommitted: their next owner reads them
again (sinks are idempotent).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat
from operator import add
from typing import Any, cast

import numpy as np
import orjson
import structlog
from confluent_kafka import Message

from pipeline.core.reasons import Reason
from pipeline.kafka.clients import OutputProducer, producer_config
from pipeline.kafka.consumer import Done, GroupConsumer, RetryAfter
from pipeline.kafka.deadletter import sink_record
from pipeline.observability import Health
from pipeline.sinks.backoff import Backoff
from pipeline.sinks.base import (
    RecordColumns,
    Rejection,
    RetryableSinkError,
    RollupSink,
    SinkRecord,
)
from pipeline.sinks.metrics import SinkMetrics
from pipeline.sinks.settings import SinkSettings

log = structlog.get_logger("sink")

TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A consumed record that is not a JSON object: dead-lettered with the batch it arrived in."""

    topic: str
    partition: int
    offset: int
    raw: bytes
    error: str


@dataclass(slots=True)
class PendingBatch:
    #: A list of parsed records, or columns of unparsed ones for a sink that parses them.
    records: list[SinkRecord] | RecordColumns = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    #: Offset to commit per partition once the batch is stored: last consumed offset + 1.
    next_offsets: dict[TopicPartitionKey, int] = field(default_factory=dict)
    started: float = 0.0

    def __len__(self) -> int:
        return len(self.records) + len(self.unreadable)

    def drop_partitions(self, gone: set[TopicPartitionKey]) -> int:
        """Forget the records of revoked partitions; returns how many were dropped."""
        before = len(self)
        if isinstance(self.records, RecordColumns):
            self.records = self.records.without(gone)
        else:
            self.records = [r for r in self.records if (r.topic, r.partition) not in gone]
        self.unreadable = [u for u in self.unreadable if (u.topic, u.partition) not in gone]
        for key in gone:
            self.next_offsets.pop(key, None)
        return before - len(self)


@dataclass(slots=True)
class SinkTotals:
    """Plain running counts of this process (the Prometheus metrics say the same, labelled)."""

    consumed: int = 0
    stored: int = 0
    rejected: int = 0
    unreadable: int = 0
    failed_writes: int = 0
    committed: dict[TopicPartitionKey, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "consumed": self.consumed,
            "stored": self.stored,
            "rejected": self.rejected,
            "unreadable": self.unreadable,
            "failed_writes": self.failed_writes,
        }


class SinkRunner:
    """The batch handler of a sink process: `GroupConsumer` (pipeline/kafka/consumer.py) owns the
    consumer; this decodes records into the pending batch, writes it through the sink and
    dead-letters what could not be read or was refused."""

    def __init__(
        self,
        settings: SinkSettings,
        sink: RollupSink,
        metrics: SinkMetrics | None = None,
        health: Health | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        # A sink that never reads the digest gets bodies parsed without it; one that parses
        # records itself (remote-write: only the fields it sends, in bulk) gets them unparsed.
        self._wants_digest = getattr(sink, "reads_digest", True)
        self._parses = getattr(sink, "parses_records", False)
        self.metrics = metrics or SinkMetrics(sink.name)
        self.health = health or Health()
        self.totals = SinkTotals()
        self._stage = f"sink:{sink.name}"
        self._interval = settings.batch_interval / 1000
        self._batch = self._new_batch()
        self._first_input_seen = False
        self.group = GroupConsumer(
            settings,
            settings.topics,
            self,
            outputs=[settings.deadletter_topic],
            metrics=self.metrics,
            backoff=Backoff(settings.retry_initial / 1000, settings.retry_max / 1000),
            health=self.health,
            committed=self.totals.committed,
            retries=self.metrics.retries,
            name="sink",
        )

    def run(self, stop: threading.Event) -> None:
        """Consume, store and commit until `stop` is set; then finish or abandon the batch."""
        self.producer = OutputProducer(producer_config(self.settings.client_config()))
        log.info("started", group=self.settings.group_id, sink=self.sink.name)
        try:
            self.group.run(stop)
        finally:
            self.producer.close()
            log.info("stopped", **self.totals.counts())

    def _new_batch(self) -> PendingBatch:
        return PendingBatch(RecordColumns() if self._parses else [])

    # -- the batch handler (pipeline/kafka/consumer.py:BatchHandler) --------------------------

    def room(self) -> int:
        return max(1, min(self.settings.batch_records - len(self._batch), 10_000))

    def pending(self) -> bool:
        return len(self._batch) > 0

    def due(self) -> bool:
        batch = self._batch
        return len(batch) >= self.settings.batch_records or (
            len(batch) > 0 and time.monotonic() - batch.started >= self._interval
        )

    def tick(self) -> None:
        self.producer.poll()

    def drop(self, partitions: set[TopicPartitionKey]) -> None:
        dropped = self._batch.drop_partitions(partitions)
        if dropped:
            log.info("revoked records dropped uncommitted", records=dropped)

    def add(self, messages: list[Message]) -> None:
        if self._parses:
            self._add_unparsed(messages)
        else:
            self._add_parsed(messages)
        if messages:
            self.metrics.records_in.inc(len(messages))
            self.totals.consumed += len(messages)
            if not self._first_input_seen:
                self._first_input_seen = True
                self.metrics.first_input_time.set(time.time())

    def _add_parsed(self, messages: list[Message]) -> None:
        batch = self._batch
        for msg in messages:
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if topic is None or partition is None or offset is None:
                continue
            if not len(batch):
                batch.started = time.monotonic()
            batch.next_offsets[(topic, partition)] = offset + 1
            raw = msg.value() or b""
            body = _decode(raw, self._wants_digest)
            if isinstance(body, str):
                batch.unreadable.append(Unreadable(topic, partition, offset, raw, body))
            else:
                assert isinstance(batch.records, list)
                batch.records.append(
                    SinkRecord(topic, partition, offset, msg.key() or b"", raw, body)
                )

    def _add_unparsed(self, messages: list[Message]) -> None:
        """For a sink that parses records itself: the messages' fields appended to the batch's
        columns (`RecordColumns`) in C-level loops (map over the Message methods), no object
        and no Python bytecode per record; each partition's next offset found with numpy."""
        if not messages:
            return
        batch = self._batch
        columns = batch.records
        assert isinstance(columns, RecordColumns)
        if not len(batch):
            batch.started = time.monotonic()
        topics = list(map(Message.topic, messages))
        partitions = list(map(Message.partition, messages))
        offsets = list(map(Message.offset, messages))
        if None in topics or None in partitions or None in offsets:  # not from a partition
            located = [m for m in messages if None not in (m.topic(), m.partition(), m.offset())]
            self._add_unparsed(located)
            return
        keys = list(map(Message.key, messages))
        values = list(map(Message.value, messages))
        if None in keys:
            keys = [key or b"" for key in keys]
        if None in values:  # a tombstone: the sink refuses it as an empty record
            values = [value or b"" for value in values]
        located_topics = cast(list[str], topics)
        located_partitions = cast(list[int], partitions)
        located_offsets = cast(list[int], offsets)
        _next_offsets(batch.next_offsets, located_topics, located_partitions, located_offsets)
        columns.extend(
            located_topics,
            located_partitions,
            located_offsets,
            cast(list[bytes], keys),
            cast(list[bytes], values),
        )

    def flush(self) -> Done | RetryAfter:
        """Store the pending batch and dead-letter what it refused; Done once both are
        acknowledged (the consumer then commits the batch's offsets)."""
        batch = self._batch
        started = time.perf_counter()
        try:
            rejections = self.sink.write(batch.records) if batch.records else []
        except RetryableSinkError as exc:
            self.metrics.write_duration.observe(time.perf_counter() - started)
            self.metrics.write_failures.inc()
            self.totals.failed_writes += 1
            log.warning("store unavailable; batch kept", error=str(exc), records=len(batch))
            return RetryAfter()
        self.metrics.write_duration.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(batch))
        refused = self._deadletter(batch, rejections)
        self.metrics.stored.inc(len(batch.records) - refused)
        self.totals.stored += len(batch.records) - refused
        self.metrics.last_stored_time.set(time.time())
        self._batch = self._new_batch()
        return Done(batch.next_offsets)

    def _deadletter(self, batch: PendingBatch, rejections: list[Rejection]) -> int:
        """Produce dead letters for unreadable and refused records and wait for Kafka to
        acknowledge them (a DeliveryError stops the runner before the commit). Returns how many
        of batch.records were refused."""
        topic = self.settings.deadletter_topic
        for bad in batch.unreadable:
            key, value = sink_record(
                bad.topic,
                bad.partition,
                bad.offset,
                Reason.INVALID_ROLLUP,
                bad.error,
                bad.raw,
                self._stage,
            )
            self.producer.produce(topic, value, key)
            self.metrics.deadlettered(Reason.INVALID_ROLLUP.value)
        refused: dict[int, Rejection] = {}
        for rejection in rejections:
            if 0 <= rejection.index < len(batch.records):
                refused.setdefault(rejection.index, rejection)
        for index, rejection in refused.items():
            record = batch.records[index]
            reason, detail = _reason_of(rejection)
            key, value = sink_record(
                record.topic,
                record.partition,
                record.offset,
                reason,
                detail,
                record.raw,
                self._stage,
            )
            self.producer.produce(topic, value, key)
            self.metrics.deadlettered(reason.value)
        if batch.unreadable or refused:
            self.producer.flush()
        self.totals.unreadable += len(batch.unreadable)
        self.totals.rejected += len(refused)
        return len(refused)


_DIGEST_FIELD = b',"digest":'
_PLUS_ONE = partial(add, 1)


def _next_offsets(
    found: dict[TopicPartitionKey, int],
    topics: list[str],
    partitions: list[int],
    offsets: list[int],
) -> None:
    """Record in `found` the offset after each partition's last record (a consume returns each
    partition's records in offset order). From one topic, numpy finds each partition's last
    record (a dict update per record cost a quarter of the batching); from several, the dict."""
    if topics.count(topics[0]) == len(topics):
        numbers = np.array(partitions, dtype=np.int64)
        distinct, from_end = np.unique(numbers[::-1], return_index=True)
        last = len(numbers) - 1 - from_end
        after = np.array(offsets, dtype=np.int64)[last] + 1
        topic = topics[0]
        found.update(zip(zip(repeat(topic), distinct.tolist()), after.tolist(), strict=True))
    else:
        where = zip(topics, partitions, strict=True)
        found.update(zip(where, map(_PLUS_ONE, offsets), strict=True))


def _decode(raw: bytes, digest: bool = True) -> dict[str, Any] | str:
    """The record's JSON object, or why it is not one.

    digest=False: the sink never reads the digest, which is most of a rollup's bytes (one
    object per centroid); the stages render it as the last field, so the body is parsed without
    it when it is there (any other layout is parsed whole)."""
    if not raw:
        return "empty record value"
    if not digest:
        cut = raw.rfind(_DIGEST_FIELD)
        if cut > 0 and raw.endswith(b"}"):
            try:
                short = orjson.loads(raw[:cut] + b"}")
            except orjson.JSONDecodeError:
                pass
            else:
                if isinstance(short, dict):
                    return short
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return f"not JSON: {exc}"
    if not isinstance(body, dict):
        return f"not a JSON object but {type(body).__name__}"
    return body


def _reason_of(rejection: Rejection) -> tuple[Reason, str]:
    try:
        return Reason(rejection.reason), rejection.detail
    except ValueError:  # a sink's own code the dead-letter schema does not know
        return Reason.STORE_REJECTED, f"{rejection.reason}: {rejection.detail}"
