"""Open tumbling windows of one partition: a slot table with columnar aggregates.

Each open (series, window) owns a slot. Count, min, max and the offset bookkeeping live in numpy
columns indexed by slot, updated for a whole batch at once. Raw values are held per input
stream in a `ValueStore` (values.py): the partition's own samples and the samples forwarded to
it by other partitions, each folded in its own log's order so a replay re-emits identical
rollups however the two streams interleaved.

Offsets: `first_offset` / `first_max_ts` are the first own-stream offset feeding a window and
the partition's event-time clock just before it; `first_forwarded` the first offset of the
forwarded stream feeding it. A checkpoint resumes each stream from the oldest of these.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

import numpy as np

from pipeline.core.digest import DigestConfig
from pipeline.core.values import ValueStore

_INT_MAX = np.iinfo(np.int64).max

OWN = 0  # stream index: samples of the partition's own input
FORWARDED = 1  # stream index: samples forwarded to it by other partitions


class OpenWindows:
    def __init__(self, digest: DigestConfig, capacity: int = 1024) -> None:
        self.digest_config = digest
        self._slot_of: dict[int, int] = {}  # (series << 32 | window index) → slot
        self._free: list[int] = []
        self._used = 0
        self.by_end: dict[int, list[int]] = defaultdict(list)
        self.count: np.ndarray
        self.digestable: np.ndarray
        self.min: np.ndarray
        self.max: np.ndarray
        self.first_offset: np.ndarray
        self.first_max_ts: np.ndarray
        self.first_forwarded: np.ndarray
        self.series: np.ndarray
        self.start: np.ndarray
        self.code: np.ndarray
        self.values = (ValueStore(digest, capacity), ValueStore(digest, capacity))
        self._alloc(capacity)

    # name → (dtype, value of a free slot)
    _COLUMNS: ClassVar[dict[str, tuple[Any, Any]]] = {
        "count": (np.int64, 0),
        "digestable": (np.bool_, False),
        "min": (np.float64, np.inf),
        "max": (np.float64, -np.inf),
        "first_offset": (np.int64, _INT_MAX),
        "first_max_ts": (np.int64, 0),
        "first_forwarded": (np.int64, _INT_MAX),
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
        for store in self.values:
            store.grow(capacity)

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
        stream: int = OWN,
    ) -> np.ndarray:
        """Slot per distinct group code, opening windows that are new (arrays are per group).

        first_offset: each group's first offset in `stream`; first_max_ts: the partition's
        clock before it (own stream only). Kept for windows that stream had not fed yet."""
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
                self.digestable[slot] = digestable[i]
                self.by_end[int(starts[i]) + resolution_ms].append(slot)
            out[i] = slot
        # Offsets only grow within a stream, so the first one seen of a window is its oldest.
        column = self.first_offset if stream == OWN else self.first_forwarded
        unset = column[out] == _INT_MAX
        if unset.any():
            column[out[unset]] = first_offset[unset]
            if stream == OWN:
                self.first_max_ts[out[unset]] = first_max_ts[unset]
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
        stream: int = OWN,
    ) -> None:
        """Keep each sample's value (counters: its increase) until its window closes, in the
        store of the stream it came from (OWN or FORWARDED; see values.py)."""
        self.values[stream].add(slots, values, self.start, self.digestable, counted)

    @property
    def raw(self) -> np.ndarray:
        """Values held per slot, both streams."""
        return self.values[OWN].raw + self.values[FORWARDED].raw

    @property
    def folded_sum(self) -> np.ndarray:
        """Sum of the values folded away per slot: own stream's, then forwarded (fixed order)."""
        return self.values[OWN].folded_sum + self.values[FORWARDED].folded_sum

    def folded_digest(self, slot: int) -> Any:
        """Digest of the values folded away from `slot` (None if none were): own stream's
        merged with the forwarded stream's, always in that order."""
        own = self.values[OWN].digests.get(slot)
        forwarded = self.values[FORWARDED].digests.get(slot)
        if own is None or forwarded is None:
            return own if forwarded is None else forwarded
        return own.merge(forwarded)

    def has_folded_digest(self, slot: int) -> bool:
        return any(slot in store.digests for store in self.values)

    def take_closing(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Remove the raw values of the given slots; returns them grouped in the order of
        `slots`, ascending within each slot, with each slot's bounds (values, starts, ends):
        slot slots[g] holds values[starts[g]:ends[g]] (empty when all were folded away).

        Equal values are ordered by their bits (-0.0 before 0.0), so the result never depends
        on the order the values were held in.
        """
        parts = [store.take(slots, self.start, len(self.count)) for store in self.values]
        picked_slots = np.concatenate([p[0] for p in parts])
        picked_values = np.concatenate([p[1] for p in parts])
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
            self._free.append(slot)
        for store in self.values:
            store.release(slots)
        for name, (_, fill) in self._COLUMNS.items():
            getattr(self, name)[slots] = fill

    def oldest(self) -> tuple[int, int] | None:
        """(first own-stream offset, max_ts before it) of the open window that reaches furthest
        back in the partition's own input; None if no open window holds own input."""
        if not self._slot_of:
            return None
        slot = int(np.argmin(self.first_offset[: self._used]))
        if self.first_offset[slot] == _INT_MAX:
            return None
        return int(self.first_offset[slot]), int(self.first_max_ts[slot])

    def oldest_forwarded(self) -> int | None:
        """First forwarded-stream offset that an open window still needs (None: none does)."""
        if not self._slot_of:
            return None
        first = int(self.first_forwarded[: self._used].min())
        return None if first == _INT_MAX else first

    def raw_values_held(self) -> int:
        return sum(store.held() for store in self.values)
