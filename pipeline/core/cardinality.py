"""The cardinality budget: how many series a worker aggregates separately, and forgetting idle ones.

Admission rule (deterministic under replay). Each input partition admits, per window, at most
`series_per_partition` series, and at most `series_per_metric` series of one metric (a name of
one service in one region). Series reach a window in partition order; the first ones within
the limits get their own rollup, every later new series of that window is aggregated into the
overflow series of its metric: same service, region, name, type and unit, with the single label
`otel_metric_overflow="true"`. Nothing is lost: every sample is counted in some rollup.

The decision depends only on the samples of that window in that partition, in partition order,
which is exactly what a replay after a crash re-reads (it starts at the first offset of the
oldest open window), so a replay sends the same samples to overflow and re-emits byte-identical
rollups, however the input is batched and whichever worker owns the partition. The per-worker
setting is split evenly over the input partitions for the same reason: a decision must not
depend on which partitions a worker happens to own.

Forgetting: the series table holds every series it has seen. A series is forgotten (its memory
returned, its id reused) once it has no open window, no cumulative-counter state (counters keep
theirs while the partition is owned, so their series stay) and no sample for `idle_seconds`; a
series refused by the budget is forgotten at the next sweep, so a flood of new series never
accumulates in memory. Forgetting never changes an output: admission only looks at open windows,
and a forgotten series that comes back is interned again.
"""

from __future__ import annotations

import ctypes
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import structlog

from pipeline.core.series import SeriesIdentity, SeriesTable

OVERFLOW_LABEL = "otel_metric_overflow"
Metric = tuple[str, str, str]  # (service, region, name)

log = structlog.get_logger("cardinality")
_TRIM_AFTER = 10_000  # forgotten series in one sweep worth handing freed heap back to the OS


