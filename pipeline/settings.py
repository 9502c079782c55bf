"""Settings of each Kafka stage process: the rollup worker, the tiers and the detector.

The blocks they share and how settings are loaded (flags > METRICS_PIPELINE_* env > YAML >
defaults) are in pipeline/common_settings.py; duration fields in pipeline/setting_types.py.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from pipeline.common_settings import GroupMemberSettings
from pipeline.core.aggregator import WindowConfig
from pipeline.core.clock import ClockConfig
from pipeline.core.decode import DecodeLimits
from pipeline.core.detect.config import DIRECTION_MODES
from pipeline.core.detect.detector import DetectConfig
from pipeline.core.detect.drift import DriftConfig
from pipeline.core.detect.models import ModelConfig
from pipeline.core.detect.novelty import NoveltyConfig
from pipeline.core.digest import DigestConfig, percentile_name
from pipeline.core.durations import format_duration
from pipeline.core.tier import TierConfig
from pipeline.errors import ConfigError
from pipeline.setting_types import Duration, DurationOrOff, OptionalDuration, duration


class StageSettings(GroupMemberSettings):
    """What every windowed stage (rollup worker, tier) shares: topics, commits, idleness."""

    group_id: str = "metrics-pipeline-rollup"
    resolution: Duration = duration("10s")
    idle_timeout: Duration = duration("30s")
    commit_interval: Duration = duration("1s")
    batch_size: int = Field(10_000, ge=1, description="Most records per consume().")
    percentiles: list[float] = Field(default_factory=lambda: [0.5, 0.9, 0.95, 0.99, 0.999])
    compression: int = Field(200, ge=20, le=5000)

    @field_validator("percentiles")
    @classmethod
    def _percentiles(cls, value: list[float]) -> list[float]:
        if not value or any(not 0.0 < q < 1.0 for q in value):
            raise ValueError("percentiles must be fractions strictly between 0 and 1")
        if len({percentile_name(q) for q in value}) != len(value):
            raise ValueError("percentiles must be distinct")
        return sorted(value)

    @property
    def output_topic(self) -> str:
        """The topic this stage writes: its resolution's rollups."""
        return self.topology.rollups(self.resolution)

    @property
    def source_topic(self) -> str:
        """The topic this stage consumes."""
        raise NotImplementedError

    @property
    def consumer_group(self) -> str:
        return self.group_id


class WorkerSettings(StageSettings):
    """The rollup worker: raw samples in, base-resolution rollups out."""

    allowed_lateness: Duration = duration("5s")
    counter_staleness: Duration = duration("10m")
    raw_limit: int = Field(1024, ge=0, description="Raw values kept per window before folding.")
    late_policy: Literal["deadletter", "count"] = "deadletter"
    max_message_bytes: int = Field(1_048_576, ge=1024)
    max_labels: int = Field(16, ge=0)
    max_age: Duration = duration("6h")
    max_future: Duration = duration("10m")
    batch_samples: int = Field(
        20_000, ge=100, description="Aim for about this many samples per processed batch."
    )
    # A partition whose clock runs further ahead of the watermark its windows close at (the
    # slowest partition's) pauses its input until the others catch up ("0s": never, the
    # default: each pause drops the partition's prefetched records, which costs ~40 % more CPU
    # per sample in a catch-up; set it where memory during a catch-up matters more).
    watermark_alignment: DurationOrOff = duration("0s")
    # A partition's clock moves at most this far in one message; further only once confirmed
    # by clock_quorum series, or by clock_streak messages in a row beyond it ("0s": no limit).
    clock_jump: DurationOrOff = duration("1m")
    clock_quorum: int = Field(2, ge=1)
    clock_streak: int = Field(20, ge=1)
    max_series: int = Field(
        200_000,
        ge=0,
        description="Series per window aggregated on their own by a worker owning every input "
        "partition (split evenly over the partitions); later new series of a window go to "
        "their metric's overflow series. 0: no limit.",
    )
    max_series_per_metric: int = Field(
        20_000,
        ge=0,
        description="Series per window of one metric (service, region, name) in one input "
        "partition; beyond it, the metric's overflow series. 0: no limit.",
    )
    series_idle_timeout: Duration = Field(
        duration("5m"),
        description="A series without samples, open windows or counter state for this "
        "long is forgotten (its memory is returned).",
    )

    @property
    def source_topic(self) -> str:
        return self.topology.raw

    def window(self) -> WindowConfig:
        resolution = self.resolution
        if resolution < 1000 or resolution % 1000:
            raise ConfigError(
                f"resolution must be a whole number of seconds, not {format_duration(resolution)}"
            )
        return WindowConfig(resolution, self.allowed_lateness, self.counter_staleness)

    def digest(self) -> DigestConfig:
        return DigestConfig(tuple(self.percentiles), self.compression, self.raw_limit)

    def clock(self) -> ClockConfig:
        return ClockConfig(self.clock_jump, self.clock_quorum, self.clock_streak)

    def limits(self) -> DecodeLimits:
        return DecodeLimits(
            self.max_message_bytes,
            self.max_labels,
            256,
            self.max_age,
            self.max_future,
        )


