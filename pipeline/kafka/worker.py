"""The rollup worker: a consumer-group member turning metrics.raw into base-resolution rollups.

Per batch: decode and validate (bad input → dead-letter topic), forward samples that belong to
another partition, aggregate the rest per input partition, produce closed windows. Every
`commit_interval`: flush outputs, write each partition's checkpoint, flush, commit the offset the
checkpoint resumes from. A crash at any point replays from the last checkpoint and re-emits
byte-identical rollups (DESIGN.md §3).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from operator import methodcaller
from typing import Any, cast

import numpy as np
import structlog
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from pipeline.core.aggregator import PartitionAggregator
from pipeline.core.decode import Decoder
from pipeline.core.rollup import Rollup, parse_duration_ms
from pipeline.core.series import SeriesTable
from pipeline.errors import CheckpointError
from pipeline.kafka.admin import TopicSpec, UnknownTopicError, ensure_topics, partition_count
from pipeline.kafka.checkpoints import CheckpointStore
from pipeline.kafka.clients import OutputProducer, consumer_config, producer_config
from pipeline.kafka.deadletter import late_records, reject_records
from pipeline.kafka.forwarding import ForwardDedup, forward_messages, parse_forward_header
from pipeline.kafka.partitioner import OwnerPartitions
from pipeline.observability import Health, WorkerMetrics
from pipeline.settings import WorkerSettings

log = structlog.get_logger("worker")

_VALUE = methodcaller("value")
_OFFSET = methodcaller("offset")
_TIMESTAMP = methodcaller("timestamp")
_HEADERS = methodcaller("headers")


@dataclass(slots=True)
class OwnedPartition:
    aggregator: PartitionAggregator
    forwards: ForwardDedup
    last_input_at: float = field(default_factory=time.monotonic)
    dirty: bool = True
    resume_from: int = -1  # checkpoint offset the first record should carry (-1: none)


@dataclass(slots=True)
class Totals:
    """Plain running counts of this process (the Prometheus metrics say the same, labelled)."""

    samples_in: int = 0
    aggregated: int = 0
    deadlettered: int = 0
    late: int = 0
    forwarded: int = 0

    @property
    def accounted(self) -> int:
        """Samples whose fate is settled here: in a window, dead-lettered or late."""
        return self.aggregated + self.deadlettered + self.late


class RollupWorker:
    def __init__(
        self,
        settings: WorkerSettings,
        metrics: WorkerMetrics | None = None,
        health: Health | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        self.health = health or Health()
        self.window = settings.window()
        self.digest = settings.digest()
        self.series = SeriesTable()
        self.decoder = Decoder(self.series, settings.limits())
        self.owned: dict[int, OwnedPartition] = {}
        self.totals = Totals()
        self._first_input_seen = False
        self._failed = False  # set when run() dies: from then on nothing is committed
        # Records per consume(), adapted so a batch holds about batch_samples samples whatever
        # the encoding: a batch of 10,000 columnar records would hold millions of samples and
        # delay every rollup it closes by the time it takes to process them all.
        self._batch_messages = min(256, settings.batch_size)  # grows once records are measured
        self._samples_per_record = 1.0
        self._commit_every = parse_duration_ms(settings.commit_interval) / 1000.0
        self._idle_after = parse_duration_ms(settings.idle_timeout) / 1000.0
        self._stage = "worker"

    # -- set-up -------------------------------------------------------------------------------

    def _prepare_topics(self) -> None:
        s = self.settings
        try:
            self.input_partitions = partition_count(s.bootstrap_servers, s.input_topic)
        except UnknownTopicError:
            if not s.create_topics:
                raise
            ensure_topics(s.bootstrap_servers, [TopicSpec(s.input_topic, s.topic_partitions)])
            self.input_partitions = s.topic_partitions
        n = self.input_partitions
        wanted = {
            s.rollup_topic: {},
            s.deadletter_topic: {},
            s.checkpoint_topic: {"cleanup.policy": "compact"},
        }
        counts: dict[str, int] = {}
        for topic, config in wanted.items():
            try:
                counts[topic] = partition_count(s.bootstrap_servers, topic)
            except UnknownTopicError:
                if not s.create_topics:
                    raise
                ensure_topics(s.bootstrap_servers, [TopicSpec(topic, n, config=config)])
                counts[topic] = n
        self.rollup_owner = OwnerPartitions(counts[s.rollup_topic])
        self.checkpoints = CheckpointStore(
            s.bootstrap_servers,
            s.checkpoint_topic,
            s.group_id,
            counts[s.checkpoint_topic],
            s.kafka_config,
        )
        input_owner = OwnerPartitions(n)
        self.series.set_owner_function(lambda key: input_owner(key.encode()))

    # -- rebalance callbacks ------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        topic = self.settings.input_topic
        numbers = [tp.partition for tp in partitions]
        stored = self.checkpoints.read_latest(topic, numbers)
        self._refuse_commits_without_checkpoints(consumer, partitions, stored)
        for tp in partitions:
            aggregator = PartitionAggregator(
                topic, tp.partition, self.series, self.window, self.digest
            )
            checkpoint = stored.get(tp.partition)
            forwards = ForwardDedup()
            if checkpoint is not None:
                aggregator.restore(checkpoint)
                forwards = ForwardDedup(checkpoint.extra.get("forwarded"))
                tp.offset = checkpoint.offset
            owned = OwnedPartition(aggregator, forwards)
            owned.resume_from = -1 if checkpoint is None else checkpoint.offset
            self.owned[tp.partition] = owned
        consumer.assign(partitions)
        self.metrics.assigned.set(len(self.owned))
        self.health.set_ready(True)
        log.info(
            "assigned",
            partitions=numbers,
            resume={p: stored[p].offset for p in stored},
        )

    def _refuse_commits_without_checkpoints(
        self, consumer: Consumer, partitions: list[TopicPartition], stored: dict[int, Any]
    ) -> None:
        """Checkpoints are written before every commit, so a committed offset without one means
        the checkpoint topic was lost: resuming with empty state would re-emit windows with
        other content. Stop and say so instead."""
        missing = [
            TopicPartition(tp.topic, tp.partition)
            for tp in partitions
            if tp.partition not in stored
        ]
        if not missing:
            return
        committed = consumer.committed(missing, timeout=30)
        orphaned = [tp.partition for tp in committed if tp.offset is not None and tp.offset >= 0]
        if orphaned:
            raise CheckpointError(
                f"{self.settings.input_topic} partitions {orphaned} have committed offsets for "
                f"group {self.settings.group_id!r} but no checkpoint in "
                f"{self.settings.checkpoint_topic!r}; resuming would change emitted rollups. "
                "Restore the checkpoint topic, or start a new consumer group."
            )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = [tp.partition for tp in partitions if tp.partition in self.owned]
        if numbers and not self._failed:
            self._commit(consumer, numbers, force=True)
        for p in numbers:
            del self.owned[p]
        self.metrics.assigned.set(len(self.owned))
        log.info("revoked", partitions=numbers)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Someone else may own them already: committing now could move their offsets.
        for tp in partitions:
            self.owned.pop(tp.partition, None)
        self.metrics.assigned.set(len(self.owned))
        log.warning("partitions lost", partitions=[tp.partition for tp in partitions])

    # -- main loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        s = self.settings
        self._prepare_topics()
        self.producer = OutputProducer(producer_config(s.bootstrap_servers, s.kafka_config))
        consumer = Consumer(
            consumer_config(s.bootstrap_servers, s.group_id, s.session_timeout_ms, s.kafka_config)
        )
        consumer.subscribe(
            [s.input_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("started", group=s.group_id, input=s.input_topic, output=s.rollup_topic)
        next_commit = time.monotonic() + self._commit_every
        try:
            while not stop.is_set():
                self.health.beat()
                messages = consumer.consume(self._batch_messages, timeout=0.1)
                if messages:
                    if not self._first_input_seen:
                        self._first_input_seen = True
                        self.metrics.first_input_time.set(time.time())
                    self._handle(messages, time.time())
                self.producer.poll()  # serve delivery reports promptly, input or not
                self._close_idle(consumer)
                if time.monotonic() >= next_commit:
                    self._commit(consumer, list(self.owned))
                    next_commit = time.monotonic() + self._commit_every
            self._commit(consumer, list(self.owned), force=True)
        except BaseException:
            # Outputs may be lost or half-made: the revoke that close() triggers must not
            # checkpoint past them. The next owner replays from the last good checkpoint.
            self._failed = True
            raise
        finally:
            consumer.close()
            try:
                if not self._failed:
                    self.producer.flush()
            finally:
                self.producer.close()
            log.info("stopped")

    def _handle(self, messages: list[Message], received_at: float) -> None:
        by_partition: dict[int, list[Message]] = defaultdict(list)
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error", error=str(err))
                continue
            partition = msg.partition()
            if partition is not None:
                by_partition[partition].append(msg)
        self.metrics.messages.inc(len(messages))
        samples_before = self.totals.samples_in
        for partition, batch in by_partition.items():
            owned = self.owned.get(partition)
            if owned is not None:
                self._process_partition(partition, owned, batch, received_at)
        self._adapt_batch(len(messages), self.totals.samples_in - samples_before)
        self.metrics.active_series.set(len(self.series))
        self.metrics.open_windows.set(self.open_windows)
        self.producer.poll()

    def _adapt_batch(self, records: int, samples: int) -> None:
        if records == 0:
            return
        self._samples_per_record = 0.8 * self._samples_per_record + 0.2 * max(
            1.0, samples / records
        )
        wanted = int(self.settings.batch_samples / self._samples_per_record)
        self._batch_messages = max(8, min(self.settings.batch_size, wanted))

    @property
    def failed(self) -> bool:
        """run() stopped on an error (nothing was committed after it)."""
        return self._failed

    @property
    def open_windows(self) -> int:
        return sum(o.aggregator.open_windows for o in self.owned.values())

    def _process_partition(
        self, partition: int, owned: OwnedPartition, batch: list[Message], received_at: float
    ) -> None:
        topic = self.settings.input_topic
        # C-level maps: this runs once per record at up to a million records a second.
        values: list[bytes | None] = list(map(_VALUE, batch))
        offsets: list[int] = list(map(_OFFSET, batch))
        times = [ts if kind else -1 for kind, ts in map(_TIMESTAMP, batch)]
        agg = owned.aggregator
        if offsets[0] < agg.next_offset:  # re-delivered after a seek: already processed
            keep = [i for i, o in enumerate(offsets) if o >= agg.next_offset]
            if not keep:
                return
            batch = [batch[i] for i in keep]
            values = [values[i] for i in keep]
            offsets = [offsets[i] for i in keep]
            times = [times[i] for i in keep]
        if owned.resume_from >= 0:
            if offsets[0] > owned.resume_from:
                # Retention deleted input the checkpoint still needed: windows will be short.
                self.metrics.replay_gaps.inc()
                log.error(
                    "input needed for replay is gone",
                    partition=partition,
                    needed_from=owned.resume_from,
                    first_available=offsets[0],
                )
            owned.resume_from = -1
        forwarded_offsets: list[int] = []
        if any(map(_HEADERS, batch)):
            values, offsets, times, forwarded_offsets = self._accept_forwards(
                owned, batch, values, offsets, times
            )
        end_offset = cast(int, batch[-1].offset()) + 1
        owned.last_input_at = time.monotonic()
        owned.dirty = True

        decoded = self.decoder.decode_lists(values, offsets, times)
        cols = decoded.columns
        rejected = sum(r.samples for r in decoded.rejects)
        self.metrics.samples.inc(len(cols) + rejected)
        self.totals.samples_in += len(cols) + rejected
        self.totals.deadlettered += rejected
        for key, value in reject_records(topic, partition, decoded.rejects, self._stage):
            self.producer.produce(self.settings.deadletter_topic, value, key)
        for r in decoded.rejects:
            self.metrics.deadletter.labels(r.reason.value).inc(r.samples)

        owners = self.series.owners(cols.series)
        foreign = owners != partition
        if forwarded_offsets and foreign.any():
            # Forwarded records stay where they land, even if ownership changed meanwhile.
            foreign &= ~np.isin(cols.offset, np.array(forwarded_offsets, np.int64))
        if foreign.any():
            timestamps = dict(zip(offsets, times, strict=True))
            for record in forward_messages(
                cols.take(foreign), owners[foreign], self.series, partition, timestamps
            ):
                self.producer.produce(topic, **record)
            self.metrics.forwarded.inc(int(foreign.sum()))
            self.totals.forwarded += int(foreign.sum())
            cols = cols.take(~foreign)

        step = owned.aggregator.process(cols, end_offset)
        self.metrics.aggregated.inc(step.accepted)
        self.totals.aggregated += step.accepted
        self.metrics.replayed.inc(step.already_emitted)
        late = step.late
        if len(late):
            self.metrics.late.inc(len(late))
            self.totals.late += len(late)
            if self.settings.late_policy == "deadletter":
                for key, value in late_records(
                    topic, partition, late, self.series, self.window.resolution_ms, self._stage
                ):
                    self.producer.produce(self.settings.deadletter_topic, value, key)
                self.metrics.deadletter.labels("late").inc(len(late))
        self._emit(step.rollups, received_at)

    def _accept_forwards(
        self,
        owned: OwnedPartition,
        batch: list[Message],
        values: list[bytes | None],
        offsets: list[int],
        times: list[int],
    ) -> tuple[list[bytes | None], list[int], list[int], list[int]]:
        """Drop forwarded records seen before; returns the rest and the forwarded offsets."""
        keep_values: list[bytes | None] = []
        keep_offsets: list[int] = []
        keep_times: list[int] = []
        forwarded: list[int] = []
        for msg, value, offset, ts in zip(batch, values, offsets, times, strict=True):
            source = parse_forward_header(msg.headers())
            if source is not None:
                if not owned.forwards.accept(offset, *source):
                    self.metrics.duplicate_forwards.inc()
                    continue
                forwarded.append(offset)
            keep_values.append(value)
            keep_offsets.append(offset)
            keep_times.append(ts)
        return keep_values, keep_offsets, keep_times, forwarded

    def _emit(self, rollups: list[Rollup], closed_at: float | None = None) -> None:
        """Produce rollups; closed_at (time.time()) is when the input that closed them arrived."""
        topic = self.settings.rollup_topic
        closed_at = time.time() if closed_at is None else closed_at
        metrics = self.metrics

        def delivered() -> None:
            now = time.time()
            metrics.rollups_delivered.inc()
            metrics.last_delivery_time.set(now)
            metrics.emission_delay.observe(now - closed_at)

        for rollup in rollups:
            self.producer.produce(
                topic,
                rollup.encode(),
                rollup.key.encode(),
                partition=self.rollup_owner(rollup.routing_key.encode()),
                on_delivered=delivered,
            )
        if rollups:
            self.metrics.rollups.labels(self.settings.resolution).inc(len(rollups))

    # -- idle partitions and commits ------------------------------------------------------------

    def _close_idle(self, consumer: Consumer) -> None:
        now = time.monotonic()
        for partition, owned in self.owned.items():
            agg = owned.aggregator
            if now - owned.last_input_at < self._idle_after or not agg.open_windows:
                continue
            tp = TopicPartition(self.settings.input_topic, partition)
            _, high = consumer.get_watermark_offsets(tp, cached=True)
            if high is not None and high > agg.next_offset:
                continue  # more input is waiting: not idle, just slow
            if not agg.plan_idle_advance():
                continue
            # Persist the advance before emitting what it closes (see plan_idle_advance).
            self.producer.flush()
            self._write_checkpoint(partition, owned)
            self.producer.flush()
            self._emit(agg.apply_idle_advance())
            owned.dirty = True
            log.info("idle partition flushed", partition=partition)

    def _write_checkpoint(self, partition: int, owned: OwnedPartition) -> int:
        checkpoint = owned.aggregator.checkpoint()
        checkpoint.extra["forwarded"] = owned.forwards.fold(checkpoint.offset)
        self.checkpoints.write(self.producer, checkpoint)
        return checkpoint.offset

    def _commit(self, consumer: Consumer, partitions: list[int], force: bool = False) -> None:
        started = time.perf_counter()
        todo = [p for p in partitions if p in self.owned and (force or self.owned[p].dirty)]
        if not todo or self._failed:
            return
        self.producer.flush()  # outputs first: a checkpoint must never get ahead of them
        offsets = [
            TopicPartition(self.settings.input_topic, p, self._write_checkpoint(p, self.owned[p]))
            for p in todo
        ]
        self.producer.flush()
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except Exception as exc:
            log.warning("offset commit failed", error=str(exc))
        lag = 0
        for tp in offsets:
            owned = self.owned[tp.partition]
            owned.dirty = False
            lag += owned.aggregator.next_offset - tp.offset
        self.metrics.commit_lag.set(lag)
        watermarks = [o.aggregator.watermark for o in self.owned.values()]
        if watermarks and min(watermarks) > 0:
            self.metrics.watermark_lag.set(time.time() - min(watermarks) / 1000.0)
        self.metrics.flush_duration.observe(time.perf_counter() - started)
