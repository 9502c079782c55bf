"""What one partition knows of every partition's event time: the forwarded watermarks.

A sample that lands on a partition that does not own its series is judged on time or late
there, against the clock of the partition it was produced to, and forwarded to its owner only
if it is on time. Each partition also tells every partition how far its own clock has
come: a watermark record "partition q will forward nothing more to windows ending at or before
W" (to itself too). It sends that record after the forwards it covers, through the same
producer to the same partition of the repartition topic, so every forwarded sample reaches its
owner before the watermark that would have closed its window.

An owner closes a window only when its own clock and the watermark of every partition, as
received through its repartition partition, have passed its end (the minimum over all inputs,
as in Flink's watermark propagation). Which windows are closed when depends on how the owner's
two input streams interleave; what each window holds does not: whatever a partition judged on
time reaches the owner before its watermark does. So rollups are the same in every run and
every replay.

The watermarks known at each offset of the repartition stream are a function of that stream
alone; `fold` keeps them as of a checkpoint's offset so a replay starts from the same state.
"""

from __future__ import annotations

import numpy as np

NO_TIME = -(2**62)
NO_LIMIT = 2**62  # the minimum over no other partitions: nothing holds windows back


class UpstreamWatermarks:
    """Latest watermark received from each partition of the input, this one's included: a
    partition forwards to itself too (cumulative counters take the repartition topic even from
    their owner), so its own watermark must reach it through the same log."""

    def __init__(self, partitions: int, own: int, base: list[int] | None = None) -> None:
        self.partitions = partitions
        self.own = own
        known = np.full(partitions, NO_TIME, np.int64)
        if base is not None and len(base) == partitions:
            known[:] = base
        if partitions == 1:
            known[:] = NO_LIMIT  # nothing is ever forwarded: nothing to wait for
        self._base = known.copy()
        self.known = known
        self._logged = known.copy()  # as received through the stream alone
        self._log: list[tuple[int, int, int]] = []  # (stream offset, partition, watermark)

    def observe(self, offset: int, partition: int, watermark: int) -> bool:
        """Take a watermark record read at `offset`; True if it moved anything."""
        if not 0 <= partition < self.partitions or self.partitions == 1:
            return False  # not one of ours (another partition count): ignore
        if watermark <= self._logged[partition]:
            return False
        self._logged[partition] = watermark
        self._log.append((offset, partition, watermark))
        if watermark <= self.known[partition]:
            return False  # known already, from the process that sent it (observe_local)
        self.known[partition] = watermark
        return True

    def observe_local(self, partition: int, watermark: int) -> bool:
        """Take a watermark straight from the process that sent it, before its record arrives.

        Only valid when every record that partition sent here before it has been read (the
        caller's check): then the record adds nothing but its watermark. Not part of the
        replayed state: `fold` keeps what the stream says, so a replay waits for the record,
        which closes the same windows with the same contents, only later."""
        if not 0 <= partition < self.partitions or self.partitions == 1:
            return False
        if watermark <= self.known[partition]:
            return False
        self.known[partition] = watermark
        return True

    @property
    def minimum(self) -> int:
        """Watermark of the slowest partition as received (NO_LIMIT for a single partition)."""
        return int(self.known.min())

    @property
    def maximum(self) -> int:
        """Watermark of the fastest partition as received (NO_TIME when none has reported)."""
        if self.partitions == 1:
            return NO_TIME
        return int(self.known.max())

    def fold(self, before_offset: int) -> list[int]:
        """Move the replay base to just before `before_offset`; returns it for a checkpoint."""
        keep = 0
        for offset, partition, watermark in self._log:
            if offset >= before_offset:
                break
            self._base[partition] = max(self._base[partition], watermark)
            keep += 1
        del self._log[:keep]
        return [int(x) for x in self._base]
