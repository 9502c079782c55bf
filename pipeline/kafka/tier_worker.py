"""The tier worker: one rollup topic in (e.g. metrics.rollups.10s), the next resolution out.

Same guarantees as the rollup worker, from the same loop (kafka/stage.py): replay from the
checkpoint, keyed idempotent output, commits after outputs. Unreadable rollups and late ones go
to the dead-letter topic; duplicates and re-emissions of the stage below are merged once.
"""

from __future__ import annotations

from typing import cast

from confluent_kafka import Message

from pipeline.core.decode import Reject
from pipeline.core.reasons import Reason
from pipeline.core.rollup_wire import RollupReject, WireRollup, decode_rollup
from pipeline.core.tier import TierAggregator
from pipeline.kafka.deadletter import EXCERPT_CHARS, reject_records
from pipeline.kafka.stage import OwnedPartition, PartitionedStage
from pipeline.observability import Health, TierMetrics
from pipeline.settings import TierSettings


class TierWorker(PartitionedStage[TierAggregator]):
    stage_name = "tier"
    settings: TierSettings
    metrics: TierMetrics

    def __init__(
        self,
        settings: TierSettings,
        metrics: TierMetrics | None = None,
        health: Health | None = None,
    ) -> None:
        super().__init__(settings, metrics or TierMetrics(), health)
        self.tier = settings.tier()
        self.digest = settings.digest()
        self.late_samples = 0  # in child rollups dead-lettered as late

    def _new_state(self, partition: int) -> TierAggregator:
        return TierAggregator(self.settings.source_topic, partition, self.tier, self.digest)

    def _process_partition(
        self,
        partition: int,
        owned: OwnedPartition[TierAggregator],
        batch: list[Message],
        received_at: float,
    ) -> None:
        children: list[tuple[int, WireRollup]] = []
        rejects: list[Reject] = []
        raw_of: dict[int, bytes] = {}
        for msg in batch:
            offset = cast(int, msg.offset())
            raw = msg.value()
            try:
                children.append((offset, decode_rollup(raw, self.tier.input_resolution_ms)))
                raw_of[offset] = raw or b""
            except RollupReject as exc:
                rejects.append(Reject(offset, -1, exc.reason, exc.detail, (raw or b"")[:2048]))
        end_offset = cast(int, batch[-1].offset()) + 1
        step = owned.state.process(children, end_offset)
        for offset, child in step.late:
            self.late_samples += child.count
            rejects.append(
                Reject(
                    offset,
                    -1,
                    Reason.LATE,
                    f"its {self.settings.resolution} window had closed before it arrived",
                    raw_of[offset][:EXCERPT_CHARS],
                    child.count,
                )
            )
        topic = self.settings.source_topic
        for key, value in reject_records(topic, partition, rejects, self.stage_name):
            self.producer.produce(self.settings.deadletter_topic, value, key)
        for r in rejects:
            self.metrics.deadletter.labels(r.reason.value).inc(r.samples)
        outcomes = self.metrics.children
        outcomes.labels("merged").inc(step.merged)
        outcomes.labels("duplicate").inc(step.duplicates)
        outcomes.labels("reemitted").inc(step.reemitted)
        outcomes.labels("replayed").inc(step.already_emitted)
        outcomes.labels("late").inc(len(step.late))
        outcomes.labels("invalid").inc(len(rejects) - len(step.late))
        self._emit(step.rollups, received_at)
