"""A batch of encoded rollups laid out for sending: one buffer, requests are slices of it.

`RollupEncoder.encode_batch` leaves per rollup its plan, raw values and timestamp.
`EncodedBatch.layout(key_hash, shards)` then, for the whole batch at once with numpy: converts
the values to Prometheus' units, orders the rollups by (shard, window_end, series hash, arrival)
— so each shard's rollups are contiguous and in time order —, drops exact repeats (a rollup
delivered twice: same series, window and values; two different values for one window are both
kept, the store decides), joins the plans' TimeSeries templates in that order and writes every
double and timestamp varint into their holes. A request is then a range of rollups, its body a
slice of the buffer: no bytes object per rollup, no per-sample Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from pipeline.sinks.remote_write.wire import MIN_TS, TAIL_LEN, timestamp_tails

if TYPE_CHECKING:
    from pipeline.sinks.remote_write.rollup_encoder import SeriesPlan

_CHUNK = 8 + TAIL_LEN  # a sample's double and timestamp tail
_CHUNK_ITEM = np.dtype([("value", "<f8"), ("tail", f"V{TAIL_LEN}")])  # packed: 15 bytes
_SAMPLES = attrgetter("samples")
_MULTIPLIERS = attrgetter("multiplier_bytes")
_DIVISORS = attrgetter("divisor_bytes")
_TEMPLATE = attrgetter("template")
_OFFSETS = attrgetter("value_offsets")


@dataclass(slots=True)
class Layout:
    """The batch in send order. Rollup `i` (0 ≤ i < len(positions)) is
    `data[starts[i]:starts[i + 1]]`; shard `s` sends rollups `shard_ranges[s]`."""

    data: memoryview
    starts: list[int]
    #: samples_before[i]: samples of rollups 0..i-1 (one more entry than rollups).
    samples_before: NDArray[np.int64]
    positions: list[int]  # index into the runner's batch
    plans: list[SeriesPlan]
    #: send index → batch indexes of its exact repeats, which were dropped and share its fate.
    repeats: dict[int, list[int]]
    shard_ranges: list[tuple[int, int]]

    def body(self, lo: int, hi: int) -> memoryview:
        return self.data[self.starts[lo] : self.starts[hi]]

    def samples(self, lo: int, hi: int) -> int:
        return int(self.samples_before[hi] - self.samples_before[lo])

    def batch_indexes(self, lo: int, hi: int) -> list[int]:
        """The runner's batch indexes of rollups lo..hi-1 and of their dropped repeats."""
        out = self.positions[lo:hi]
        if self.repeats:
            for i in range(lo, hi):
                out += self.repeats.get(i, ())
        return out

    def requests(self, lo: int, hi: int, max_samples: int) -> list[tuple[int, int]]:
        """Rollups lo..hi-1 cut into ranges of at most `max_samples` samples (a rollup is never
        split: one larger than that goes alone)."""
        out = []
        before = self.samples_before
        while lo < hi:
            end = int(np.searchsorted(before, before[lo] + max_samples, side="right")) - 1
            end = min(max(end, lo + 1), hi)
            out.append((lo, end))
            lo = end
        return out


