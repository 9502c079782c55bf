"""Cumulative counters: per-sample increase with reset handling, and replay-safe prior values.

A cumulative counter's increase at a sample is `value - previous` of the same (series, instance)
in partition order, or `value` when the counter went down (a restart from zero). The first
sample ever seen of a (series, instance) contributes 0: without a previous value there is no
increase to know (Prometheus' rate() makes the same choice).

The previous value crosses window boundaries, so a replay from offset C must start from the
values as they were just before C. `base` holds them as of the last commit point and `_log` the
(key, offset, value) of every cumulative sample since, so `fold(C)` can move the base forward.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.core.columns import GrowableArray
from pipeline.core.series import SeriesIdentity, SeriesTable


class CumulativeCounters:
    def __init__(self, series: SeriesTable) -> None:
        self._series = series
        self._key_of: dict[int, int] = {}  # (series << 32 | instance) → dense key
        self._pairs: list[tuple[int, int]] = []
        self._last = GrowableArray(np.float64)
        self._base = GrowableArray(np.float64)
        self._log_key = GrowableArray(np.int64)
        self._log_offset = GrowableArray(np.int64)
        self._log_value = GrowableArray(np.float64)

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
                self._base.append(np.nan)
            dense[i] = key
        return dense[inverse]

    def increases(
        self, series: np.ndarray, instance: np.ndarray, value: np.ndarray, offset: np.ndarray
    ) -> np.ndarray:
        """Increase contributed by each sample (arrays in partition order); updates the state."""
        if len(value) == 0:
            return np.empty(0, np.float64)
        keys = self._keys(series, instance)
        order = np.argsort(keys, kind="stable")
        k, v = keys[order], value[order]
        starts = np.ones(len(k), dtype=bool)
        starts[1:] = k[1:] != k[:-1]
        prev = np.empty_like(v)
        prev[1:] = v[:-1]
        last = self._last.view()
        prev[starts] = last[k[starts]]
        inc_sorted = np.where(v >= prev, v - prev, v)
        inc_sorted[np.isnan(prev)] = 0.0
        ends = np.ones(len(k), dtype=bool)
        ends[:-1] = starts[1:]
        last[k[ends]] = v[ends]
        inc = np.empty_like(inc_sorted)
        inc[order] = inc_sorted
        self._log_key.extend(keys)
        self._log_offset.extend(offset)
        self._log_value.extend(value)
        return inc

    def fold(self, before_offset: int) -> None:
        """Move the replay base to just before `before_offset`, dropping the log up to it."""
        offsets = self._log_offset.view()
        n = int(np.searchsorted(offsets, before_offset, side="left"))
        if n == 0:
            return
        keys = self._log_key.view()[:n]
        values = self._log_value.view()[:n]
        # The last entry per key wins: take first occurrences in the reversed log.
        rev_keys = keys[::-1]
        distinct, first = np.unique(rev_keys, return_index=True)
        self._base.view()[distinct] = values[::-1][first]
        for log in (self._log_key, self._log_offset, self._log_value):
            log.drop_head(n)

    def base_entries(self) -> list[list[Any]]:
        """JSON-ready [series identity, instance, value] for every key with a base value."""
        base = self._base.view()
        out: list[list[Any]] = []
        for key in np.flatnonzero(~np.isnan(base)).tolist():
            sid, iid = self._pairs[key]
            out.append(
                [
                    self._series.identities[sid].to_json(),
                    self._series.instance_names[iid],
                    float(base[key]),
                ]
            )
        return out

    def restore(self, entries: list[list[Any]]) -> None:
        """Set both base and live values from a checkpoint (the state just before its offset)."""
        for identity_json, instance, value in entries:
            sid = self._series.intern(SeriesIdentity.from_json(identity_json))
            iid = self._series.instance_id(instance)
            key = int(self._keys(np.array([sid], np.int32), np.array([iid], np.int32))[0])
            self._base.view()[key] = value
            self._last.view()[key] = value
