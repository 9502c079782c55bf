"""One input partition's rollup state machine: samples in, closed windows out, replay-safe.

Time is event time only. A message's samples are judged against the partition's clock as it
stood before that message (largest event time of earlier messages minus the allowed lateness),
so the result depends on the partition's order alone, never on how a consumer batched it:

- late: the sample's window had already closed on this partition's clock: not aggregated;
- foreign: on time, but its series belongs to another partition: returned, to be forwarded
  (see upstream.py for how the owner keeps such samples from ever being late);
- already emitted: after a restore, a sample of a window the checkpoint says was emitted
  (it is inside that rollup already): skipped;
- otherwise it is added to its window, which closes once the own clock and every other
  partition's forwarded watermark have passed its end.

The partition's clock (clock.py) is the one every stage has; its only wall-clock rule is the
idle advance (`plan_idle_advance`), recorded at the offset where it happened and carried in the
checkpoint, so a replay applies it at the same point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pipeline.core.cardinality import WindowAdmission
from pipeline.core.checkpoint import Checkpoint
from pipeline.core.clock import ClockConfig, PartitionClock
from pipeline.core.closing import WindowRenderer
from pipeline.core.columns import SampleColumns
from pipeline.core.counters import CumulativeCounters
from pipeline.core.digest import DigestConfig
from pipeline.core.rollup import Rollup
from pipeline.core.series import MetricKind, SeriesTable
from pipeline.core.upstream import NO_TIME, UpstreamWatermarks
from pipeline.core.windows import FORWARDED, OWN, OpenWindows

# Checkpoint.state entries: cumulative counters' previous values; the repartition stream's
# resume offset and known watermarks there.
COUNTERS = "counters"
FORWARD_STATE = "forward"


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """resolution_ms: tumbling window size. allowed_lateness_ms: how far behind the largest event
    time seen a sample may be and still count (watermark = max event time - lateness).
    counter_staleness_ms: a cumulative counter's previous value older than this is forgotten."""

    resolution_ms: int = 10_000
    allowed_lateness_ms: int = 5_000
    counter_staleness_ms: int = 600_000


@dataclass(slots=True)
class StepResult:
    rollups: list[Rollup] = field(default_factory=list)
    late_parts: list[SampleColumns] = field(default_factory=list)
    foreign_parts: list[SampleColumns] = field(default_factory=list)
    accepted: int = 0
    already_emitted: int = 0

    @property
    def late(self) -> SampleColumns:
        """Samples whose window had already closed, in partition order."""
        return SampleColumns.concat(self.late_parts)

    @property
    def foreign(self) -> SampleColumns:
        """On-time samples this partition does not aggregate itself: to forward."""
        return SampleColumns.concat(self.foreign_parts)


