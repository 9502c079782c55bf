"""One rollup partition's tier state machine: finer rollups in, coarser rollups out, replay-safe.

The same event-time rules as the base tier (core/aggregator.py), one level up. A child rollup
(e.g. 10 s) belongs to the coarse window (e.g. 1 m) containing its window_start. The watermark
is the latest child window_start seen before a record minus the allowed lateness; a coarse
window closes once the watermark reaches its end. A producer emits its windows in time order, so
a lateness of one child window is plenty for one producer per rollup partition, which is what
the base worker's routing gives (same partition count, same key).

Each child is judged against the watermark as it stood before its record:
- late: its coarse window had closed. If an identical key was merged into that window it is a
  re-emission of the stage below (after its own replay) and only counted; otherwise it is late;
- already emitted: after a restore, its coarse window was emitted before the crash: skipped;
- duplicate: its key is already in its open coarse window (merged once): skipped;
- otherwise merged: count and sum add (sum exactly: math.fsum over the children's sums),
  min/max take the extremes, digests merge (core/merge.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import numpy as np

from pipeline.core.checkpoint import Checkpoint
from pipeline.core.clock import PartitionClock
from pipeline.core.digest import DigestConfig
from pipeline.core.durations import format_duration
from pipeline.core.merge import merge_digests
from pipeline.core.rollup import Rollup, rollup_key
from pipeline.core.rollup_wire import WireRollup, series_dict

_MEAN = attrgetter("m")
_WEIGHT = attrgetter("c")
_RECENT_CLOSED = 2  # coarse windows whose child keys are kept to tell re-emissions from late


@dataclass(frozen=True, slots=True)
class TierConfig:
    """input_resolution_ms: the child rollups' resolution; resolution_ms: this tier's, a multiple
    of it. allowed_lateness_ms: how far behind the latest child window_start a child may be."""

    input_resolution_ms: int = 10_000
    resolution_ms: int = 60_000
    allowed_lateness_ms: int = 10_000


@dataclass(slots=True)
class CoarseWindow:
    series: dict[str, Any]
    series_key: str
    routing_key: str
    start: int
    has_digest: bool
    first_offset: int
    max_ts_before: int
    children: set[int] = field(default_factory=set)
    count: int = 0
    sums: list[float] = field(default_factory=list)
    low: float = math.inf
    high: float = -math.inf
    means: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    all_exact: bool = True


@dataclass(slots=True)
class TierStep:
    rollups: list[Rollup] = field(default_factory=list)
    late: list[tuple[int, WireRollup]] = field(default_factory=list)  # (offset, child)
    merged: int = 0
    duplicates: int = 0
    reemitted: int = 0
    already_emitted: int = 0


class TierAggregator:
    def __init__(
        self, topic: str, partition: int, config: TierConfig, digest: DigestConfig
    ) -> None:
        if config.resolution_ms % config.input_resolution_ms:
            raise ValueError("a tier's resolution must be a multiple of its input's")
        self.topic = topic
        self.partition = partition
        self.config = config
        self.digest = digest
        # Its event time is the latest child window_start seen.
        self.clock = PartitionClock(lateness_ms=config.allowed_lateness_ms)
        self.open: dict[tuple[str, int], CoarseWindow] = {}
        self._by_end: dict[int, list[CoarseWindow]] = {}
        self._recent_closed: dict[int, set[tuple[str, int]]] = {}
        self._series: dict[str, dict[str, Any]] = {}  # series_key → its rollup `series` object
        self._resolution_name = format_duration(config.resolution_ms)
        self._percentile_names = digest.percentile_names()

    @property
    def next_offset(self) -> int:
        return self.clock.next_offset

    @property
    def watermark(self) -> int:
        return self.clock.watermark

    @property
    def open_windows(self) -> int:
        return len(self.open)

    # -- input ------------------------------------------------------------------------------

    def process(self, children: list[tuple[int, WireRollup]], end_offset: int) -> TierStep:
        """Merge this partition's valid child rollups, (offset, rollup) in partition order, up to
        `end_offset` (exclusive: the offset after the last record consumed, valid or not)."""
        step = TierStep()
        res = self.config.resolution_ms
        for offset, child in self.clock.records(
            children, end_offset, lambda: step.rollups.extend(self._close())
        ):
            start = child.window_start - child.window_start % res
            end = start + res
            if end <= self.watermark:
                if (child.series_key, child.window_start) in self._recent_closed.get(end, ()):
                    step.reemitted += 1
                else:
                    step.late.append((offset, child))
            elif end <= self.clock.emitted_wm:
                step.already_emitted += 1
            else:
                window = self._window_for(child, start, offset)
                if child.window_start in window.children:
                    step.duplicates += 1
                else:
                    self._merge(window, child)
                    step.merged += 1
            self.clock.observe(child.window_start)
            step.rollups.extend(self._close())
        step.rollups.extend(self._close())
        return step

    def _window_for(self, child: WireRollup, start: int, offset: int) -> CoarseWindow:
        key = (child.series_key, start)
        window = self.open.get(key)
        if window is None:
            series = self._series.get(child.series_key)
            if series is None:
                series = self._series[child.series_key] = series_dict(child.series)
            window = CoarseWindow(
                series=series,
                series_key=child.series_key,
                routing_key=f"{child.series.service}|{child.series.region}",
                start=start,
                has_digest=child.series.type != "counter",
                first_offset=offset,
                max_ts_before=self.clock.max_ts,
            )
            self.open[key] = window
            self._by_end.setdefault(start + self.config.resolution_ms, []).append(window)
        return window

    @staticmethod
    def _merge(window: CoarseWindow, child: WireRollup) -> None:
        window.children.add(child.window_start)
        window.count += child.count
        window.sums.append(child.sum)
        window.low = min(window.low, child.min)
        window.high = max(window.high, child.max)
        digest = child.digest
        if window.has_digest and digest is not None:
            window.all_exact = window.all_exact and digest.exact
            window.means.extend(map(_MEAN, digest.centroids))
            window.weights.extend(map(_WEIGHT, digest.centroids))

    # -- output -----------------------------------------------------------------------------

    def _close(self) -> list[Rollup]:
        watermark = self.watermark
        if not self.clock.emit_until(watermark):
            return []
        ends = sorted(e for e in self._by_end if e <= watermark)
        if not ends:
            return []
        closing: list[CoarseWindow] = []
        for end in ends:
            windows = sorted(self._by_end.pop(end), key=lambda w: w.series_key)
            closing.extend(windows)
            keys = self._recent_closed.setdefault(end, set())
            for w in windows:
                del self.open[(w.series_key, w.start)]
                keys.update((w.series_key, s) for s in w.children)
        for end in sorted(self._recent_closed)[:-_RECENT_CLOSED]:
            del self._recent_closed[end]
        return [self._rollup(w) for w in closing]

    def _rollup(self, w: CoarseWindow) -> Rollup:
        res = self.config.resolution_ms
        total = math.fsum(w.sums)
        percentiles: dict[str, float] = {}
        digest: dict[str, Any] | None = None
        if w.has_digest and w.means:
            values, digest = merge_digests(
                np.array(w.means), np.array(w.weights), w.all_exact, self.digest
            )
            percentiles = dict(zip(self._percentile_names, values, strict=True))
        body = {
            "series": w.series,
            "series_key": w.series_key,
            "resolution": self._resolution_name,
            "resolution_ms": res,
            "window_start": w.start,
            "window_end": w.start + res,
            "count": w.count,
            "sum": total,
            "min": w.low,
            "max": w.high,
            "mean": total / w.count,
            "rate": (w.count if w.has_digest else total) / (res / 1000.0),
            "percentiles": percentiles,
            "digest": digest,
        }
        return Rollup(rollup_key(w.series_key, res, w.start), w.routing_key, body)

    def plan_idle_advance(self) -> bool:
        """Record an advance that closes every open window (see PartitionAggregator's)."""
        if not self.open:
            return False
        return self.clock.plan_idle_advance(max(self._by_end) + self.config.allowed_lateness_ms)

    def apply_idle_advance(self) -> list[Rollup]:
        self.clock.apply_idle_advance()
        return self._close()

    # -- checkpoints ------------------------------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        """State just before the first offset a replay needs (the tier keeps no state a replay
        does not rebuild)."""
        resume = None
        if self.open:
            oldest = min(self.open.values(), key=lambda w: w.first_offset)
            resume = (oldest.first_offset, oldest.max_ts_before)
        offset, clock = self.clock.snapshot(resume)
        return Checkpoint(self.topic, self.partition, offset, clock, self._fingerprint())

    def _fingerprint(self) -> dict[str, int]:
        return {
            "input_resolution_ms": self.config.input_resolution_ms,
            "resolution_ms": self.config.resolution_ms,
            "allowed_lateness_ms": self.config.allowed_lateness_ms,
        }

    def restore(self, checkpoint: Checkpoint) -> None:
        """Start from a checkpoint: the caller then replays the partition from its offset."""
        checkpoint.require(self._fingerprint(), "input/tier resolution and lateness")
        self.clock.restore(checkpoint.offset, checkpoint.clock)
