"""The rollup worker: a consumer-group member turning metrics.raw into base-resolution rollups.

Per batch: decode and validate (bad input → dead-letter topic), forward samples that belong to
another partition, aggregate the rest per input partition, produce closed windows. Commits,
checkpoints, idle partitions and rebalances are the shared stage's (kafka/stage.py, driven by the
one consumer loop in kafka/consumer.py): a crash at any point replays from the last checkpoint
and re-emits byte-identical rollups (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from operator import methodcaller
from typing import cast

import numpy as np
from confluent_kafka import Consumer, Message, TopicPartition

from pipeline.core.aggregator import FORWARD_STATE, PartitionAggregator, StepResult
from pipeline.core.cardinality import CardinalityGuard
from pipeline.core.checkpoint import Checkpoint
from pipeline.core.columns import SampleColumns
from pipeline.core.decode import Decoder, Reject
from pipeline.core.series import SeriesTable
from pipeline.kafka.admin import TopicSpec
from pipeline.kafka.commits import PartitionKey
from pipeline.kafka.consumer import broker_end
from pipeline.kafka.deadletter import late_records, reject_records
from pipeline.kafka.forwarding import (
    ForwardDedup,
    decode_forward,
    forward_messages,
    parse_repartition_headers,
    unexpected_record,
    watermark_messages,
)
from pipeline.kafka.local_watermarks import LocalWatermarks
from pipeline.kafka.partitioner import OwnerPartitions
from pipeline.kafka.stage import OwnedPartition, PartitionedStage
from pipeline.observability import Health, WorkerMetrics
from pipeline.settings import WorkerSettings

_VALUE = methodcaller("value")
_OFFSET = methodcaller("offset")
_TIMESTAMP = methodcaller("timestamp")
NO_BOUNDARY = -(2**62)


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


class RollupWorker(PartitionedStage[PartitionAggregator]):
    stage_name = "worker"
    settings: WorkerSettings
    metrics: WorkerMetrics

    def __init__(
        self,
        settings: WorkerSettings,
        metrics: WorkerMetrics | None = None,
        health: Health | None = None,
    ) -> None:
        super().__init__(settings, metrics or WorkerMetrics(), health)
        self.window = settings.window()
        self.digest = settings.digest()
        self.series = SeriesTable()
        self.decoder = Decoder(self.series, settings.limits())
        self.cardinality = CardinalityGuard(
            self.series,
            settings.max_series,
            settings.max_series_per_metric,
            settings.series_idle_timeout / 1000,
            overflow_counter=self.metrics.series_overflow,
            forgotten_counter=self.metrics.series_forgotten,
        )
        self.forwards: dict[int, ForwardDedup] = {}
        self._sent_watermark: dict[int, int] = {}  # partition → last window boundary sent
        self.local_watermarks = LocalWatermarks()
        self.repartition_topic = settings.topology.repartition(settings.group_id)
        self._alignment_ms = settings.watermark_alignment
        self._paused: set[int] = set()  # input partitions paused by watermark alignment
        self.totals = Totals()
        # Records per consume(), adapted so a batch holds about batch_samples samples whatever
        # the encoding: a batch of 10,000 columnar records would hold millions of samples and
        # delay every rollup it closes by the time it takes to process them all.
        self._batch_messages = min(256, settings.batch_size)  # grows once records are measured
        self._samples_per_record = 1.0

    def _topics_ready(self, input_partitions: int) -> None:
        input_owner = OwnerPartitions(input_partitions)
        self.series.set_owner_function(lambda key: input_owner(key.encode()))
        self.cardinality.partitions_known(input_partitions)

    def _side_topic(self, input_partitions: int) -> TopicSpec | None:
        # One partition owns every series: nothing is ever forwarded.
        if input_partitions == 1:
            return None
        return TopicSpec(self.repartition_topic, input_partitions)

    def _new_state(self, partition: int) -> PartitionAggregator:
        state = PartitionAggregator(
            self.settings.input_topic,
            partition,
            self.series,
            self.window,
            self.digest,
            sources=self.input_partitions,
            owners=self.series.owners,
            clock=self.settings.clock(),
        )
        state.admission = self.cardinality.admission(self.window.resolution_ms)
        return state

    def _side_offset(self, state: PartitionAggregator) -> int:
        return state.forwarded_next_offset

    def _side_offset_of(self, checkpoint: Checkpoint) -> int:
        return int(checkpoint.state[FORWARD_STATE]["offset"])

    def _restore_extra(self, partition: int, checkpoint: Checkpoint | None) -> None:
        stored = None if checkpoint is None else checkpoint.state.get("forwarded")
        self.forwards[partition] = ForwardDedup(stored)
        self._sent_watermark.pop(partition, None)
        self.local_watermarks.source_assigned(partition)
        self._paused.discard(partition)  # an assignment starts unpaused

    def _checkpoint_extra(self, partition: int, checkpoint: Checkpoint) -> None:
        forward = checkpoint.state.get(FORWARD_STATE)
        if forward is not None:
            checkpoint.state["forwarded"] = self.forwards[partition].fold(forward["offset"])

    def process(
        self,
        consumer: Consumer,
        batches: Mapping[PartitionKey, list[Message]],
        consumed: int,
        received_at: float,
    ) -> None:
        samples_before = self.totals.samples_in
        super().process(consumer, batches, consumed, received_at)
        self._adapt_batch(consumed, self.totals.samples_in - samples_before)
        self.metrics.active_series.set(len(self.series))
        self._align_watermarks(consumer)

    def _align_watermarks(self, consumer: Consumer) -> None:
        """Pause the input of a partition whose own clock ran more than `watermark_alignment`
        ahead of the watermark its windows close at (Flink's watermark alignment).

        While catching up, a partition can read minutes ahead of the slowest one; its windows
        wait for the slowest partition's watermark anyway, so reading further only holds more
        of them open, and the watermark records sit behind its read-ahead in the consumer's
        queue. The slowest partition is never paused (its clock is the minimum), so this cannot
        stall; once the others catch up, the paused one resumes where it stopped."""
        if self.input_partitions == 1 or self._alignment_ms <= 0:
            return
        topic = self.settings.input_topic
        pause, resume = [], []
        for partition, owned in self.owned.items():
            state = owned.state
            ahead = state.source_watermark - state.watermark
            # Hysteresis: resuming at half the limit keeps a partition from flapping (each
            # pause drops its prefetched records, which are fetched again on resume).
            if ahead > self._alignment_ms and partition not in self._paused:
                pause.append(partition)
            elif ahead <= self._alignment_ms // 2 and partition in self._paused:
                resume.append(partition)
        if pause:
            consumer.pause([TopicPartition(topic, p) for p in pause])
            self._paused.update(pause)
        if resume:
            consumer.resume([TopicPartition(topic, p) for p in resume])
            self._paused.difference_update(resume)
        self.metrics.paused_partitions.set(len(self._paused))

    def _close_idle(self, consumer: Consumer) -> None:
        super()._close_idle(consumer)
        # Once per loop turn: report overflow, forget idle and refused series.
        self.cardinality.after_batch(o.state for o in self.owned.values())
        self.metrics.active_series.set(len(self.series))

    def _adapt_batch(self, records: int, samples: int) -> None:
        if records == 0:
            return
        self._samples_per_record = 0.8 * self._samples_per_record + 0.2 * max(
            1.0, samples / records
        )
        wanted = int(self.settings.batch_samples / self._samples_per_record)
        self._batch_messages = max(8, min(self.settings.batch_size, wanted))

    # -- the partition's own input ----------------------------------------------------------

    def _process_partition(
        self,
        partition: int,
        owned: OwnedPartition[PartitionAggregator],
        batch: list[Message],
        received_at: float,
    ) -> None:
        topic = self.settings.input_topic
        # C-level maps: this runs once per record at up to a million records a second. Headers
        # of input records are never read: nothing a producer sets can steer the pipeline.
        values: list[bytes | None] = list(map(_VALUE, batch))
        offsets: list[int] = list(map(_OFFSET, batch))
        times = [ts if kind else -1 for kind, ts in map(_TIMESTAMP, batch)]
        end_offset = cast(int, batch[-1].offset()) + 1

        decoded = self.decoder.decode_lists(values, offsets, times)
        cols = decoded.columns
        rejected = sum(r.samples for r in decoded.rejects)
        self.metrics.samples.inc(len(cols) + rejected)
        self.totals.samples_in += len(cols) + rejected
        self.totals.deadlettered += rejected
        self._dead_letter(partition, decoded.rejects)

        step = owned.state.process(cols, end_offset)
        foreign = step.foreign
        if len(foreign):
            owners = self.series.owners(foreign.series)
            for record in forward_messages(foreign, owners, self.series, partition):
                acked = self.local_watermarks.forward_sent(partition, record["partition"])
                self.producer.produce(self.repartition_topic, **record, on_offset=acked)
            self.metrics.forwarded.inc(len(foreign))
            self.totals.forwarded += len(foreign)
        self._account(step)
        late = step.late
        if len(late):
            self.metrics.late.inc(len(late))
            self.totals.late += len(late)
            if self.settings.late_policy == "deadletter":
                for key, value in late_records(
                    topic, partition, late, self.series, self.window.resolution_ms, self.stage_name
                ):
                    self.producer.produce(self.settings.deadletter_topic, value, key)
                self.metrics.deadletter.labels("late").inc(len(late))
        self._emit(step.rollups, received_at)
        self._send_watermark(partition, owned.state)

    def _account(self, step: StepResult) -> None:
        self.metrics.aggregated.inc(step.accepted)
        self.totals.aggregated += step.accepted
        self.metrics.replayed.inc(step.already_emitted)

    def _quiet(
        self,
        consumer: Consumer,
        partition: int,
        owned: OwnedPartition[PartitionAggregator],
        now: float,
    ) -> bool:
        if super()._quiet(consumer, partition, owned, now):
            return True
        # A partition with no input of its own has no clock to wait for: it follows the other
        # partitions' watermarks at once rather than holding their windows for idle_timeout.
        # Its end comes from the fetch cache, or from the broker itself while the cache knows
        # nothing yet (before a first fetch: then at most once a second).
        if owned.received or self.input_partitions == 1:
            return False
        tp = TopicPartition(self.settings.input_topic, partition)
        _, high = consumer.get_watermark_offsets(tp, cached=True)
        if high is None or high < 0:
            if now - owned.checked_empty_at < 1.0:
                return False
            owned.checked_empty_at = now
            end = broker_end(consumer, tp, timeout=5)
            return end is not None and 0 <= end <= owned.state.next_offset
        return 0 <= high <= owned.state.next_offset

    def _after_idle_advance(
        self, partition: int, owned: OwnedPartition[PartitionAggregator]
    ) -> None:
        self._send_watermark(partition, owned.state)

    def _send_watermark(self, partition: int, state: PartitionAggregator) -> None:
        """Tell every other partition how far this one's clock has come, once it passes a
        window boundary (all an owner needs to know). Produced after this batch's forwards by
        the same idempotent producer, so it reaches each owner after them."""
        if self.input_partitions == 1:
            return
        watermark = state.source_watermark
        boundary = watermark // self.window.resolution_ms
        if boundary <= self._sent_watermark.get(partition, NO_BOUNDARY):
            return
        self._sent_watermark[partition] = boundary
        topic = self.repartition_topic
        for record in watermark_messages(partition, watermark, self.input_partitions):
            acked = self.local_watermarks.watermark_sent(partition, record["partition"])
            self.producer.produce(topic, **record, on_offset=acked)
        self._hand_over(partition, watermark)

    def _hand_over(self, source: int, watermark: int) -> None:
        """Give the source's watermark at once to the partitions owned here that have read all
        it sent them (kafka/local_watermarks.py): their windows need not wait for the record."""
        for owner, owned in self.owned.items():
            state = owned.state
            if self.local_watermarks.may_hand_over(source, owner, state.forwarded_next_offset):
                self.metrics.watermarks_handed_over.inc()
                self._emit(state.take_local_watermark(source, watermark))

    # -- samples and watermarks forwarded by the other partitions ---------------------------

    def _process_side(
        self,
        partition: int,
        owned: OwnedPartition[PartitionAggregator],
        batch: list[Message],
        received_at: float,
    ) -> None:
        forwards = self.forwards[partition]
        parts: list[SampleColumns] = []
        marks: list[tuple[int, int, int]] = []
        unexpected: list[Reject] = []
        for msg in batch:
            offset = cast(int, msg.offset())
            kind, parsed = parse_repartition_headers(msg.headers())
            if kind == "watermark":
                source, watermark = parsed
                marks.append((offset, source, watermark))
                continue
            if kind == "samples":
                try:
                    got = decode_forward(msg.value(), self.series)
                except ValueError:
                    pass
                else:
                    fresh = forwards.fresh(offset, parsed[0], got.source_offset, got.source_index)
                    if not fresh.all():
                        self.metrics.duplicate_forwards.inc(int((~fresh).sum()))
                    if fresh.any():
                        at = np.full(int(fresh.sum()), offset, np.int64)
                        parts.append(
                            SampleColumns(
                                got.series[fresh],
                                got.ts[fresh],
                                got.value[fresh],
                                got.instance[fresh],
                                at,
                                got.source_index[fresh],
                            )
                        )
                    continue
            unexpected.append(unexpected_record(offset, msg.value()))
        self._dead_letter_side(partition, unexpected)
        end_offset = cast(int, batch[-1].offset()) + 1
        step = owned.state.process_forwarded(SampleColumns.concat(parts), marks, end_offset)
        self._account(step)
        self._emit(step.rollups, received_at)

    def _dead_letter_side(self, partition: int, rejects: list[Reject]) -> None:
        if not rejects:
            return
        topic = self.repartition_topic
        for key, value in reject_records(topic, partition, rejects, self.stage_name):
            self.producer.produce(self.settings.deadletter_topic, value, key)
        for r in rejects:
            self.metrics.deadletter.labels(r.reason.value).inc(r.samples)
            self.totals.deadlettered += r.samples
