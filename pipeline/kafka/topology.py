"""Every topic of the pipeline, named in one place: `Topology`. Each process's settings include
the same topic-name keys (`TopicNameSettings`) and derive the names they use from it; the
`metrics-pipeline topics` command creates, describes and checks the whole list (`TopicPlan`).

Roles: ``raw`` (input), ``repartition`` (the rollup worker's forwarding topic, one per consumer
group, always as many partitions as ``raw``: partition N of one pairs with partition N of the
other), ``rollups.<res>`` (one per tier of ``chain``), ``deadletter``, ``checkpoints``
(compacted: only the latest record per key matters) and ``anomalies``. A rollup tier works with
any partition count (its consumers route by key and the worker spreads output over whatever
count it finds), so a tier created by another process first with another count is reported,
not refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, field_validator

from pipeline.core.durations import format_duration, parse_duration_ms
from pipeline.kafka.admin import TopicSpec
from pipeline.setting_types import Duration, duration

if TYPE_CHECKING:
    from pipeline.settings import TopologySettings

#: Topic roles whose retention and partitions can be set (`metrics-pipeline topics create`); a
#: tier can also be named alone ("rollups.1h") to override "rollups".
ROLES = ("raw", "repartition", "rollups", "deadletter", "checkpoints", "anomalies")
DEFAULT_RETENTION = "7d"
FOREVER = "forever"
#: The rollup tiers of a default deployment, finest first (the worker writes the first).
DEFAULT_CHAIN = tuple(duration(d) for d in ("10s", "1m", "5m", "1h"))


@dataclass(frozen=True)
class Topology:
    """The names of every topic of one deployment; the only place a topic name is made."""

    raw: str = "metrics.raw"
    rollup_prefix: str = "metrics.rollups."
    deadletter: str = "metrics.deadletter"
    checkpoints: str = "metrics.checkpoints"
    anomalies: str = "metrics.anomalies"
    chain: tuple[int, ...] = DEFAULT_CHAIN
    #: A repartition topic named outright; empty: one per consumer group (`repartition`).
    repartition_override: str = ""

    def repartition(self, group_id: str) -> str:
        """The rollup worker group's forwarding topic: each group forwards by its own clocks."""
        return self.repartition_override or f"{self.raw}.{group_id}.repartition"

    def rollups(self, resolution_ms: int) -> str:
        return self.rollup_prefix + format_duration(resolution_ms)

    def tiers(self) -> list[str]:
        """The rollup topic of every tier of the chain, finest first."""
        return [self.rollups(resolution) for resolution in self.chain]


_DEFAULT = Topology()


class TopicNameSettings(BaseModel):
    """The settings keys naming the topics, the same in every process's settings, so one file
    can name them for the whole pipeline; a process reads the names it uses from `topology`."""

    input_topic: str = _DEFAULT.raw
    # Samples that landed on a partition not owning their series, and the partitions'
    # watermarks, travel here to the owner. Only the workers write it: grant producers no access.
    # Empty: "<input_topic>.<group_id>.repartition" (one per consumer group, as each group
    # forwards by its own clocks).
    repartition_topic: str = _DEFAULT.repartition_override
    rollup_topic_prefix: str = _DEFAULT.rollup_prefix
    deadletter_topic: str = _DEFAULT.deadletter
    checkpoint_topic: str = _DEFAULT.checkpoints
    anomaly_topic: str = _DEFAULT.anomalies
    chain: list[Duration] = Field(
        default_factory=lambda: list(DEFAULT_CHAIN),
        description="The rollup tiers, finest first: the worker writes the first, "
        "`metrics-pipeline tier` each next one.",
    )

    @field_validator("chain")
    @classmethod
    def _chain(cls, value: list[int]) -> list[int]:
        if len(value) < 2:
            raise ValueError("a chain needs at least two resolutions")
        for finer, coarser in pairwise(value):
            if coarser <= finer or coarser % finer:
                shown = ", ".join(format_duration(v) for v in value)
                raise ValueError(
                    f"each resolution must be a larger multiple of the one before: [{shown}]"
                )
        return value

    @property
    def topology(self) -> Topology:
        return Topology(
            raw=self.input_topic,
            rollup_prefix=self.rollup_topic_prefix,
            deadletter=self.deadletter_topic,
            checkpoints=self.checkpoint_topic,
            anomalies=self.anomaly_topic,
            chain=tuple(self.chain),
            repartition_override=self.repartition_topic,
        )

    def topic_names(self) -> dict[str, Any]:
        """These keys as settings values, to hand the same names to another process's settings."""
        return self.model_dump(include=set(TopicNameSettings.model_fields))


@dataclass(frozen=True)
class TopologyTopic:
    role: str
    spec: TopicSpec

    @property
    def exact_partitions(self) -> bool:
        """False where any partition count works (rollup tiers, dead letters, anomalies)."""
        return self.role in ("raw", "repartition", "checkpoints")


class TopicPlan:
    """The topics `metrics-pipeline topics` manages, in the order data flows through them:
    names from the settings' `Topology`, partitions, retention and replication from the rest."""

    def __init__(self, settings: TopologySettings) -> None:
        self.settings = settings
        s = settings
        names = s.topology
        raw = self._partitions("raw")
        entries = [
            ("raw", names.raw, raw),
            ("repartition", names.repartition(s.group_id), raw),
            *[
                (f"rollups.{format_duration(r)}", names.rollups(r), self._partitions_of_tier(r))
                for r in names.chain
            ],
            ("deadletter", names.deadletter, self._partitions("deadletter")),
            ("checkpoints", names.checkpoints, self._partitions("checkpoints")),
            ("anomalies", names.anomalies, self._partitions("anomalies")),
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

    def _partitions_of_tier(self, resolution_ms: int) -> int:
        return self._partitions(f"rollups.{format_duration(resolution_ms)}")

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
