"""The detector worker: a rollup tier in (metrics.rollups.1m), anomaly episodes out.

Same stage and guarantees as the others (kafka/stage.py): replay from the checkpoint —
here from the start of the history the baselines need — and keyed, idempotent output
(`<episode_id>@<state>`), so a restart emits the same episodes with the same ids.
"""

from __future__ import annotations

from confluent_kafka import Message

from pipeline.core.detect.detector import PartitionDetector
from pipeline.kafka.rollup_input import RollupBatch
from pipeline.kafka.stage import OwnedPartition, PartitionedStage
from pipeline.observability import DetectMetrics, Health
from pipeline.settings import DetectSettings


class DetectWorker(PartitionedStage[PartitionDetector]):
    stage_name = "detect"
    settings: DetectSettings
    metrics: DetectMetrics

    def __init__(
        self,
        settings: DetectSettings,
        metrics: DetectMetrics | None = None,
        health: Health | None = None,
    ) -> None:
        super().__init__(settings, metrics or DetectMetrics(), health)
        self.config = settings.detect()

    def _new_state(self, partition: int) -> PartitionDetector:
        return PartitionDetector(self.settings.source_topic, partition, self.config)

    def _process_partition(
        self,
        partition: int,
        owned: OwnedPartition[PartitionDetector],
        batch: list[Message],
        received_at: float,
    ) -> None:
        records = RollupBatch(batch, self.config.resolution_ms)
        step = owned.state.process(records.rollups, records.end_offset)
        records.reject_late(step.late, "its window had been scored before it arrived")
        self._dead_letter(partition, records.rejects)
        self._emit(step.events, received_at)
