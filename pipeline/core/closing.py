"""Rollups of closing windows: exact sums, percentiles and digests, rendered in bulk.

Everything here depends only on what a window holds (values sorted by their bits, sums by
math.fsum, digests folded per input stream in a fixed order), never on arrival order, so a
replay re-emits byte-identical rollups.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.core.digest import DigestConfig, summarize_groups
from pipeline.core.durations import format_duration
from pipeline.core.render import ClosingColumns, render_bodies, series_prefix
from pipeline.core.rollup import Rollup, rollup_key
from pipeline.core.series import MetricKind, SeriesTable
from pipeline.core.windows import OpenWindows


class WindowRenderer:
    def __init__(self, series: SeriesTable, resolution_ms: int, digest: DigestConfig) -> None:
        self.series = series
        self.resolution_ms = resolution_ms
        self.digest = digest
        self._resolution_name = format_duration(resolution_ms)
        self._percentile_names = digest.percentile_names()
        self._prefixes: dict[int, bytes] = {}  # series id → its rollups' JSON up to window_start

    def rollups(self, w: OpenWindows, closing: np.ndarray) -> list[Rollup]:
        """Rollups of the closing slots (they stay in `w`: the caller releases them)."""
        order = closing[np.lexsort((w.series[closing], w.start[closing]))]
        # Held values of slot order[g] are values[starts[g]:ends[g]] (none if all were folded).
        values, starts, ends = w.take_closing(order)
        digestable = self.series.kinds.view()[w.series[order]] <= MetricKind.GAUGE
        slots = order.tolist()
        folded = {
            g: w.folded_digest(slot) for g, slot in enumerate(slots) if w.has_folded_digest(slot)
        }
        percentiles, digests = summarize_groups(
            values, starts, ends, digestable, folded, self.digest
        )

        res = self.resolution_ms
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
                self.resolution_ms,
            )
            self._prefixes[sid] = prefix
        return prefix

    def forget(self, series_ids: list[int]) -> None:
        """The series table is about to forget (and later reuse) these ids."""
        for sid in series_ids:
            self._prefixes.pop(sid, None)
