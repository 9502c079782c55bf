"""The tier worker: one rollup topic in (e.g. metrics.rollups.10s), the next resolution out.

Same guarantees as the rollup worker, from the same stage (kafka/stage.py): replay from the
checkpoint, keyed idempotent output, commits after outputs. Unreadable rollups and late ones go
to the dead-letter topic; duplicates and re-emissions of the stage below are merged once.
"""

from __future__ import annotations

from confluent_kafka import Message

from pipeline.core.durations import format_duration
from pipeline.core.tier import TierAggregator
from pipeline.kafka.rollup_input import RollupBatch
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
        records = RollupBatch(batch, self.tier.input_resolution_ms)
        step = owned.state.process(records.rollups, records.end_offset)
        self.late_samples += sum(child.count for _, child in step.late)
        records.reject_late(
            step.late,
            f"its {format_duration(self.settings.resolution)} window had closed before it arrived",
        )
        rejects = records.rejects
        self._dead_letter(partition, rejects)
        outcomes = self.metrics.children
        outcomes.labels("merged").inc(step.merged)
        outcomes.labels("duplicate").inc(step.duplicates)
        outcomes.labels("reemitted").inc(step.reemitted)
        outcomes.labels("replayed").inc(step.already_emitted)
        outcomes.labels("late").inc(len(step.late))
        outcomes.labels("invalid").inc(len(rejects) - len(step.late))
        self._emit(step.rollups, received_at)
