"""The detector's settings and the small records it passes around."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.core.detect.drift import DriftConfig
from pipeline.core.detect.events import AnomalyRecord
from pipeline.core.detect.models import ModelConfig
from pipeline.core.detect.novelty import NoveltyConfig
from pipeline.core.rollup_wire import WireRollup

NO_TIME = -(2**62)
#: Which way a statistic may fire: (up, down by every test, down by the CUSUM alone).
#: "up+drift" (the mean's default): a drop fires only as a persistent shift (drift.py:
#: windows of at least `min_count` samples, deviating on average), not on one window or an
#: onset — a latency's mean dips on a window of a handful of samples, and those dips must not
#: fire; a drop that lasts must, and must not become the baseline (its return would fire).
#: p99 stays "up": its CUSUM down fired after slow drifts (docs/detection.md).
DIRECTION_MODES: dict[str, tuple[bool, bool, bool]] = {
    "up": (True, False, False),
    "down": (False, True, True),
    "both": (True, True, True),
    "up+drift": (True, False, True),
}
#: Statistics of traffic volume; the others (percentiles, mean, max, min) describe the values,
#: which move together when their distribution shifts.
VOLUME_STATISTICS = frozenset({"rate", "count", "sum"})
DEFAULT_DIRECTIONS = {"rate": "both", "count": "both", "sum": "both", "min": "both",
                      "mean": "up+drift"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class DetectConfig:
    resolution_ms: int = 60_000
    allowed_lateness_ms: int = 60_000
    statistics: tuple[str, ...] = ("p99", "mean", "rate")
    statistics_by_name: dict[str, tuple[str, ...]] = field(default_factory=dict)
    directions: dict[str, str] = field(default_factory=dict)  # statistic → DIRECTION_MODES
    model: ModelConfig = field(default_factory=ModelConfig)
    novelty: NoveltyConfig = field(default_factory=NoveltyConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    warmup: int = 30  # scored windows with a value before a track can fire
    fire_k: int = 2
    fire_n: int = 3
    resolve_m: int = 3
    resolve_score: float = 0.5  # a window is back to normal below this score
    critical_score: float = 2.0
    absence_windows: int = 3  # the least gap that can fire an absence
    absence_p: float = 1e-5  # chance of so long a gap by the series' own arrival rate
    rebaseline_windows: int = 180  # an episode this long is a level shift (0: never)
    forget_windows: int = 1_440  # stop tracking (and end its episodes) after this many gaps

    def __post_init__(self) -> None:
        if not 1 <= self.fire_k <= self.fire_n or self.resolve_m < 1:
            raise ValueError("need 1 <= fire_k <= fire_n and resolve_m >= 1")
        if self.warmup > self.model.history:
            raise ValueError("warmup cannot exceed the robust history")
        if not 0.0 < self.absence_p < 1.0:
            raise ValueError("absence_p must be in (0, 1)")
        wrong = {k: v for k, v in self.directions.items() if v not in DIRECTION_MODES}
        if wrong:
            raise ValueError(f"directions are {', '.join(DIRECTION_MODES)}: {wrong}")

    def statistics_of(self, name: str) -> tuple[str, ...]:
        return self.statistics_by_name.get(name, self.statistics)

    def direction_of(self, statistic: str) -> str:
        return self.directions.get(statistic, DEFAULT_DIRECTIONS.get(statistic, "up"))

    def may_fire(self, statistic: str) -> tuple[bool, bool, bool]:
        """(up, down by every test, down by the CUSUM alone)."""
        return DIRECTION_MODES[self.direction_of(statistic)]

    def history_windows(self) -> int:
        """Windows a replay must read before the first window it scores."""
        seasonal = 0
        if self.model.model != "robust":
            seasonal = (self.model.seasonal_days + 1) * 86_400_000 // self.resolution_ms
        return max(self.model.history, seasonal) + self.fire_n


@dataclass(slots=True)
class SeriesInfo:
    series: dict[str, Any]
    routing_key: str
    last_seen: int  # window index
    seen_windows: int = 0
    slot: int = -1  # row of the presence ring


@dataclass(slots=True)
class DetectStep:
    events: list[AnomalyRecord] = field(default_factory=list)
    late: list[tuple[int, WireRollup]] = field(default_factory=list)
