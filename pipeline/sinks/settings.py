"""Settings every sink process shares: which rollup topics, batching, retries (precedence as in
pipeline/common_settings.py: flags > METRICS_PIPELINE_* env > YAML > defaults). Each sink
subclasses this."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, field_validator, model_validator

from pipeline.common_settings import GroupMemberSettings
from pipeline.setting_types import Duration, duration
from pipeline.store import DEFAULT_STORE_PATH


class SinkSettings(GroupMemberSettings):
    """The sink runner: a consumer-group member that stores rollup topics through one sink."""

    group_id: str = "metrics-pipeline-sink"
    topics: list[str] = Field(
        default_factory=list,
        description="Rollup topics to store; default: the first tier's (metrics.rollups.10s).",
    )
    batch_records: int = Field(5_000, ge=1, description="Most rollups per sink write.")
    batch_interval: Duration = Field(
        duration("1s"), description="Write a partial batch after this long."
    )
    retry_initial: Duration = Field(
        duration("200ms"), description="First back-off after a retryable failure."
    )
    retry_max: Duration = Field(
        duration("30s"), description="Back-off cap while the store stays unavailable."
    )

    @field_validator("topics")
    @classmethod
    def _topics(cls, value: list[str]) -> list[str]:
        return [t.strip() for t in value if t.strip()]

    @model_validator(mode="after")
    def _named_by_the_topology(self) -> Self:
        if not self.topics:
            if "topics" in self.model_fields_set:
                raise ValueError("topics: name at least one rollup topic")
            self.topics = self.default_topics()
        return self

    def default_topics(self) -> list[str]:
        return self.topology.tiers()[:1]


class LocalSinkSettings(SinkSettings):
    """`sink local`: every tier into the embedded Parquet store (pipeline/store)."""

    group_id: str = "metrics-pipeline-local-store"
    topics: list[str] = Field(
        default_factory=list, description="Rollup topics to store; default: every tier's."
    )
    path: Path = Field(DEFAULT_STORE_PATH, description="Root directory of the store.")
    compact_after: int = Field(
        64, ge=0, description="Merge a partition's batch files once it holds this many; 0: never."
    )

    def default_topics(self) -> list[str]:
        return self.topology.tiers()
