"""The sink runner: a consumer-group member that stores rollup topics through one `RollupSink`.

Loop: consume → decode (orjson) → batch up to `batch_records` records or `batch_interval` →
`sink.write(batch)` → dead-letter what could not be read or was refused → commit (synchronously).
Offsets are committed only after the write returned and the dead letters were acknowledged, so
every committed record is either stored or dead-lettered.

While the store is failing (`RetryableSinkError`) the runner keeps the same batch, pauses its
partitions and keeps polling (heartbeats, rebalances) between attempts, so a long outage costs
one batch of memory and no records. A rebalance drops the revoked partitions' records from the
pending batch uncommitted: their next owner reads them again (sinks are idempotent).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from pipeline.core.reasons import Reason
from pipeline.kafka.admin import TopicSpec, ensure_present
from pipeline.kafka.clients import OutputProducer, consumer_config, producer_config
from pipeline.kafka.commits import commit, commit_lag
from pipeline.kafka.deadletter import sink_record
from pipeline.observability import Health
from pipeline.sinks.backoff import Backoff
from pipeline.sinks.base import Rejection, RetryableSinkError, RollupSink, SinkRecord
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
    records: list[SinkRecord] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    #: Offset to commit per partition once the batch is stored: last consumed offset + 1.
    next_offsets: dict[TopicPartitionKey, int] = field(default_factory=dict)
    started: float = 0.0

    def __len__(self) -> int:
        return len(self.records) + len(self.unreadable)

    def drop_partitions(self, gone: set[TopicPartitionKey]) -> int:
        """Forget the records of revoked partitions; returns how many were dropped."""
        before = len(self)
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
        self._interval = settings.seconds("batch_interval")
        self._backoff = Backoff(settings.seconds("retry_initial"), settings.seconds("retry_max"))
        self._batch = PendingBatch()
        self._assigned: set[TopicPartitionKey] = set()
        self._retry_at: float | None = None  # set while the store is failing
        self._first_input_seen = False

    # -- set-up and rebalance ------------------------------------------------------------------

    def _prepare_topics(self) -> None:
        # The rollup topics too: a sink often starts before the tier that writes its topic, and
        # librdkafka would only notice a topic created later at its next metadata refresh (5 min).
        s = self.settings
        specs = [TopicSpec(topic, s.topic_partitions) for topic in [s.deadletter_topic, *s.topics]]
        ensure_present(s.client_config(), specs, s.create_topics)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)
        # librdkafka keeps a partition's pause flag across an eager revoke/assign: set it anew.
        if self._retry_at is not None:
            consumer.pause(partitions)  # the store is down: take no new work yet
        else:
            consumer.resume(partitions)
        self._assigned |= {(tp.topic, tp.partition) for tp in partitions}
        self.metrics.assigned.set(len(self._assigned))
        self.health.set_ready(True)
        log.info("assigned", partitions=sorted(self._assigned))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        dropped = self._batch.drop_partitions(gone)
        self._assigned -= gone
        self.metrics.assigned.set(len(self._assigned))
        log.info("revoked", partitions=sorted(gone), dropped_uncommitted=dropped)

    # -- main loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume, store and commit until `stop` is set; then finish or abandon the batch."""
        s = self.settings
        self._prepare_topics()
        self.producer = OutputProducer(producer_config(s.client_config()))
        consumer = Consumer(consumer_config(s.client_config(), s.group_id, s.session_timeout_ms))
        consumer.subscribe(
            s.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        log.info("started", group=s.group_id, topics=s.topics, sink=self.sink.name)
        try:
            while not stop.is_set():
                self.health.beat()
                if self._retry_at is not None:
                    wait = self._retry_at - time.monotonic()
                    if not len(self._batch):  # a rebalance took every pending record away
                        self._end_retries(consumer)
                    elif wait > 0:
                        self._poll_paused(consumer, min(wait, 0.2))
                    else:
                        self.metrics.retries.inc()
                        self._write(consumer)
                    continue
                room = s.batch_records - len(self._batch)
                self._add(consumer.consume(min(room, 10_000), timeout=0.1))
                self.producer.poll()
                if len(self._batch) >= s.batch_records or (
                    len(self._batch) and time.monotonic() - self._batch.started >= self._interval
                ):
                    self._write(consumer)
            self._drain(consumer)
        finally:
            consumer.close()
            self.producer.close()
            log.info("stopped", **self.totals.counts())

    def _drain(self, consumer: Consumer) -> None:
        """On stop: one last attempt at a batch that has not failed yet; a failing one is
        abandoned uncommitted (its records are read again by the next owner)."""
        if not len(self._batch):
            return
        if self._retry_at is None and self._write(consumer):
            return
        log.warning("stopping with an unstored batch; not committed", records=len(self._batch))

    def _poll_paused(self, consumer: Consumer, timeout: float) -> None:
        """Serve heartbeats and rebalances while paused. A record can still slip through (one
        fetched for a partition assigned a moment ago): rewind to it so it is read again."""
        msg = consumer.poll(timeout)
        if msg is not None and msg.error() is None:
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if topic is not None and partition is not None and offset is not None:
                consumer.seek(TopicPartition(topic, partition, offset))
                consumer.pause([TopicPartition(topic, partition)])

    def _add(self, messages: list[Message]) -> None:
        batch = self._batch
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error", error=str(err))
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if topic is None or partition is None or offset is None:
                continue
            if not len(batch):
                batch.started = time.monotonic()
            batch.next_offsets[(topic, partition)] = offset + 1
            raw = msg.value() or b""
            if self._parses:
                batch.records.append(
                    SinkRecord(topic, partition, offset, msg.key() or b"", raw, {})
                )
                continue
            body = _decode(raw, self._wants_digest)
            if isinstance(body, str):
                batch.unreadable.append(Unreadable(topic, partition, offset, raw, body))
            else:
                batch.records.append(
                    SinkRecord(topic, partition, offset, msg.key() or b"", raw, body)
                )
        if messages:
            self.metrics.records_in.inc(len(messages))
            self.totals.consumed += len(messages)
            if not self._first_input_seen:
                self._first_input_seen = True
                self.metrics.first_input_time.set(time.time())

    # -- writing and committing -----------------------------------------------------------------

    def _write(self, consumer: Consumer) -> bool:
        """Store the pending batch; True once it is stored, dead-lettered and committed."""
        batch = self._batch
        started = time.perf_counter()
        try:
            rejections = self.sink.write(batch.records) if batch.records else []
        except RetryableSinkError as exc:
            self.metrics.write_duration.observe(time.perf_counter() - started)
            self.metrics.write_failures.inc()
            self.totals.failed_writes += 1
            if self._retry_at is None:
                consumer.pause(consumer.assignment())
                self.metrics.paused.set(1)
            delay = self._backoff.next_delay()
            self._retry_at = time.monotonic() + delay
            log.warning(
                "store unavailable; batch kept for retry",
                error=str(exc),
                records=len(batch),
                retry_in=round(delay, 2),
            )
            return False
        self.metrics.write_duration.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(batch))
        refused = self._deadletter(batch, rejections)
        self.metrics.stored.inc(len(batch.records) - refused)
        self.totals.stored += len(batch.records) - refused
        self.metrics.last_stored_time.set(time.time())
        self._commit(consumer, batch)
        self._batch = PendingBatch()
        if self._retry_at is not None:
            log.info("store available again; consuming")
        self._end_retries(consumer)
        return True

    def _end_retries(self, consumer: Consumer) -> None:
        self._backoff.reset()
        if self._retry_at is not None:
            self._retry_at = None
            consumer.resume(consumer.assignment())
            self.metrics.paused.set(0)

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

    def _commit(self, consumer: Consumer, batch: PendingBatch) -> None:
        offsets = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in batch.next_offsets.items()
            if (topic, partition) in self._assigned
        ]
        if commit(consumer, offsets, self.totals.committed):
            lag = commit_lag(consumer, self.totals.committed, self._assigned)
            self.metrics.commit_lag.set(lag)


_DIGEST_FIELD = b',"digest":'


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
