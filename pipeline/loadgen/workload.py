"""Deterministic numeric workload: every valid sample as numpy columns (the ground truth).

The columns are drawn once, vectorized; `encode.py` serializes exactly these numbers, so tests can
compute the expected rollups from `GroundTruth` with numpy. Each purpose (times, jitter, values,
...) has its own random stream derived from the seed, so changing e.g. `late_fraction` leaves the
times of the other samples alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pipeline.errors import ConfigError
from pipeline.loadgen.spec import (
    CUMULATIVE,
    DELTA,
    GAUGE,
    TIMER,
    Catalogue,
    SeriesId,
    WorkloadSpec,
    build_catalogue,
)

__all__ = ["GroundTruth", "WorkloadSpec", "generate_columns", "rng_for"]

# Multiplier that packs (group, time offset in ms) into one sortable int64; time offsets stay
# below 2**40 ms (~35 years), groups below 2**23.
_PACK = np.int64(1 << 40)

_STREAMS = ("times", "jitter", "mismatch", "late", "values", "malformed")


def rng_for(spec: WorkloadSpec, purpose: str) -> np.random.Generator:
    """The independent random stream for one purpose."""
    return np.random.default_rng([spec.seed, _STREAMS.index(purpose)])


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """All valid samples of a workload, in production order (by producer time, then series).

    Arrays (length n = number of valid samples):
        series_key: int32 index into `series`.
        instance: int32 instance index 0..spec.instances-1 (`series[i].instance_name(instance)`).
        ts: int64 event time, epoch ms. now_ms: int64 producer time (message timestamp for
            "single"; batches carry their flush time), epoch ms, >= ts.
        value: float64, finite. Timers: ms, > 0 up to rounding; delta counters: increments >= 0;
            cumulative counters: running totals, non-decreasing per (series, instance) in ts order
            except resets to exactly 0.
        late: bool, the sample is sent `late_by_ms` behind its producer time (intended late).
        sent_key: int32 index into `keys` of the producer key it is sent with.
    """

    spec: WorkloadSpec
    catalogue: Catalogue
    series_key: NDArray[np.int32]
    instance: NDArray[np.int32]
    ts: NDArray[np.int64]
    value: NDArray[np.float64]
    now_ms: NDArray[np.int64]
    late: NDArray[np.bool_]
    sent_key: NDArray[np.int32]

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @property
    def series(self) -> tuple[SeriesId, ...]:
        return self.catalogue.series

    @property
    def keys(self) -> tuple[str, ...]:
        """Producer keys "service|region"; index with `sent_key` / `own_key`."""
        return self.catalogue.keys

    @property
    def kind(self) -> NDArray[np.int8]:
        """Kind code per sample (spec.TIMER, GAUGE, DELTA, CUMULATIVE)."""
        return np.asarray(self.catalogue.kind, dtype=np.int8)[self.series_key]

    @property
    def own_key(self) -> NDArray[np.int32]:
        """Index of the series' own producer key per sample."""
        return np.asarray(self.catalogue.key_index, dtype=np.int32)[self.series_key]

    @property
    def mismatched(self) -> NDArray[np.bool_]:
        """Samples sent with another service's producer key."""
        return np.not_equal(self.sent_key, self.own_key)

    @property
    def on_time(self) -> NDArray[np.bool_]:
        """Samples that belong in rollups (not intended late)."""
        return ~self.late


