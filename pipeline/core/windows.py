"""Open tumbling windows of one partition: a slot table with columnar aggregates and raw values.

Each open (series, window) owns a slot. Count, min, max and the offset bookkeeping live in numpy
columns indexed by slot, updated for a whole batch at once. Raw values are kept as appended
(slot, value) chunks, filed by window start so that closing (or folding) a window touches only
its own window's chunks, however many windows a long allowed lateness keeps open; they are
only sorted when their window closes. The sum is taken then too, with
math.fsum per fold chunk and over the rest (each correctly rounded, so independent of how the
consumer batched the input): a running float sum would not be, and a replay must re-emit
identical rollups.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from typing import Any, ClassVar

import numpy as np

from pipeline.core.digest import DigestConfig, build_digest

_INT_MAX = np.iinfo(np.int64).max


class OpenWindows:
    def __init__(self, digest: DigestConfig, capacity: int = 1024) -> None:
        self.digest_config = digest
        self._slot_of: dict[int, int] = {}  # (series << 32 | window index) → slot
        self._free: list[int] = []
        self._used = 0
        self.by_end: dict[int, list[int]] = defaultdict(list)
        self.count: np.ndarray
        self.folded_sum: np.ndarray
        self.digestable: np.ndarray
        self.min: np.ndarray
        self.max: np.ndarray
        self.raw: np.ndarray
        self.first_offset: np.ndarray
        self.first_max_ts: np.ndarray
        self.series: np.ndarray
        self.start: np.ndarray
        self.code: np.ndarray
        self._alloc(capacity)
        # window start → ([slot chunk, ...], [value chunk, ...]), in arrival order
        self._chunks: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        self.digests: dict[int, Any] = {}

    # name → (dtype, value of a free slot)
    _COLUMNS: ClassVar[dict[str, tuple[Any, Any]]] = {
        "count": (np.int64, 0),
        "folded_sum": (np.float64, 0.0),
        "digestable": (np.bool_, False),
        "min": (np.float64, np.inf),
        "max": (np.float64, -np.inf),
        "raw": (np.int64, 0),
        "first_offset": (np.int64, _INT_MAX),
        "first_max_ts": (np.int64, 0),
        "series": (np.int32, -1),
        "start": (np.int64, 0),
        "code": (np.int64, -1),
    }

    def _alloc(self, capacity: int) -> None:
        for name, (dtype, fill) in self._COLUMNS.items():
            grown = np.full(capacity, fill, dtype=dtype)
            old = self.__dict__.get(name)
            if old is not None:
                grown[: len(old)] = old
            setattr(self, name, grown)

    def __len__(self) -> int:
        return len(self._slot_of)

    def slots_for(
        self,
        codes: np.ndarray,
        series: np.ndarray,
        starts: np.ndarray,
        resolution_ms: int,
        first_offset: np.ndarray,
        first_max_ts: np.ndarray,
        digestable: np.ndarray,
    ) -> np.ndarray:
        """Slot per distinct group code, opening windows that are new (arrays are per group)."""
        out = np.empty(len(codes), np.int64)
        slot_of = self._slot_of
        for i, code in enumerate(codes.tolist()):
            slot = slot_of.get(code)
            if slot is None:
                slot = self._new_slot()
                slot_of[code] = slot
                self.code[slot] = code
                self.series[slot] = series[i]
                self.start[slot] = starts[i]
                self.first_offset[slot] = first_offset[i]
                self.first_max_ts[slot] = first_max_ts[i]
                self.digestable[slot] = digestable[i]
                self.by_end[int(starts[i]) + resolution_ms].append(slot)
            out[i] = slot
        return out

    def _new_slot(self) -> int:
        if self._free:
            return self._free.pop()
        if self._used == len(self.count):
            self._alloc(2 * len(self.count))
        self._used += 1
        return self._used - 1

    def add_values(
        self,
        slots: np.ndarray,
        values: np.ndarray,
        counted: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Keep each sample's value (counters: its increase) until its window closes.

        A window past raw_limit values has its oldest values folded, in whole chunks of
        raw_limit taken in arrival order, into a partial sum and (timers, gauges) its digest.
        Chunk boundaries depend only on the partition's order, never on consumer batching, so a
        replay reproduces the same sum to the last bit and the same digest.
        counted: (distinct slots, number of values of each) when the caller has them already.
        """
        if len(values) == 0:
            return
        self._file(slots.astype(np.int32, copy=False), values)
        touched, added = np.unique(slots, return_counts=True) if counted is None else counted
        self.raw[touched] += added
        limit = self.digest_config.raw_limit
        if limit <= 0:
            return
        heavy = touched[self.raw[touched] >= limit]
        if len(heavy):
            self._fold(heavy, limit)

    def _fold(self, heavy: np.ndarray, limit: int) -> None:
        picked_slots, picked_values = self._take(heavy)
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
                if self.digestable[slot]:
                    built = build_digest(chunk, compression)
                    old = self.digests.get(slot)
                    self.digests[slot] = built if old is None else old.merge(built)
            keep_slots.append(slot_ids[whole:])
            keep_values.append(values[whole:])
            self.raw[slot] = len(values) - whole
        for slot_ids, values in zip(keep_slots, keep_values, strict=True):
            if len(values):
                self._file(slot_ids, values)

    def _file(self, slots: np.ndarray, values: np.ndarray) -> None:
        """Append (slot, value) pairs to the chunks of their windows, arrival order kept."""
        starts = self.start[slots]
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

    def _take(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Remove and return the raw (slot, value) pairs of the given slots, grouped by window
        start (ascending), in arrival order within a window."""
        wanted = np.zeros(len(self.count), dtype=bool)
        wanted[slots] = True
        taken_slots: list[np.ndarray] = []
        taken_values: list[np.ndarray] = []
        for start in np.unique(self.start[slots]).tolist():
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

    def take_closing(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Remove the raw values of the given slots; returns them grouped in the order of
        `slots`, ascending within each slot, with each slot's bounds (values, starts, ends):
        slot slots[g] holds values[starts[g]:ends[g]] (empty when all were folded away).

        Equal values are ordered by their bits (-0.0 before 0.0), so the result never depends
        on the order the values were held in.
        """
        picked_slots, picked_values = self._take(slots)
        rank = np.zeros(len(self.count), np.int16 if len(slots) < 2**15 else np.int32)
        rank[slots] = np.arange(len(slots))
        bits = picked_values.view(np.int64)
        order = np.argsort(np.where(bits < 0, bits ^ _INT_MAX, bits))  # total order of floats
        order = order[np.argsort(rank[picked_slots[order]], kind="stable")]  # radix sort
        sizes = np.bincount(rank[picked_slots], minlength=len(slots))
        ends = np.cumsum(sizes)
        return picked_values[order], ends - sizes, ends

    def release(self, slots: np.ndarray) -> None:
        for slot in slots.tolist():
            del self._slot_of[int(self.code[slot])]
            self.digests.pop(slot, None)
            self._free.append(slot)
        for name, (_, fill) in self._COLUMNS.items():
            getattr(self, name)[slots] = fill

    def oldest(self) -> tuple[int, int] | None:
        """(first offset, max_ts before it) of the open window that reaches furthest back."""
        if not self._slot_of:
            return None
        slot = int(np.argmin(self.first_offset[: self._used]))
        return int(self.first_offset[slot]), int(self.first_max_ts[slot])

    def raw_values_held(self) -> int:
        return sum(len(c) for _, values in self._chunks.values() for c in values)