class TierSettings(StageSettings):
    """A tier worker: rollups of `input_resolution` in, rollups of `resolution` out.

    `metrics-pipeline tier` runs every step of `chain` (10s → 1m → 5m → 1h by default), each
    its own consumer group; `--from/--to` runs one step, to scale steps separately."""

    group_id: str = "metrics-pipeline-tier"  # one group per step: "<group_id>-<resolution>"
    input_resolution: Duration = duration("10s")
    resolution: Duration = duration("1m")
    allowed_lateness: OptionalDuration = Field(
        None,
        description="How far behind the latest child window a child may arrive; "
        "default: one input window.",
    )
    # Longer than the rollup worker's 30 s: the last base windows of a quiet stream arrive
    # after that worker's own idle timeout.
    idle_timeout: Duration = duration("1m")

    @property
    def source_topic(self) -> str:
        return self.topology.rollups(self.input_resolution)

    @property
    def consumer_group(self) -> str:
        return f"{self.group_id}-{format_duration(self.resolution)}"

    def tier(self) -> TierConfig:
        finer, coarser = self.input_resolution, self.resolution
        if coarser <= finer or coarser % finer:
            raise ConfigError(
                f"tier resolution {format_duration(coarser)} must be a larger multiple of "
                f"{format_duration(finer)}"
            )
        lateness = finer if self.allowed_lateness is None else self.allowed_lateness
        return TierConfig(finer, coarser, lateness)

    def digest(self) -> DigestConfig:
        return DigestConfig(tuple(self.percentiles), self.compression)

    def steps(self) -> list[TierSettings]:
        """One settings object per step of the chain. Each step's idle timeout is twice the one
        before it: when a stream goes quiet, the step below must flush its last windows (after
        its own idle timeout) before this step closes the windows they belong to."""
        return [
            self.model_copy(
                update={
                    "input_resolution": finer,
                    "resolution": coarser,
                    "idle_timeout": self.idle_timeout * 2**step,
                }
            )
            for step, (finer, coarser) in enumerate(pairwise(self.chain))
        ]