class PartitionAggregator:
    """Rollups of the series one input partition owns.

    sources: partitions of the input (each may forward samples here; 1: none can).
    owners: owning partition per series id, or None when this partition owns every series.
    """

    def __init__(
        self,
        topic: str,
        partition: int,
        series: SeriesTable,
        window: WindowConfig | None = None,
        digest: DigestConfig | None = None,
        sources: int = 1,
        owners: Callable[[np.ndarray], np.ndarray] | None = None,
        clock: ClockConfig | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.series = series
        self.window = window or WindowConfig()
        self.digest = digest or DigestConfig()
        self.windows = OpenWindows(self.digest)
        self.counters = CumulativeCounters(series, self.window.counter_staleness_ms)
        self.clock = PartitionClock(clock, self.window.allowed_lateness_ms)
        self.forwarded_next_offset = 0
        self.upstream = UpstreamWatermarks(sources, partition)
        self._owners = owners if sources > 1 else None
        self.renderer = WindowRenderer(series, self.window.resolution_ms, self.digest)
        self.admission: WindowAdmission | None = None  # cardinality budget (core/cardinality.py)

    @property
    def next_offset(self) -> int:
        """First own-input offset not consumed yet (the clock's)."""
        return self.clock.next_offset

    @property
    def source_watermark(self) -> int:
        """This partition's own clock: it forwards nothing more to windows ending at or before
        it (the watermark it sends every partition)."""
        return self.clock.watermark

    @property
    def watermark(self) -> int:
        """Windows ending at or before this are complete: the own clock and every other
        partition's forwarded watermark have passed them."""
        return min(self.source_watermark, self.upstream.minimum)

    # -- input ------------------------------------------------------------------------------

    def process(self, cols: SampleColumns, end_offset: int) -> StepResult:
        """Take this partition's own input (valid samples, partition order) up to `end_offset`
        (exclusive: the offset after the last message consumed, valid or not). Samples of series
        owned elsewhere that are on time come back in `StepResult.foreign`, to be forwarded."""
        result = StepResult()
        for adv_offset, adv_max_ts in self.clock.due(end_offset).all:
            cut = int(np.searchsorted(cols.offset, adv_offset, side="left"))
            self._process_own(cols.take(slice(0, cut)), result)
            cols = cols.take(slice(cut, None))
            self.clock.advance_to(adv_max_ts)
            result.rollups.extend(self._close())
        self._process_own(cols, result)
        self.clock.consumed(end_offset)
        result.rollups.extend(self._close())
        return result

    def process_forwarded(
        self, cols: SampleColumns, marks: list[tuple[int, int, int]], end_offset: int
    ) -> StepResult:
        """Take records of the repartition stream up to `end_offset`: forwarded samples (their
        `offset` is the repartition offset; judged on time where they were produced) and
        watermark marks (repartition offset, source partition, watermark)."""
        result = StepResult()
        if len(cols):
            kinds = self.series.kinds.view()[cols.series]
            contribution = self._counter_increases(cols, kinds)
            res = self.window.resolution_ms
            end = cols.ts - cols.ts % res + res
            self._add(cols, contribution, kinds, end, None, FORWARDED, result)
        for offset, source, watermark in marks:
            self.upstream.observe(offset, source, watermark)
        self.forwarded_next_offset = max(self.forwarded_next_offset, end_offset)
        result.rollups.extend(self._close())
        return result

    def take_local_watermark(self, source: int, watermark: int) -> list[Rollup]:
        """`source`'s watermark, handed over in-process by the worker that owns both partitions
        once every record `source` sent here before it has been read (see
        kafka/local_watermarks.py); returns the windows it closes."""
        if not self.upstream.observe_local(source, watermark):
            return []
        return self._close()

    def _process_own(self, cols: SampleColumns, result: StepResult) -> None:
        n = len(cols)
        if n == 0:
            return
        res = self.window.resolution_ms
        max_before = self.clock.before_messages(cols.ts, cols.series, cols.offset)

        end = cols.ts - cols.ts % res + res
        late = end <= max_before - self.window.allowed_lateness_ms
        if late.any():
            result.late_parts.append(cols.take(late))
        keep = ~late
        if self.admission is not None and keep.any():
            # Series over the budget are aggregated as their metric's overflow series. Decided
            # here, where the samples land, in this partition's order (so a replay decides the
            # same), before any is forwarded: the overflow series has the same owner.
            routed = self.admission.route(cols.series[keep], end[keep] - res)
            if not np.array_equal(routed, cols.series[keep]):
                series = cols.series.copy()
                series[keep] = routed
                cols = replace(cols, series=series)
        kinds = self.series.kinds.view()[cols.series]
        if self._owners is not None:
            # Cumulative counters always take the repartition stream, even from their owner:
            # their increases depend on sample order, and only one log gives one order.
            foreign = (self._owners(cols.series) != self.partition) | (
                kinds == MetricKind.COUNTER_CUMULATIVE
            )
            foreign &= keep
            if foreign.any():
                result.foreign_parts.append(cols.take(foreign))
                keep &= ~foreign
        if not keep.all():
            cols, kinds, end, max_before = cols.take(keep), kinds[keep], end[keep], max_before[keep]
        if len(cols):
            # A late cumulative sample leaves its counter's previous value alone: the next
            # sample's increase then covers it, so nothing of the counter is lost.
            contribution = self._counter_increases(cols, kinds)
            self._add(cols, contribution, kinds, end, max_before, OWN, result)

    def _counter_increases(self, cols: SampleColumns, kinds: np.ndarray) -> np.ndarray:
        cumulative = kinds == MetricKind.COUNTER_CUMULATIVE
        if not cumulative.any():
            return cols.value
        contribution = cols.value.copy()
        contribution[cumulative] = self.counters.increases(
            cols.series[cumulative],
            cols.instance[cumulative],
            cols.value[cumulative],
            cols.ts[cumulative],
            cols.offset[cumulative],
        )
        return contribution

    def _add(
        self,
        cols: SampleColumns,
        contribution: np.ndarray,
        kinds: np.ndarray,
        end: np.ndarray,
        max_before: np.ndarray | None,
        stream: int,
        result: StepResult,
    ) -> None:
        """Add on-time samples of one stream to their windows (those already emitted before a
        restore are skipped: they are inside that rollup)."""
        res = self.window.resolution_ms
        emitted = end <= self.clock.emitted_wm
        result.already_emitted += int(emitted.sum())
        keep = ~emitted
        if not keep.any():
            return
        series = cols.series[keep]
        start = end[keep] - res
        values = cols.value[keep]
        contribution = contribution[keep]
        kinds = kinds[keep]
        codes = (series.astype(np.int64) << 32) | (start // res)
        distinct, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
        offsets = cols.offset[keep][first]
        slots = self.windows.slots_for(
            distinct,
            series[first],
            start[first],
            res,
            offsets,
            offsets if max_before is None else max_before[keep][first],
            kinds[first] <= MetricKind.GAUGE,
            stream,
        )
        w = self.windows
        group_count = np.bincount(inverse, minlength=len(distinct))
        w.count[slots] += group_count
        group_min = np.full(len(distinct), np.inf)
        group_max = np.full(len(distinct), -np.inf)
        np.minimum.at(group_min, inverse, values)
        np.maximum.at(group_max, inverse, values)
        w.min[slots] = np.minimum(w.min[slots], group_min)
        w.max[slots] = np.maximum(w.max[slots], group_max)
        w.add_values(slots[inverse], contribution, (slots, group_count), stream)
        result.accepted += int(keep.sum())

    # -- output -----------------------------------------------------------------------------

    def _close(self) -> list[Rollup]:
        watermark = self.watermark
        if not self.clock.emit_until(watermark):
            return []
        ends = sorted(e for e in self.windows.by_end if e <= watermark)
        if self.admission is not None:
            self.admission.close_until(watermark)
        if not ends:
            return []
        closing = np.array([s for e in ends for s in self.windows.by_end.pop(e)], np.int64)
        rollups = self.renderer.rollups(self.windows, closing)
        self.windows.release(closing)
        return rollups

    def plan_idle_advance(self) -> bool:
        """Record an advance of this partition's own clock because its input is idle.

        The clock moves past every open window and past the other partitions' watermarks, so
        that neither the windows here nor theirs (which wait for this partition's watermark)
        stay open for want of input that is not coming. Nothing closes yet: the caller first
        persists `checkpoint()`, which carries the advance, then calls `apply_idle_advance()`.
        A crash in between replays to the same advance. False: nothing to advance.
        """
        ends = [max(self.windows.by_end)] if len(self.windows) else []
        if self.upstream.maximum > NO_TIME:
            ends.append(self.upstream.maximum)
        if not ends:
            return False
        return self.clock.plan_idle_advance(max(ends) + self.window.allowed_lateness_ms)

    def apply_idle_advance(self) -> list[Rollup]:
        self.clock.apply_idle_advance()
        return self._close()

    def referenced_series(self) -> np.ndarray:
        """Series ids this partition still needs: open windows and cumulative-counter state."""
        open_series = self.windows.series[self.windows.series >= 0]
        return np.concatenate([open_series, self.counters.series_ids()]).astype(np.int64)

    def forget_series(self, series_ids: list[int]) -> None:
        """The series table is about to forget (and later reuse) these ids."""
        self.renderer.forget(series_ids)

    # -- checkpoints ------------------------------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        """State just before the first offsets a replay needs (own input and the repartition
        stream); moves the replay bases there."""
        offset, clock = self.clock.snapshot(self.windows.oldest())
        max_ts = clock["max_ts"]
        forwarded = self.windows.oldest_forwarded()
        forwarded_offset = self.forwarded_next_offset if forwarded is None else forwarded
        w = self.window
        if self._owners is None:
            self.counters.fold(offset)
            # Dropped entries are stale for any sample that can still land in a window.
            horizon = max_ts - w.counter_staleness_ms - w.allowed_lateness_ms - w.resolution_ms
        else:
            self.counters.fold(forwarded_offset)  # cumulative counters arrive forwarded
            # A forwarded sample that still counts ends after the emitted watermark.
            horizon = self.clock.emitted_wm - w.counter_staleness_ms - w.resolution_ms
        state: dict[str, Any] = {COUNTERS: self.counters.base_entries(horizon)}
        if self.upstream.partitions > 1:
            state[FORWARD_STATE] = {
                "offset": forwarded_offset,
                "watermarks": self.upstream.fold(forwarded_offset),
            }
        return Checkpoint(self.topic, self.partition, offset, clock, self._fingerprint(), state)

    def _fingerprint(self) -> dict[str, int]:
        w = self.window
        return {
            "resolution_ms": w.resolution_ms,
            "allowed_lateness_ms": w.allowed_lateness_ms,
            "counter_staleness_ms": w.counter_staleness_ms,
        }

    def restore(self, checkpoint: Checkpoint) -> None:
        """Start from a checkpoint: the caller then replays the partition's own input from its
        offset and the repartition stream from `forwarded_next_offset`."""
        checkpoint.require(self._fingerprint(), "resolution/lateness/counter staleness")
        self.clock.restore(checkpoint.offset, checkpoint.clock)
        self.counters.restore(checkpoint.state.get(COUNTERS, []))
        forward = checkpoint.state.get(FORWARD_STATE) or {}
        self.forwarded_next_offset = int(forward.get("offset", 0))
        self.upstream = UpstreamWatermarks(
            self.upstream.partitions, self.partition, forward.get("watermarks")
        )

    @property
    def open_windows(self) -> int:
        return len(self.windows)
