"""What one partition knows of the other partitions' event time: their forwarded watermarks.

A sample that lands on a partition that does not own its series is judged on time or late
there, against the clock of the partition it was produced to, and forwarded to its owner only
if it is on time. Each partition also tells every other partition how far its own clock has
come: a watermark record "partition q will forward nothing more to windows ending at or before
W". It sends that record after the forwards it covers, through the same producer to the same
partition of the repartition topic, so every forwarded sample reaches its owner before the
watermark that would have closed its window.

An owner closes a window only when its own clock and the watermark of every other partition
have passed its end (the minimum over all inputs, as in Flink's watermark propagation). Which
windows are closed when depends on how the owner's two input streams interleave; what each
window holds does not: whatever a partition judged on time reaches the owner before its
watermark does. So rollups are the same in every run and every replay.

The watermarks known at each offset of the repartition stream are a function of that stream
alone; `fold` keeps them as of a checkpoint's offset so a replay starts from the same state.
"""

from __future__ import annotations

import numpy as np

NO_TIME = -(2**62)
NO_LIMIT = 2**62  # the minimum over no other partitions: nothing holds windows back


class UpstreamWatermarks:
    """Latest watermark received from each partition of the input (its own excluded)."""

    def __init__(self, partitions: int, own: int, base: list[int] | None = None) -> None:
        self.partitions = partitions
        self.own = own
        known = np.full(partitions, NO_TIME, np.int64)
        if base is not None and len(base) == partitions:
            known[:] = base
        known[own] = NO_LIMIT  # the own clock is kept by the aggregator itself
        self._base = known.copy()
        self.known = known
        self._log: list[tuple[int, int, int]] = []  # (stream offset, partition, watermark)

    def observe(self, offset: int, partition: int, watermark: int) -> bool:
        """Take a watermark record read at `offset`; True if it moved anything."""
        if partition == self.own or not 0 <= partition < self.partitions:
            return False  # not one of ours (another partition count): ignore
        if watermark <= self.known[partition]:
            return False
        self.known[partition] = watermark
        self._log.append((offset, partition, watermark))
        return True

    @property
    def minimum(self) -> int:
        """Watermark of the slowest other partition (NO_LIMIT when there is none)."""
        return int(self.known.min())

    @property
    def maximum(self) -> int:
        """Watermark of the fastest other partition (NO_TIME when none has reported)."""
        if self.partitions == 1:
            return NO_TIME
        others = np.delete(self.known, self.own)
        return int(others.max())

    def fold(self, before_offset: int) -> list[int]:
        """Move the replay base to just before `before_offset`; returns it for a checkpoint."""
        keep = 0
        for offset, partition, watermark in self._log:
            if offset >= before_offset:
                break
            self._base[partition] = max(self._base[partition], watermark)
            keep += 1
        del self._log[:keep]
        base = self._base.copy()
        base[self.own] = NO_TIME
        return [int(x) for x in base]