class EncodedBatch:
    """What `RollupEncoder.encode_batch` found: per usable rollup (in batch order) its plan,
    raw values (concatenated), timestamp and batch index, plus the unusable ones' errors and the
    bytes of rollups whose timestamp does not fit the templates (`one_offs`, by rollup)."""

    def __init__(
        self,
        plans: list[SeriesPlan],
        values: list[float],
        stamps: list[int],
        positions: list[int],
        errors: list[tuple[int, Exception]],
        one_offs: dict[int, bytes],
    ) -> None:
        self.plans = plans
        self.values = values
        self.stamps = stamps
        self.positions = positions
        self.errors = errors
        self.one_offs = one_offs

    def layout(self, key_hash: NDArray[np.int64], shards: int) -> Layout:
        """The rollups ordered by (shard, window_end, key_hash, batch index), repeats dropped;
        `key_hash` is each rollup's series hash (its shard is the hash modulo `shards`)."""
        plans, n = self.plans, len(self.plans)
        # map(attrgetter) rather than comprehensions: C-level loops over the batch's plans.
        counts = np.fromiter(map(_SAMPLES, plans), dtype=np.int64, count=n)
        first_sample = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=first_sample[1:])
        multipliers = np.frombuffer(b"".join(map(_MULTIPLIERS, plans)), np.float64)
        divisors = np.frombuffer(b"".join(map(_DIVISORS, plans)), np.float64)
        raw_values = np.fromiter(self.values, dtype=np.float64, count=len(self.values))
        doubles = raw_values * multipliers / divisors
        stamps = np.array(self.stamps, dtype=np.int64)
        shard_of = key_hash % shards
        # Stable: a series' rollups for one window stay in arrival order, next to each other.
        order = np.lexsort((key_hash, stamps, shard_of))
        repeats: dict[int, list[int]] = {}
        dropped = self._exact_repeats(order, key_hash, stamps, doubles, first_sample, repeats)
        if dropped:
            order = order[~np.isin(order, list(dropped))]
        send = order.tolist()
        plans_sent = list(map(plans.__getitem__, send))
        if self.one_offs:
            one_offs = self.one_offs
            parts = [one_offs.get(k) or plans[k].template for k in send]
        else:
            parts = list(map(_TEMPLATE, plans_sent))
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
        starts = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        # numpy's allocation, not bytearray's: large arrays get huge pages. A bytearray join
        # saves this copy in a microbenchmark but, in the sink, its page faults on every batch
        # cost the runner thread 0.1 s more CPU per 50,000 rollups than join and copy.
        buffer = np.frombuffer(b"".join(parts), dtype=np.uint8).copy()
        sent_counts = counts[order]
        samples_before = np.zeros(len(send) + 1, dtype=np.int64)
        np.cumsum(sent_counts, out=samples_before[1:])
        total = int(samples_before[-1])
        # Sample j of the send order is sample `sample_index[j]` of the encoding order.
        rollup_of_sample = np.repeat(np.arange(len(send)), sent_counts)
        sample_index = np.arange(total) + np.repeat(
            first_sample[order] - samples_before[:-1], sent_counts
        )
        offsets = np.frombuffer(b"".join(map(_OFFSETS, plans_sent)), np.int64)
        at = offsets + starts[:-1][rollup_of_sample]
        sent_stamps = stamps[order]
        if self.one_offs:  # their bytes are complete already: write only into templates
            templated = ~np.isin(order, list(self.one_offs))
            keep = templated[rollup_of_sample]
            at, sample_index, rollup_of_sample = (
                at[keep],
                sample_index[keep],
                rollup_of_sample[keep],
            )
            sent_stamps = np.where(templated, sent_stamps, MIN_TS)
        # Each sample's double and timestamp tail are adjacent: one 15-byte item per sample,
        # written through a view whose item i is buffer[i : i + 15] (the items written never
        # overlap). Opaque 15- and 7-byte items are copied whole; rows of single bytes were
        # copied byte by byte (twice the time).
        chunks = np.empty(len(at), dtype=_CHUNK_ITEM)
        chunks["value"] = doubles[sample_index]
        tails = timestamp_tails(sent_stamps).view(f"V{TAIL_LEN}").reshape(-1)
        chunks["tail"] = tails[rollup_of_sample]
        rows = np.ndarray((len(buffer) - _CHUNK + 1,), f"V{_CHUNK}", buffer, 0, (1,))
        rows[at] = chunks.view(f"V{_CHUNK}")
        shard_sent = shard_of[order]
        edges = np.searchsorted(shard_sent, np.arange(shards + 1)).tolist()
        return Layout(
            memoryview(buffer),  # type: ignore[arg-type]
            starts.tolist(),
            samples_before,
            list(map(self.positions.__getitem__, send)),
            plans_sent,
            _by_send_index(repeats, send),
            [(edges[s], edges[s + 1]) for s in range(shards)],
        )

    def _exact_repeats(
        self,
        order: NDArray[np.intp],
        key_hash: NDArray[np.int64],
        stamps: NDArray[np.int64],
        doubles: NDArray[np.float64],
        first_sample: NDArray[np.int64],
        repeats: dict[int, list[int]],
    ) -> set[int]:
        """Rollups (encoding index) that repeat an earlier one exactly; fills `repeats` with
        kept rollup → batch indexes of its repeats. Rare: numpy finds the candidates (same
        series hash and window: adjacent in `order`), Python compares plans and values."""
        hashes, ends = key_hash[order], stamps[order]
        same = (hashes[1:] == hashes[:-1]) & (ends[1:] == ends[:-1])
        if not same.any():
            return set()
        run_starts = np.flatnonzero(np.concatenate(([True], ~same)))
        run_ends = np.append(run_starts[1:], len(order))
        several = run_ends - run_starts > 1
        dropped: set[int] = set()
        for lo, hi in zip(run_starts[several].tolist(), run_ends[several].tolist(), strict=True):
            kept: dict[tuple[int, bytes], int] = {}
            for k in order[lo:hi].tolist():  # in batch order (the sort is stable)
                values = doubles[first_sample[k] : first_sample[k + 1]].tobytes()
                first = kept.setdefault((id(self.plans[k]), values), k)
                if first != k:
                    dropped.add(k)
                    repeats.setdefault(first, []).append(self.positions[k])
        return dropped


def _by_send_index(repeats: dict[int, list[int]], send: list[int]) -> dict[int, list[int]]:
    if not repeats:
        return {}
    rank = {k: i for i, k in enumerate(send)}
    return {rank[k]: found for k, found in repeats.items()}