def _return_freed_memory() -> None:
    """glibc keeps freed heap for reuse; malloc_trim gives what it can back to the OS, so RSS
    shows that forgotten series were forgotten. A no-op where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)


def overflow_identity(identity: SeriesIdentity) -> SeriesIdentity:
    """The series that takes the samples of `identity` when its metric is over budget."""
    return SeriesIdentity(
        identity.service,
        identity.region,
        identity.name,
        identity.kind,
        identity.unit,
        ((OVERFLOW_LABEL, "true"),),
    )


@dataclass(frozen=True, slots=True)
class CardinalityLimits:
    """Series per window of one input partition (0: no limit)."""

    series_per_partition: int = 0
    series_per_metric: int = 0

    @staticmethod
    def for_worker(
        max_series: int, max_series_per_metric: int, partitions: int
    ) -> CardinalityLimits:
        per_partition = math.ceil(max_series / max(1, partitions)) if max_series else 0
        return CardinalityLimits(per_partition, max_series_per_metric)

    @property
    def unlimited(self) -> bool:
        return not self.series_per_partition and not self.series_per_metric


@dataclass(slots=True)
class OverflowTally:
    """Samples sent to overflow, shared by a worker's partitions (reported and reset by the
    worker)."""

    by_limit: Counter[str] = field(default_factory=Counter)
    by_metric: Counter[Metric] = field(default_factory=Counter)
    refused_series: int = 0


@dataclass(slots=True)
class _Window:
    series: set[int] = field(default_factory=set)
    per_metric: Counter[Metric] = field(default_factory=Counter)


class WindowAdmission:
    """One input partition's admission decisions for its open windows (see the module doc)."""

    def __init__(
        self,
        table: SeriesTable,
        limits: CardinalityLimits,
        resolution_ms: int,
        tally: OverflowTally | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self.limits = limits
        self.resolution_ms = resolution_ms
        self.tally = tally or OverflowTally()
        self._clock = clock
        self._windows: dict[int, _Window] = {}  # window start → series admitted to it
        self._codes: set[int] = set()  # (series << 32 | window index) admitted, all windows

    def route(self, series: np.ndarray, start: np.ndarray) -> np.ndarray:
        """The series each sample is aggregated under: its own or its metric's overflow series.

        series, start: per sample (partition order), the series id and window start."""
        if len(series) == 0:
            return series
        now = self._clock()
        self.table.touch(series, now)
        if self.limits.unlimited:
            return series
        codes = (series.astype(np.int64) << 32) | (start // self.resolution_ms)
        # Steady state: every (series, window) was decided before; a plain sort tells.
        seen = np.unique(codes).tolist()
        if all(map(self._codes.__contains__, seen)):
            return series
        distinct, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
        known = np.fromiter(map(self._codes.__contains__, distinct.tolist()), bool, len(distinct))
        target = (distinct >> 32).astype(series.dtype)
        new_groups = np.flatnonzero(~known)
        sizes = np.bincount(inverse, minlength=len(distinct))
        refused: list[int] = []
        # Arrival order of each (series, window): the decision must not depend on batching.
        for g in new_groups[np.argsort(first[new_groups], kind="stable")].tolist():
            sid = int(target[g])
            identity = self.table.identities[sid]
            metric = (identity.service, identity.region, identity.name)
            limit = self._admit(sid, metric, int(start[first[g]]), int(distinct[g]))
            if limit is None:
                continue
            overflow = self.table.intern(overflow_identity(identity))
            self.table.last_seen.view()[overflow] = now
            target[g] = overflow
            if overflow != sid:
                refused.append(sid)
            samples = int(sizes[g])
            self.tally.by_metric[metric] += samples
            self.tally.by_limit[limit] += samples
        if refused:
            self.tally.refused_series += len(refused)
            # Nothing keeps a refused series: forget it at the next sweep, not after idling.
            self.table.last_seen.view()[np.array(refused, np.int64)] = -np.inf
        routed: np.ndarray = target[inverse]
        return routed

    def _admit(self, sid: int, metric: Metric, window_start: int, code: int) -> str | None:
        """Admit `sid` to the window, or return the limit it hit ("worker" or "metric")."""
        window = self._windows.get(window_start)
        if window is None:
            window = self._windows[window_start] = _Window()
        limits = self.limits
        if limits.series_per_partition and len(window.series) >= limits.series_per_partition:
            return "worker"
        if limits.series_per_metric and window.per_metric[metric] >= limits.series_per_metric:
            return "metric"
        window.series.add(sid)
        window.per_metric[metric] += 1
        self._codes.add(code)
        return None

    def close_until(self, watermark: int) -> None:
        """Forget the decisions of windows that closed (end <= watermark)."""
        closed = [s for s in self._windows if s + self.resolution_ms <= watermark]
        for window_start in closed:
            index = window_start // self.resolution_ms
            for sid in self._windows.pop(window_start).series:
                self._codes.discard((sid << 32) | index)

    @property
    def open_windows(self) -> int:
        return len(self._windows)


class CounterFn(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class LabelledCounterFn(Protocol):
    def labels(self, *values: str) -> CounterFn: ...


class HoldsSeries(Protocol):
    """What a partition state must tell about the series ids it refers to."""

    def referenced_series(self) -> np.ndarray: ...

    def forget_series(self, series_ids: list[int]) -> None: ...


class CardinalityGuard:
    """A worker's budget, overflow reporting and sweeps of idle series (one per process)."""

    def __init__(
        self,
        table: SeriesTable,
        max_series: int,
        max_series_per_metric: int,
        idle_seconds: float,
        *,
        overflow_counter: LabelledCounterFn | None = None,
        forgotten_counter: CounterFn | None = None,
        report_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self.max_series = max_series
        self.max_series_per_metric = max_series_per_metric
        self.idle_seconds = idle_seconds
        self.limits = CardinalityLimits.for_worker(max_series, max_series_per_metric, 1)
        self.tally = OverflowTally()
        self._overflow_counter = overflow_counter
        self._forgotten_counter = forgotten_counter
        self._report_every = report_every
        self._clock = clock
        self._last_sweep = clock()
        self._last_report = clock() - report_every
        self._reported: Counter[str] = Counter()
        self._unreported: Counter[Metric] = Counter()
        self.forgotten = 0

    def partitions_known(self, partitions: int) -> None:
        self.limits = CardinalityLimits.for_worker(
            self.max_series, self.max_series_per_metric, partitions
        )

    def admission(self, resolution_ms: int) -> WindowAdmission:
        return WindowAdmission(self.table, self.limits, resolution_ms, self.tally, self._clock)

    def after_batch(self, states: Iterable[HoldsSeries]) -> None:
        """Count overflow, log the worst offenders now and then, forget what is idle."""
        now = self._clock()
        self._count_overflow(now)
        refused = self.tally.refused_series
        since = now - self._last_sweep
        crowded = self.max_series and len(self.table) > self.max_series and since >= 1.0
        if refused or crowded or since >= min(5.0, self.idle_seconds / 2):
            self.tally.refused_series = 0
            self.sweep(list(states), now)

    def sweep(self, states: list[HoldsSeries], now: float) -> int:
        """Forget series without open windows or counter state that were idle for idle_seconds.

        While the table holds more than max_series series, unreferenced ones are forgotten
        whether idle or not, least recently seen first, down to 3/4 of max_series: series
        that arrive spread over many windows pass the per-window budget, and must not pile up
        for a whole idle timeout."""
        self._last_sweep = now
        table = self.table
        if not table.capacity:
            return 0
        free = table.live()
        for state in states:
            free[state.referenced_series()] = False
        last_seen = table.last_seen.view()
        idle = free & (last_seen < now - self.idle_seconds)
        excess = len(table) - int(idle.sum()) - self.max_series * 3 // 4
        if self.max_series and len(table) > self.max_series and excess > 0:
            candidates = np.flatnonzero(free & ~idle)
            oldest = candidates[np.argsort(last_seen[candidates], kind="stable")[:excess]]
            idle[oldest] = True
        victims = np.flatnonzero(idle).tolist()
        if victims:
            for state in states:
                state.forget_series(victims)
            table.forget(victims)
            if len(victims) >= _TRIM_AFTER:
                _return_freed_memory()
            self.forgotten += len(victims)
            if self._forgotten_counter is not None:
                self._forgotten_counter.inc(len(victims))
        return len(victims)

    def _count_overflow(self, now: float) -> None:
        for limit, samples in self.tally.by_limit.items():
            new = samples - self._reported[limit]
            if new and self._overflow_counter is not None:
                self._overflow_counter.labels(limit).inc(new)
            self._reported[limit] = samples
        if self.tally.by_metric:
            self._unreported.update(self.tally.by_metric)
            self.tally.by_metric.clear()
        if self._unreported and now - self._last_report >= self._report_every:
            self._last_report = now
            worst = ", ".join(
                f"{service}/{region}/{name}: {samples}"
                for (service, region, name), samples in self._unreported.most_common(5)
            )
            log.warning(
                "series over the cardinality budget aggregated as overflow",
                samples=sum(self._unreported.values()),
                metrics=len(self._unreported),
                worst=worst,
                max_series=self.max_series,
                max_series_per_metric=self.max_series_per_metric,
            )
            self._unreported.clear()
