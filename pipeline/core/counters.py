"""Cumulative counters: per-sample increase with reset handling, and replay-safe prior values.

A cumulative counter's increase at a sample is `value - previous` of the same (series, instance)
in partition order, or `value` when the counter went down (a restart from zero). The first
sample ever seen of a (series, instance) contributes 0: without a previous value there is no
increase to know (Prometheus' rate() makes the same choice). A sample older than the newest one
already seen of its (series, instance) is out of order: it contributes 0 and leaves the previous
value alone, since taking it as a reset would count the whole counter again.

The previous value crosses window boundaries, so a replay from offset C must start from the
values as they were just before C. `base` holds them as of the last commit point and `_log` the
(key, offset, value, ts) of every in-order cumulative sample since, so `fold(C)` can move the
base forward.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.core.columns import GrowableArray
from pipeline.core.series import SeriesIdentity, SeriesTable

_NO_TS = np.iinfo(np.int64).min
_TS_BITS = 42  # epoch ms fit until 2109; the rest of an int64 numbers the keys of a batch


class CumulativeCounters:
    """staleness_ms: a previous value older than this (event time) no longer counts, so
    instances that stopped reporting drop out of the state and of the checkpoints."""

    def __init__(self, series: SeriesTable, staleness_ms: int = 600_000) -> None:
        self._series = series
        self.staleness_ms = staleness_ms
        self._key_of: dict[int, int] = {}  # (series << 32 | instance) → dense key
        self._pairs: list[tuple[int, int]] = []
        self._last = GrowableArray(np.float64)
        self._last_ts = GrowableArray(np.int64)
        self._base = GrowableArray(np.float64)
        self._base_ts = GrowableArray(np.int64)
        self._log_key = GrowableArray(np.int64)
        self._log_offset = GrowableArray(np.int64)
        self._log_value = GrowableArray(np.float64)
        self._log_ts = GrowableArray(np.int64)

    def _keys(self, series: np.ndarray, instance: np.ndarray) -> np.ndarray:
        codes = (series.astype(np.int64) << 32) | instance.astype(np.int64)
        distinct, inverse = np.unique(codes, return_inverse=True)
        dense = np.empty(len(distinct), np.int64)
        for i, code in enumerate(distinct.tolist()):
            key = self._key_of.get(code)
            if key is None:
                key = len(self._pairs)
                self._key_of[code] = key
                self._pairs.append((code >> 32, code & 0xFFFFFFFF))
                self._last.append(np.nan)
                self._last_ts.append(_NO_TS)
                self._base.append(np.nan)
                self._base_ts.append(_NO_TS)
            dense[i] = key
        return dense[inverse]

    def series_ids(self) -> np.ndarray:
        """Series ids with state here (the series table must not forget them)."""
        return np.fromiter((sid for sid, _ in self._pairs), np.int64, len(self._pairs))

    def increases(
        self,
        series: np.ndarray,
        instance: np.ndarray,
        value: np.ndarray,
        ts: np.ndarray,
        offset: np.ndarray,
    ) -> np.ndarray:
        """Increase contributed by each sample (arrays in partition order); updates the state."""
        if len(value) == 0:
            return np.empty(0, np.float64)
        keys = self._keys(series, instance)
        order = np.argsort(keys, kind="stable")
        k, v, t = keys[order], value[order], ts[order]
        starts = np.ones(len(k), dtype=bool)
        starts[1:] = k[1:] != k[:-1]
        group = np.cumsum(starts) - 1
        # Newest ts before each sample within its key: a per-group running max, done as one
        # running max over (group, ts) packed into an int64.
        packed = np.maximum.accumulate((group << _TS_BITS) | t) - (group << _TS_BITS)
        newest_before = np.empty_like(t)
        newest_before[1:] = packed[:-1]
        newest_before[starts] = _NO_TS
        newest_before = np.maximum(newest_before, self._last_ts.view()[k])
        in_order = t >= newest_before

        inc_sorted = np.zeros(len(v))
        kept = np.flatnonzero(in_order)
        if len(kept):
            kk, kv, kt = k[kept], v[kept], t[kept]
            kstarts = np.ones(len(kk), dtype=bool)
            kstarts[1:] = kk[1:] != kk[:-1]
            prev = np.empty_like(kv)
            prev[1:] = kv[:-1]
            last = self._last.view()
            prev[kstarts] = last[kk[kstarts]]
            prev_ts = np.empty_like(kt)
            prev_ts[1:] = kt[:-1]
            prev_ts[kstarts] = self._last_ts.view()[kk[kstarts]]
            # A previous value older than the staleness bound is forgotten (like a new instance).
            prev[(kt - prev_ts) > self.staleness_ms] = np.nan
            inc = np.where(kv >= prev, kv - prev, kv)
            inc[np.isnan(prev)] = 0.0
            inc_sorted[kept] = inc
            kends = np.ones(len(kk), dtype=bool)
            kends[:-1] = kstarts[1:]
            last[kk[kends]] = kv[kends]
            self._last_ts.view()[kk[kends]] = kt[kends]
        out = np.empty_like(inc_sorted)
        out[order] = inc_sorted
        accepted = np.zeros(len(v), dtype=bool)
        accepted[order] = in_order
        self._log_key.extend(keys[accepted])
        self._log_offset.extend(offset[accepted])
        self._log_value.extend(value[accepted])
        self._log_ts.extend(ts[accepted])
        return out

    def fold(self, before_offset: int) -> None:
        """Move the replay base to just before `before_offset`, dropping the log up to it."""
        n = int(np.searchsorted(self._log_offset.view(), before_offset, side="left"))
        if n == 0:
            return
        keys = self._log_key.view()[:n]
        # The last entry per key wins: take first occurrences in the reversed log.
        distinct, first = np.unique(keys[::-1], return_index=True)
        self._base.view()[distinct] = self._log_value.view()[:n][::-1][first]
        self._base_ts.view()[distinct] = self._log_ts.view()[:n][::-1][first]
        for log in (self._log_key, self._log_offset, self._log_value, self._log_ts):
            log.drop_head(n)

    def base_entries(self, horizon_ts: int) -> list[list[Any]]:
        """JSON-ready [series identity, instance, value, ts] per key with a base value.

        Entries older than horizon_ts are dropped for good: the caller picks a horizon far enough
        back that no sample that can still be aggregated would find them fresh.
        """
        base = self._base.view()
        base_ts = self._base_ts.view()
        expired = ~np.isnan(base) & (base_ts < horizon_ts)
        base[expired] = np.nan
        out: list[list[Any]] = []
        for key in np.flatnonzero(~np.isnan(base)).tolist():
            sid, iid = self._pairs[key]
            out.append(
                [
                    self._series.identities[sid].to_json(),
                    self._series.instance_names[iid],
                    float(base[key]),
                    int(base_ts[key]),
                ]
            )
        return out

    def restore(self, entries: list[list[Any]]) -> None:
        """Set both base and live values from a checkpoint (the state just before its offset)."""
        for identity_json, instance, value, ts in entries:
            sid = self._series.intern(SeriesIdentity.from_json(identity_json))
            iid = self._series.instance_id(instance)
            key = int(self._keys(np.array([sid], np.int32), np.array([iid], np.int32))[0])
            self._base.view()[key] = value
            self._last.view()[key] = value
            self._base_ts.view()[key] = ts
            self._last_ts.view()[key] = ts
