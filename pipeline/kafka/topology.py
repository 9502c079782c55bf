"""Every topic of the pipeline, from one set of settings: what `metrics-pipeline topics` creates,
describes and checks.

Roles: ``raw`` (input), ``repartition`` (the rollup worker's forwarding topic, always as many
partitions as ``raw``: partition N of one pairs with partition N of the other), ``rollups.<res>``
(one per tier of ``chain``), ``deadletter``, ``checkpoints`` (compacted: only the latest record
per key matters) and ``anomalies``. A rollup tier works with any partition count (its consumers
route by key and the worker spreads output over whatever count it finds), so a tier created by
another process first with another count is reported, not refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from pipeline.common_settings import DEFAULT_RETENTION, FOREVER
from pipeline.core.durations import format_duration, parse_duration_ms
from pipeline.kafka.admin import TopicSpec
from pipeline.setting_types import Duration, duration
from pipeline.settings import WorkerSettings


class TopologySettings(WorkerSettings):
    """The worker's settings plus what only the whole pipeline needs: the tier chain and the
    anomaly topic. Other keys are ignored, so any process's settings file can be read."""

    model_config = SettingsConfigDict(env_prefix="METRICS_PIPELINE_", extra="ignore")

    chain: list[Duration] = Field(
        default_factory=lambda: [duration(d) for d in ("10s", "1m", "5m", "1h")]
    )
    anomaly_topic: str = "metrics.anomalies"


@dataclass(frozen=True)
class TopologyTopic:
    role: str
    spec: TopicSpec

    @property
    def exact_partitions(self) -> bool:
        """False where any partition count works (rollup tiers, dead letters, anomalies)."""
        return self.role in ("raw", "repartition", "checkpoints")


class Topology:
    """The topics of one pipeline deployment, in the order data flows through them."""

    def __init__(self, settings: TopologySettings) -> None:
        self.settings = settings
        s = settings
        raw = self._partitions("raw")
        tiers = [format_duration(r) for r in s.chain]
        entries = [
            ("raw", s.input_topic, raw),
            ("repartition", s.repartition_topic_name, raw),
            *[
                (f"rollups.{t}", s.rollup_topic_prefix + t, self._partitions(f"rollups.{t}"))
                for t in tiers
            ],
            ("deadletter", s.deadletter_topic, self._partitions("deadletter")),
            ("checkpoints", s.checkpoint_topic, self._partitions("checkpoints")),
            ("anomalies", s.anomaly_topic, self._partitions("anomalies")),
        ]
        self.topics = [
            TopologyTopic(
                role, TopicSpec(name, partitions, s.topic_replication_factor, self._config(role))
            )
            for role, name, partitions in entries
        ]

    def __iter__(self) -> Iterator[TopologyTopic]:
        return iter(self.topics)

    def specs(self) -> list[TopicSpec]:
        return [t.spec for t in self.topics]

    def _partitions(self, role: str) -> int:
        by_role = self.settings.topic_partitions_by_role
        if role.startswith("rollups.") and role not in by_role:
            role = "rollups"
        return by_role.get(role, self.settings.topic_partitions)

    def _config(self, role: str) -> dict[str, str]:
        if role == "checkpoints":
            # Only the newest checkpoint per (group, topic, partition) key is ever read.
            return {"cleanup.policy": "compact"}
        retention = self.settings.topic_retention
        chosen = retention.get(role) or retention.get(role.split(".")[0]) or DEFAULT_RETENTION
        millis = "-1" if chosen == FOREVER else str(parse_duration_ms(chosen))
        return {"cleanup.policy": "delete", "retention.ms": millis}