def samples_per_series(spec: WorkloadSpec, n_series: int) -> NDArray[np.int64]:
    """Valid samples of each series: the total split evenly, remainder to the first series."""
    if spec.rate_per_series is not None:
        total = round(spec.rate_per_series * spec.duration_s * n_series)
    else:
        total = spec.samples
    per = np.full(n_series, total // n_series, dtype=np.int64)
    per[: total % n_series] += 1
    if n_series and int(per.max()) > spec.duration_ms:
        # Distinct event times per series keep cumulative counter readings unambiguous.
        raise ConfigError("invalid WorkloadSpec: more than one sample per ms per series")
    return per


def generate_columns(spec: WorkloadSpec) -> GroundTruth:
    """Draw every valid sample of `spec` (peak memory about 80 bytes per sample)."""
    cat = build_catalogue(spec)
    n_series = len(cat.series)
    per = samples_per_series(spec, n_series)
    n = int(per.sum())
    kind_of_series = np.asarray(cat.kind, dtype=np.int8)
    key_of_series = np.asarray(cat.key_index, dtype=np.int32)

    # Event times: evenly spaced per series over [start, start + duration) with a random phase, so
    # series interleave. Each sample is sent 0..max_jitter_ms after it happened; sending order
    # (production order) is by send time, which is what makes event times arrive out of order.
    rng = rng_for(spec, "times")
    series = np.repeat(np.arange(n_series, dtype=np.int32), per)
    j = np.arange(n, dtype=np.int64) - np.repeat(np.cumsum(per) - per, per)
    phase = rng.random(n_series)
    rel = np.floor((j + phase[series]) * (spec.duration_ms / np.maximum(per, 1))[series])
    ts = spec.start_ms + rel.astype(np.int64)
    now = ts + rng_for(spec, "jitter").integers(0, spec.max_jitter_ms + 1, n, dtype=np.int64)
    instance = (j % spec.instances).astype(np.int32)
    # By send time; ties by series, then event order within a series.
    order = _order((now - spec.start_ms, spec.duration_ms + spec.max_jitter_ms + 1))
    series, instance, ts, now = series[order], instance[order], ts[order], now[order]
    kind = kind_of_series[series]
    own_key = key_of_series[series]

    sent_key = _mismatch_keys(spec, series, instance, now, own_key)
    late = _choose_late(spec, series, instance, ts, now, kind, own_key, sent_key != own_key)
    ts[late] = now[late] - spec.late_by_ms

    value = _values(spec, n_series, series, instance, ts, kind)
    return GroundTruth(spec, cat, series, instance, ts, value, now, late, sent_key)


def _mismatch_keys(
    spec: WorkloadSpec,
    series: NDArray[np.int32],
    instance: NDArray[np.int32],
    now: NDArray[np.int64],
    own_key: NDArray[np.int32],
) -> NDArray[np.int32]:
    """Producer key per sample: its own, or for the mismatched share another service's key."""
    rng = rng_for(spec, "mismatch")
    sent = own_key.copy()
    if spec.mismatched_key_fraction == 0.0 or len(own_key) == 0:
        return sent
    if spec.encoding == "columnar":
        # A columnar message is one (series, instance, flush): mismatch whole flush groups.
        group = flush_group(spec, series.astype(np.int64) * spec.instances + instance, now)
        by_group = np.argsort(group, kind="stable")
        first = _first_of_run(group[by_group])
        inverse = np.empty(len(group), dtype=np.int64)
        inverse[by_group] = np.cumsum(first) - 1
        uniq = np.flatnonzero(first)
        chosen = rng.choice(
            len(uniq), round(spec.mismatched_key_fraction * len(uniq)), replace=False
        )
        hit = np.zeros(len(uniq), dtype=np.bool_)
        hit[chosen] = True
        mask = hit[inverse]
    else:
        mask = np.zeros(len(own_key), dtype=np.bool_)
        mask[
            rng.choice(
                len(own_key), round(spec.mismatched_key_fraction * len(own_key)), replace=False
            )
        ] = True
    svc, region = np.divmod(own_key[mask], spec.regions)
    if spec.services > 1:  # another service, same region
        svc = (svc + 1 + rng.integers(0, spec.services - 1, len(svc))) % spec.services
    else:  # only one service: another region
        region = (region + 1 + rng.integers(0, spec.regions - 1, len(region))) % spec.regions
    sent[mask] = (svc * spec.regions + region).astype(np.int32)
    return sent


def flush_group(
    spec: WorkloadSpec, group: NDArray[np.int64], now: NDArray[np.int64]
) -> NDArray[np.int64]:
    """Pack (group, flush epoch) into one int64: samples a batching producer sends together."""
    epoch = (now - spec.start_ms) // spec.flush_interval_ms
    return group * _PACK + epoch


def _choose_late(
    spec: WorkloadSpec,
    series: NDArray[np.int32],
    instance: NDArray[np.int32],
    ts: NDArray[np.int64],
    now: NDArray[np.int64],
    kind: NDArray[np.int8],
    own_key: NDArray[np.int32],
    mismatched: NDArray[np.bool_],
) -> NDArray[np.bool_]:
    """Pick round(late_fraction × n) samples that the worker will surely see as late, if possible.

    Samples are split at random into anchors and candidates, so a candidate's proof of lateness
    never depends on another late sample. A candidate qualifies when an anchor on the same producer
    key (same partition, whatever the partition count) was sent in an earlier flush with an event
    time >= the candidate's late ts + late_guard_ms; the partition's watermark has then passed the
    candidate's window for any window + allowed lateness <= late_guard_ms.
    """
    n = len(now)
    late = np.zeros(n, dtype=np.bool_)
    want = round(spec.late_fraction * n)
    if want == 0:
        return late
    rng = rng_for(spec, "late")
    is_anchor = (rng.random(n) < 0.5) & ~mismatched
    # Late event times stay inside [start, start + duration), like all others.
    candidates = np.flatnonzero(~is_anchor & ~mismatched & (now - spec.late_by_ms >= spec.start_ms))
    shift = spec.late_by_ms - spec.start_ms  # keeps packed time offsets non-negative
    anchors = np.sort(own_key[is_anchor].astype(np.int64) * _PACK + now[is_anchor] + shift)
    cum = kind == CUMULATIVE
    stream = series.astype(np.int64) * spec.instances + instance
    readings = np.sort(stream[cum] * _PACK + ts[cum] + shift)
    # Testing every candidate costs two binary searches each; testing them in random order and
    # stopping once enough qualify picks uniformly among the qualified ones, at a fraction of that.
    shuffled = rng.permutation(candidates)
    chosen: list[NDArray[np.int64]] = []
    found, block = 0, max(4 * want, 4_096)
    for lo_i in range(0, len(shuffled), block):
        c = shuffled[lo_i : lo_i + block]
        base = own_key[c].astype(np.int64) * _PACK + shift
        # Anchor ts >= its now - max_jitter_ms, so require its now >= late ts + guard + jitter;
        # and it must be sent in an earlier flush than the candidate.
        lo = base + now[c] - spec.late_by_ms + spec.late_guard_ms + spec.max_jitter_ms
        hi = base + now[c] - max(spec.flush_window_ms, 1)
        ok = np.searchsorted(anchors, hi, "right") > np.searchsorted(anchors, lo, "left")
        # A late cumulative reading must not share its ts with another reading of the same
        # instance, or the order of the two (and so the counter's increase) would be ambiguous.
        if len(readings):
            wanted = stream[c] * _PACK + now[c] - spec.late_by_ms + shift
            at = np.minimum(np.searchsorted(readings, wanted), len(readings) - 1)
            ok &= ~(cum[c] & (readings[at] == wanted))
        good = c[ok][: want - found]
        chosen.append(good)
        found += len(good)
        if found == want:
            break
    if chosen:
        late[np.concatenate(chosen)] = True
    return late


def _segmented_cumsum(
    x: NDArray[np.int64] | NDArray[np.float64], starts: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """Cumulative sum of `x` that restarts wherever `starts` is true (starts[0] must be true)."""
    c = np.cumsum(x)
    return np.asarray(c - (c - x)[starts][np.cumsum(starts) - 1], dtype=np.float64)


def _order(*cols: tuple[NDArray[np.int64], int]) -> NDArray[np.int64]:
    """Indices that sort by `cols` (most significant first; each (values, bound) with 0 <= values <
    bound), ties kept in input order. One packed int64 key sorts ~3× faster than np.lexsort."""
    n = len(cols[0][0])
    span = max(n, 1)
    for _, bound in cols:
        span *= bound
    if span >= 1 << 62:
        return np.lexsort([np.arange(n)] + [c for c, _ in reversed(cols)]).astype(np.int64)
    key = np.zeros(n, dtype=np.int64)
    for c, bound in cols:
        key = key * bound + c
    # The position as last digit makes keys unique, so the fast unstable sort is stable here.
    return np.argsort(key * n + np.arange(n)).astype(np.int64)


def _first_of_run(x: NDArray[np.int64]) -> NDArray[np.bool_]:
    first = np.ones(len(x), dtype=np.bool_)
    first[1:] = x[1:] != x[:-1]
    return first


def _values(
    spec: WorkloadSpec,
    n_series: int,
    series: NDArray[np.int32],
    instance: NDArray[np.int32],
    ts: NDArray[np.int64],
    kind: NDArray[np.int8],
) -> NDArray[np.float64]:
    """Values for every sample; floats are rounded to 3 decimals (short JSON, exact round trip)."""
    rng = rng_for(spec, "values")
    # Per-series parameters, so series differ: timer median 2..200 ms (log-uniform) and spread,
    # gauge level (step sd = 1 % of it), counter mean increment per report 1..50.
    mu = np.log(2.0) + rng.random(n_series) * np.log(100.0)
    sigma = 0.3 + 0.6 * rng.random(n_series)
    level = 10.0 + 990.0 * rng.random(n_series)
    lam = 1.0 + 49.0 * rng.random(n_series)
    n_streams = n_series * spec.instances
    counter_start = rng.integers(0, 1_000_000, n_streams, dtype=np.int64)
    stream = series.astype(np.int64) * spec.instances + instance
    value = np.zeros(len(ts), dtype=np.float64)

    t = np.flatnonzero(kind == TIMER)
    value[t] = np.round(np.exp(mu[series[t]] + sigma[series[t]] * rng.standard_normal(len(t))), 3)
    d = np.flatnonzero(kind == DELTA)
    value[d] = rng.poisson(lam[series[d]])

    # Gauges and cumulative counters evolve per (series, instance) in event-time order.
    g = np.flatnonzero(kind == GAUGE)
    g = g[_order((stream[g], n_streams), (ts[g] - spec.start_ms, spec.duration_ms + 1))]
    step = rng.standard_normal(len(g)) * 0.01 * level[series[g]]
    value[g] = np.round(level[series[g]] + _segmented_cumsum(step, _first_of_run(stream[g])), 3)

    c = np.flatnonzero(kind == CUMULATIVE)
    c = c[_order((stream[c], n_streams), (ts[c] - spec.start_ms, spec.duration_ms + 1))]
    first = _first_of_run(stream[c])
    # Resets: the reading drops to exactly 0 and counting restarts from there.
    reset = (rng.random(len(c)) < spec.counter_reset_probability) & ~first
    inc = np.where(reset, 0, rng.poisson(lam[series[c]]))
    total = _segmented_cumsum(inc, first | reset)
    resets_so_far = np.cumsum(reset)
    before_first_reset = resets_so_far == resets_so_far[np.flatnonzero(first)][np.cumsum(first) - 1]
    value[c] = total + np.where(before_first_reset, counter_start[stream[c]], 0)
    return value
