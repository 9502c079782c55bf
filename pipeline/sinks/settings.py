"""Settings every sink process shares: which rollup topics, batching, retries (pipeline/settings.py
precedence: flags > METRICS_PIPELINE_* env > YAML > defaults). Each sink subclasses this."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from pipeline.common_settings import GroupMemberSettings
from pipeline.setting_types import Duration, duration
from pipeline.store import DEFAULT_STORE_PATH


class SinkSettings(GroupMemberSettings):
    """The sink runner: a consumer-group member that stores rollup topics through one sink."""

    group_id: str = "metrics-pipeline-sink"
    topics: list[str] = Field(
        default_factory=lambda: ["metrics.rollups.10s"], description="Rollup topics to store."
    )
    deadletter_topic: str = "metrics.deadletter"
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
        topics = [t.strip() for t in value if t.strip()]
        if not topics:
            raise ValueError("name at least one rollup topic")
        return topics


class LocalSinkSettings(SinkSettings):
    """`sink local`: every tier into the embedded Parquet store (pipeline/store)."""

    group_id: str = "metrics-pipeline-local-store"
    topics: list[str] = Field(
        default_factory=lambda: [
            "metrics.rollups.10s",
            "metrics.rollups.1m",
            "metrics.rollups.5m",
            "metrics.rollups.1h",
        ],
        description="Rollup topics to store.",
    )
    path: Path = Field(DEFAULT_STORE_PATH, description="Root directory of the store.")
    compact_after: int = Field(
        64, ge=0, description="Merge a partition's batch files once it holds this many; 0: never."
    )
