"""One input partition's rollup state machine: samples in, closed windows out, replay-safe.

Time is event time only. A message's samples are judged against the watermark as it stood before
that message (largest event time of earlier messages minus the allowed lateness), so the result
depends on the partition's order alone, never on how a consumer happened to batch it:

- late: the sample's window had already closed (window end <= watermark): not aggregated;
- already emitted: after a restore, a sample of a window the checkpoint says was emitted
  (it is inside that rollup already): skipped;
- otherwise it is added to its window, which closes once the watermark reaches its end.

The only wall-clock rule is the idle advance (`advance_idle`): the runtime may close every open
window of a partition that received nothing for a while. The advance is recorded at the offset
where it happened and carried in the checkpoint, so a replay applies it at the same point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pipeline.core.advances import IdleAdvances
from pipeline.core.cardinality import WindowAdmission
from pipeline.core.checkpoint import Checkpoint, resume_point
from pipeline.core.columns import SampleColumns
from pipeline.core.counters import CumulativeCounters
from pipeline.core.digest import DigestConfig, summarize_groups
from pipeline.core.render import ClosingColumns, render_bodies, series_prefix
from pipeline.core.rollup import Rollup, format_duration, rollup_key
from pipeline.core.series import MetricKind, SeriesTable
from pipeline.core.windows import OpenWindows

NO_TIME = -(2**62)


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
    accepted: int = 0
    already_emitted: int = 0

    @property
    def late(self) -> SampleColumns:
        """Samples whose window had already closed, in partition order."""
        return SampleColumns.concat(self.late_parts)


class PartitionAggregator:
    def __init__(
        self,
        topic: str,
        partition: int,
        series: SeriesTable,
        window: WindowConfig | None = None,
        digest: DigestConfig | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.series = series
        self.window = window or WindowConfig()
        self.digest = digest or DigestConfig()
        self.windows = OpenWindows(self.digest)
        self.counters = CumulativeCounters(series, self.window.counter_staleness_ms)
        self.max_ts = NO_TIME
        self.emitted_wm = NO_TIME
        self.next_offset = 0
        self.advances = IdleAdvances()
        self._resolution_name = format_duration(self.window.resolution_ms)
        self._percentile_names = self.digest.percentile_names()
        self._prefixes: dict[int, bytes] = {}  # series id → its rollups' JSON up to window_start
        self.admission: WindowAdmission | None = None  # cardinality budget (core/cardinality.py)

    @property
    def watermark(self) -> int:
        return self.max_ts - self.window.allowed_lateness_ms

    # -- input ------------------------------------------------------------------------------

    def process(self, cols: SampleColumns, end_offset: int) -> StepResult:
        """Aggregate this partition's valid samples (partition order) up to `end_offset`
        (exclusive: the offset after the last message consumed, valid or not)."""
        result = StepResult()
        for adv_offset, adv_max_ts in self.advances.due(self.next_offset, end_offset).all:
            cut = int(np.searchsorted(cols.offset, adv_offset, side="left"))
            self._process_part(cols.take(slice(0, cut)), result)
            cols = cols.take(slice(cut, None))
            self.max_ts = max(self.max_ts, adv_max_ts)
            result.rollups.extend(self._close())
        self._process_part(cols, result)
        self.next_offset = max(self.next_offset, end_offset)
        result.rollups.extend(self._close())
        return result

    def _process_part(self, cols: SampleColumns, result: StepResult) -> None:
        n = len(cols)
        if n == 0:
            return
        res = self.window.resolution_ms
        # Largest event time before each message (not before each sample: a message is atomic).
        new_msg = np.ones(n, dtype=bool)
        new_msg[1:] = cols.offset[1:] != cols.offset[:-1]
        msg_starts = np.flatnonzero(new_msg)
        msg_max = np.maximum.reduceat(cols.ts, msg_starts)
        running = np.maximum.accumulate(np.concatenate(([self.max_ts], msg_max)))
        msg_of_sample = np.cumsum(new_msg) - 1
        max_before = running[:-1][msg_of_sample]
        self.max_ts = int(running[-1])

        start = cols.ts - cols.ts % res
        end = start + res
        late = end <= max_before - self.window.allowed_lateness_ms
        emitted = ~late & (end <= self.emitted_wm)
        kinds = self.series.kinds.view()[cols.series]

        contribution = cols.value
        cumulative = kinds == MetricKind.COUNTER_CUMULATIVE
        if cumulative.any():
            contribution = cols.value.copy()
            contribution[cumulative] = self.counters.increases(
                cols.series[cumulative],
                cols.instance[cumulative],
                cols.value[cumulative],
                cols.ts[cumulative],
                cols.offset[cumulative],
            )

        if late.any():
            result.late_parts.append(cols.take(late))
        result.already_emitted += int(emitted.sum())
        keep = ~late & ~emitted
        if not keep.any():
            return
        series = cols.series[keep]
        start = start[keep]
        if self.admission is not None:  # series over budget are aggregated as overflow
            series = self.admission.route(series, start)
        values = cols.value[keep]
        contribution = contribution[keep]
        kinds = kinds[keep]
        codes = (series.astype(np.int64) << 32) | (start // res)
        distinct, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
        slots = self.windows.slots_for(
            distinct,
            series[first],
            start[first],
            res,
            cols.offset[keep][first],
            max_before[keep][first],
            kinds[first] <= MetricKind.GAUGE,
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
        w.add_values(slots[inverse], contribution, (slots, group_count))
        result.accepted += int(keep.sum())

    # -- output -----------------------------------------------------------------------------

    def _close(self) -> list[Rollup]:
        watermark = self.watermark
        if watermark <= self.emitted_wm:
            return []
        ends = sorted(e for e in self.windows.by_end if e <= watermark)
        self.emitted_wm = watermark
        if self.admission is not None:
            self.admission.close_until(watermark)
        if not ends:
            return []
        closing = np.array([s for e in ends for s in self.windows.by_end.pop(e)], np.int64)
        rollups = self._rollups(closing)
        self.windows.release(closing)
        return rollups

    def plan_idle_advance(self) -> bool:
        """Record an advance that will close every open window (the partition is idle).

        Nothing closes yet: the caller first persists `checkpoint()`, which carries the advance,
        then calls `apply_idle_advance()`. A crash in between replays to the same advance.
        """
        if not len(self.windows):
            return False
        new_max = max(self.windows.by_end) + self.window.allowed_lateness_ms
        return self.advances.plan(self.next_offset, new_max, self.max_ts)

    def apply_idle_advance(self) -> list[Rollup]:
        self.max_ts = self.advances.at(self.next_offset, self.max_ts)
        return self._close()

    def _rollups(self, closing: np.ndarray) -> list[Rollup]:
        w = self.windows
        order = closing[np.lexsort((w.series[closing], w.start[closing]))]
        # Held values of slot order[g] are values[starts[g]:ends[g]] (none if all were folded).
        values, starts, ends = w.take_closing(order)
        digestable = self.series.kinds.view()[w.series[order]] <= MetricKind.GAUGE
        slots = order.tolist()
        folded = {g: w.digests[slot] for g, slot in enumerate(slots) if slot in w.digests}
        percentiles, digests = summarize_groups(
            values, starts, ends, digestable, folded, self.digest
        )

        res = self.window.resolution_ms
        held = values.tolist()
        # math.fsum per window: correctly rounded, so the same whatever the arrival batching.
        sums = w.folded_sum[order] + np.array(
            [math.fsum(held[a:b]) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)],
            np.float64,
        )
        sids = w.series[order].tolist()
        window_starts = w.start[order]
        counts = w.count[order]
        bodies = render_bodies(
            ClosingColumns(
                prefix=[self._prefix(sid) for sid in sids],
                window_start=window_starts,
                count=counts,
                sum=sums,
                min=w.min[order],
                max=w.max[order],
                percentiles=percentiles,
                has_digest=digestable,
                digests=digests,
            ),
            res,
            self._percentile_names,
        )
        keys, identities = self.series.key_of, self.series.identities
        return [
            Rollup(
                rollup_key(keys(sid), res, start),
                identities[sid].routing_key,
                encoded=body,
                count=count,
            )
            for sid, start, count, body in zip(
                sids, window_starts.tolist(), counts.tolist(), bodies, strict=True
            )
        ]

    def _prefix(self, sid: int) -> bytes:
        prefix = self._prefixes.get(sid)
        if prefix is None:
            prefix = series_prefix(
                self.series.json_of(sid),
                self.series.key_of(sid),
                self._resolution_name,
                self.window.resolution_ms,
            )
            self._prefixes[sid] = prefix
        return prefix

    def referenced_series(self) -> np.ndarray:
        """Series ids this partition still needs: open windows and cumulative-counter state."""
        open_series = self.windows.series[self.windows.series >= 0]
        return np.concatenate([open_series, self.counters.series_ids()]).astype(np.int64)

    def forget_series(self, series_ids: list[int]) -> None:
        """The series table is about to forget (and later reuse) these ids."""
        for sid in series_ids:
            self._prefixes.pop(sid, None)

    # -- checkpoints ------------------------------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        """State just before the first offset a replay needs; moves the replay base there."""
        oldest = self.windows.oldest()
        if oldest is None:
            offset, max_ts = self.next_offset, self.max_ts
        else:
            offset, max_ts = oldest
        self.counters.fold(offset)
        self.advances.keep_from(offset)
        return Checkpoint(
            topic=self.topic,
            partition=self.partition,
            offset=offset,
            max_ts=max_ts,
            emitted_wm=self.emitted_wm,
            resolution_ms=self.window.resolution_ms,
            allowed_lateness_ms=self.window.allowed_lateness_ms,
            counter_staleness_ms=self.window.counter_staleness_ms,
            # Dropped entries are stale for any sample that can still land in a window.
            counters=self.counters.base_entries(
                max_ts
                - self.window.counter_staleness_ms
                - self.window.allowed_lateness_ms
                - self.window.resolution_ms
            ),
            advances=self.advances.to_json(),
        )

    def restore(self, checkpoint: Checkpoint) -> None:
        """Start from a checkpoint: the caller then replays the partition from its offset."""
        start = resume_point(
            checkpoint,
            (
                checkpoint.resolution_ms,
                checkpoint.allowed_lateness_ms,
                checkpoint.counter_staleness_ms,
            ),
            (
                self.window.resolution_ms,
                self.window.allowed_lateness_ms,
                self.window.counter_staleness_ms,
            ),
            "resolution/lateness/counter staleness",
        )
        self.max_ts, self.emitted_wm = start.max_ts, start.emitted_wm
        self.next_offset, self.advances = start.next_offset, IdleAdvances(start.advances)
        self.counters.restore(checkpoint.counters)

    @property
    def open_windows(self) -> int:
        return len(self.windows)
