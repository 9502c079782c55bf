"""Raw values of open windows from one input stream, held until their window closes.

A window may be fed by two streams: the samples of its own input partition and the samples
other partitions forwarded to it. Each stream has its own store, because folding (below) must
depend only on the order of one log: the two streams interleave differently in every run, while
each stream's own order is fixed by Kafka and replays identically.

Values are kept as appended (slot, value) chunks, filed by window start so that closing (or
folding) a window touches only its own window's chunks, however many windows a long allowed
lateness keeps open; they are only sorted when their window closes. A window past `raw_limit`
values of one stream has its oldest values folded, in whole chunks taken in that stream's
order, into a partial sum (math.fsum per chunk: correctly rounded, so independent of how the
consumer batched the input) and, for timers and gauges, a digest.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from pipeline.core.digest import DigestConfig, build_digest


class ValueStore:
    def __init__(self, digest: DigestConfig, capacity: int) -> None:
        self.digest_config = digest
        self.raw = np.zeros(capacity, np.int64)  # values held per slot
        self.folded_sum = np.zeros(capacity, np.float64)
        self.digests: dict[int, Any] = {}  # slot → fastdigest of the values folded away
        # window start → ([slot chunk, ...], [value chunk, ...]), in arrival order
        self._chunks: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}

    def grow(self, capacity: int) -> None:
        for name in ("raw", "folded_sum"):
            old = getattr(self, name)
            grown = np.zeros(capacity, old.dtype)
            grown[: len(old)] = old
            setattr(self, name, grown)

    def add(
        self,
        slots: np.ndarray,
        values: np.ndarray,
        window_start: np.ndarray,
        digestable: np.ndarray,
        counted: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Keep each sample's value (counters: its increase) until its window closes.

        window_start and digestable are the window table's columns, indexed by slot.
        counted: (distinct slots, number of values of each) when the caller has them already.
        """
        if len(values) == 0:
            return
        self._file(slots.astype(np.int32, copy=False), values, window_start)
        touched, added = np.unique(slots, return_counts=True) if counted is None else counted
        self.raw[touched] += added
        limit = self.digest_config.raw_limit
        if limit <= 0:
            return
        heavy = touched[self.raw[touched] >= limit]
        if len(heavy):
            self._fold(heavy, limit, window_start, digestable)

    def _fold(
        self, heavy: np.ndarray, limit: int, window_start: np.ndarray, digestable: np.ndarray
    ) -> None:
        picked_slots, picked_values = self.take(heavy, window_start, len(self.raw))
        order = np.argsort(picked_slots, kind="stable")  # stable: keeps arrival order per slot
        picked_slots, picked_values = picked_slots[order], picked_values[order]
        bounds = np.flatnonzero(np.diff(picked_slots)) + 1
        keep_slots: list[np.ndarray] = []
        keep_values: list[np.ndarray] = []
        compression = self.digest_config.compression
        for slot_ids, values in zip(
            np.split(picked_slots, bounds), np.split(picked_values, bounds), strict=True
        ):
            slot = int(slot_ids[0])
            whole = len(values) - len(values) % limit
            for lo in range(0, whole, limit):
                chunk = values[lo : lo + limit]
                self.folded_sum[slot] += math.fsum(chunk.tolist())
                if digestable[slot]:
                    built = build_digest(chunk, compression)
                    old = self.digests.get(slot)
                    self.digests[slot] = built if old is None else old.merge(built)
            keep_slots.append(slot_ids[whole:])
            keep_values.append(values[whole:])
            self.raw[slot] = len(values) - whole
        for slot_ids, values in zip(keep_slots, keep_values, strict=True):
            if len(values):
                self._file(slot_ids, values, window_start)

    def _file(self, slots: np.ndarray, values: np.ndarray, window_start: np.ndarray) -> None:
        """Append (slot, value) pairs to the chunks of their windows, arrival order kept."""
        starts = window_start[slots]
        first, last = int(starts.min()), int(starts.max())
        if first == last:
            bins = [(first, slots, values)]
        else:
            order = np.argsort(starts, kind="stable")  # stable: keeps arrival order per window
            starts, slots, values = starts[order], slots[order], values[order]
            edges = [0, *(np.flatnonzero(np.diff(starts)) + 1).tolist(), len(starts)]
            bins = [(int(starts[a]), slots[a:b], values[a:b]) for a, b in itertools.pairwise(edges)]
        for start, slot_ids, vals in bins:
            filed = self._chunks.get(start)
            if filed is None:
                self._chunks[start] = ([slot_ids], [vals])
            else:
                filed[0].append(slot_ids)
                filed[1].append(vals)

    def take(
        self, slots: np.ndarray, window_start: np.ndarray, capacity: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Remove and return the raw (slot, value) pairs of the given slots, grouped by window
        start (ascending), in arrival order within a window."""
        wanted = np.zeros(capacity, dtype=bool)
        wanted[slots] = True
        taken_slots: list[np.ndarray] = []
        taken_values: list[np.ndarray] = []
        for start in np.unique(window_start[slots]).tolist():
            filed = self._chunks.pop(start, None)
            if filed is None:
                continue
            all_slots = np.concatenate(filed[0])
            all_values = np.concatenate(filed[1])
            hit = wanted[all_slots]
            if hit.all():
                taken_slots.append(all_slots)
                taken_values.append(all_values)
                continue
            taken_slots.append(all_slots[hit])
            taken_values.append(all_values[hit])
            if not hit.any():
                self._chunks[start] = ([all_slots], [all_values])
            else:
                self._chunks[start] = ([all_slots[~hit]], [all_values[~hit]])
        if not taken_slots:
            return np.empty(0, np.int32), np.empty(0, np.float64)
        return np.concatenate(taken_slots), np.concatenate(taken_values)

    def release(self, slots: np.ndarray) -> None:
        self.raw[slots] = 0
        self.folded_sum[slots] = 0.0
        for slot in slots.tolist():
            self.digests.pop(slot, None)

    def held(self) -> int:
        return sum(len(c) for _, values in self._chunks.values() for c in values)
