"""The rollup worker: a consumer-group member turning metrics.raw into base-resolution rollups.

Per batch: decode and validate (bad input → dead-letter topic), forward samples that belong to
another partition, aggregate the rest per input partition, produce closed windows. Commits,
checkpoints, idle partitions and rebalances are the shared stage loop's (kafka/stage.py): a crash
at any point replays from the last checkpoint and re-emits byte-identical rollups (DESIGN.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import methodcaller
from typing import cast

import numpy as np
from confluent_kafka import Consumer, Message

from pipeline.core.aggregator import PartitionAggregator
from pipeline.core.cardinality import CardinalityGuard
from pipeline.core.checkpoint import Checkpoint
from pipeline.core.decode import Decoder
from pipeline.core.series import SeriesTable
from pipeline.kafka.deadletter import late_records, reject_records
from pipeline.kafka.forwarding import ForwardDedup, forward_messages, parse_forward_header
from pipeline.kafka.partitioner import OwnerPartitions
from pipeline.kafka.stage import OwnedPartition, PartitionedStage
from pipeline.observability import Health, WorkerMetrics
from pipeline.settings import WorkerSettings

_VALUE = methodcaller("value")
_OFFSET = methodcaller("offset")
_TIMESTAMP = methodcaller("timestamp")
_HEADERS = methodcaller("headers")


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

    def __init__(
        self,
        settings: WorkerSettings,
        metrics: WorkerMetrics | None = None,
        health: Health | None = None,
    ) -> None:
        super().__init__(settings, metrics, health)
        self.window = settings.window()
        self.digest = settings.digest()
        self.series = SeriesTable()
        self.decoder = Decoder(self.series, settings.limits())
        self.cardinality = CardinalityGuard(
            self.series,
            settings.max_series,
            settings.max_series_per_metric,
            settings.seconds("series_idle_timeout"),
            overflow_counter=self.metrics.series_overflow,
            forgotten_counter=self.metrics.series_forgotten,
        )
        self.forwards: dict[int, ForwardDedup] = {}
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

    def _new_state(self, partition: int) -> PartitionAggregator:
        state = PartitionAggregator(
            self.settings.input_topic, partition, self.series, self.window, self.digest
        )
        state.admission = self.cardinality.admission(self.window.resolution_ms)
        return state

    def _restore_extra(self, partition: int, checkpoint: Checkpoint | None) -> None:
        stored = None if checkpoint is None else checkpoint.extra.get("forwarded")
        self.forwards[partition] = ForwardDedup(stored)

    def _checkpoint_extra(self, partition: int, checkpoint: Checkpoint) -> None:
        checkpoint.extra["forwarded"] = self.forwards[partition].fold(checkpoint.offset)

    def _handle(self, messages: list[Message], received_at: float) -> None:
        samples_before = self.totals.samples_in
        super()._handle(messages, received_at)
        self._adapt_batch(len(messages), self.totals.samples_in - samples_before)
        self.metrics.active_series.set(len(self.series))

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

    def _process_partition(
        self,
        partition: int,
        owned: OwnedPartition[PartitionAggregator],
        batch: list[Message],
        received_at: float,
    ) -> None:
        topic = self.settings.input_topic
        # C-level maps: this runs once per record at up to a million records a second.
        values: list[bytes | None] = list(map(_VALUE, batch))
        offsets: list[int] = list(map(_OFFSET, batch))
        times = [ts if kind else -1 for kind, ts in map(_TIMESTAMP, batch)]
        forwarded_offsets: list[int] = []
        if any(map(_HEADERS, batch)):
            values, offsets, times, forwarded_offsets = self._accept_forwards(
                self.forwards[partition], batch, values, offsets, times
            )
        end_offset = cast(int, batch[-1].offset()) + 1

        decoded = self.decoder.decode_lists(values, offsets, times)
        cols = decoded.columns
        rejected = sum(r.samples for r in decoded.rejects)
        self.metrics.samples.inc(len(cols) + rejected)
        self.totals.samples_in += len(cols) + rejected
        self.totals.deadlettered += rejected
        for key, value in reject_records(topic, partition, decoded.rejects, self.stage_name):
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

        step = owned.state.process(cols, end_offset)
        self.metrics.aggregated.inc(step.accepted)
        self.totals.aggregated += step.accepted
        self.metrics.replayed.inc(step.already_emitted)
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

    def _accept_forwards(
        self,
        forwards: ForwardDedup,
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
                if not forwards.accept(offset, *source):
                    self.metrics.duplicate_forwards.inc()
                    continue
                forwarded.append(offset)
            keep_values.append(value)
            keep_offsets.append(offset)
            keep_times.append(ts)
        return keep_values, keep_offsets, keep_times, forwarded