class DetectSettings(StageSettings):
    """The anomaly detector: one rollup tier in, anomaly episodes out (the anomaly topic)."""

    group_id: str = "metrics-pipeline-detect"
    resolution: Duration = duration("1m")  # the tier it reads
    allowed_lateness: OptionalDuration = Field(None, description="Default: one window.")
    statistics: list[str] = Field(default_factory=lambda: list(DetectConfig().statistics))
    statistics_by_name: dict[str, list[str]] = Field(
        default_factory=dict, description="Metric name → statistics, instead of `statistics`."
    )
    directions: dict[str, str] = Field(
        default_factory=dict,
        description="Statistic → up | down | both | up+drift (a drop only as a persistent "
        "shift; default for mean; rate both).",
    )
    model: Literal["auto", "robust", "seasonal"] = "auto"
    history: int = Field(60, ge=5, description="Windows of the robust baseline.")
    threshold: float = Field(ModelConfig().threshold, gt=0, description="Sigmas at score 1.0.")
    min_scale: float = Field(0.03, gt=0, description="Scale floor (log scale: ~relative).")
    seasonal_days: int = Field(7, ge=1)
    min_seasonal_days: int = Field(2, ge=1)
    warmup: int = Field(30, ge=1)
    fire_k: int = Field(2, ge=1)
    fire_n: int = Field(3, ge=1)
    resolve_m: int = Field(3, ge=1)
    absence_windows: int = Field(DetectConfig().absence_windows, ge=1)
    absence_p: float = Field(DetectConfig().absence_p, gt=0, lt=1)
    rebaseline_windows: int = Field(DetectConfig().rebaseline_windows, ge=0)
    forget_windows: int = Field(1_440, ge=1)
    onsets: bool = Field(True, description="Fire at once on a value new to the track's past.")
    envelope_margin: float = Field(NoveltyConfig().envelope_margin, gt=0)
    likelihood_sigmas: float = Field(NoveltyConfig().likelihood_sigmas, gt=1)
    onset_warmup: int = Field(NoveltyConfig().warmup, ge=2)
    onset_envelope_warmup: int = Field(NoveltyConfig().envelope_warmup, ge=2)
    onset_quiet: int = Field(NoveltyConfig().quiet_windows, ge=0)
    drift: bool = Field(
        True,
        description="Fire on, and hold open, a small shift that persists (a CUSUM of each "
        "window's deviation in its band; the band must be learnt from a long enough history).",
    )
    idle_timeout: Duration = duration("5m")
    commit_interval: Duration = duration("5s")

    @field_validator("directions")
    @classmethod
    def _directions(cls, value: dict[str, str]) -> dict[str, str]:
        wrong = {k: v for k, v in value.items() if v not in DIRECTION_MODES}
        if wrong:
            raise ValueError(f"directions are {', '.join(DIRECTION_MODES)}: {wrong}")
        return value

    @property
    def source_topic(self) -> str:
        return self.topology.rollups(self.resolution)

    @property
    def output_topic(self) -> str:
        return self.topology.anomalies

    def detect(self) -> DetectConfig:
        resolution = self.resolution
        lateness = resolution if self.allowed_lateness is None else self.allowed_lateness
        try:
            return DetectConfig(
                resolution_ms=resolution,
                allowed_lateness_ms=lateness,
                statistics=tuple(self.statistics),
                statistics_by_name={k: tuple(v) for k, v in self.statistics_by_name.items()},
                directions=dict(self.directions),
                model=ModelConfig(
                    model=self.model,
                    history=self.history,
                    threshold=self.threshold,
                    min_scale=self.min_scale,
                    seasonal_days=self.seasonal_days,
                    min_seasonal_days=self.min_seasonal_days,
                ),
                warmup=self.warmup,
                fire_k=self.fire_k,
                fire_n=self.fire_n,
                resolve_m=self.resolve_m,
                absence_windows=self.absence_windows,
                absence_p=self.absence_p,
                rebaseline_windows=self.rebaseline_windows,
                forget_windows=self.forget_windows,
                novelty=NoveltyConfig(
                    enabled=self.onsets,
                    envelope_margin=self.envelope_margin,
                    likelihood_sigmas=self.likelihood_sigmas,
                    warmup=self.onset_warmup,
                    envelope_warmup=self.onset_envelope_warmup,
                    quiet_windows=self.onset_quiet,
                ),
                drift=DriftConfig(enabled=self.drift),
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


class TopologySettings(WorkerSettings):
    """What `metrics-pipeline topics` reads: the worker's settings (its group names the
    repartition topic). Other keys are ignored, so any process's settings file can be read."""

    model_config = SettingsConfigDict(env_prefix="METRICS_PIPELINE_", extra="ignore")
