"""Watermarks handed over inside one worker process, saving a trip through the broker.

An owner closes a window when every input partition's watermark has passed it, and those
watermarks travel as records through the repartition topic, behind the forwards they cover
(core/upstream.py). When one process owns both the partition that sends a watermark and the
partition it is for — always the case for a single worker, and for most pairs in a small group —
the record's only news is the watermark itself once every record sent before it has been read.
Then the owner may take the watermark at once instead of waiting for the record: for a producer
that partitions by owner (no forwards at all) a window closes as soon as its own input passes
it, as before watermarks were propagated.

"Every record sent before it" includes records of a previous owner of the source partition
(before a rebalance), whose offsets this process never saw. So for each (source, owner) pair the
hand-over starts only once the first watermark record this process sent since it was assigned
the source has been read by the owner: everything older lies before it in the log. After that,
a pair qualifies while none of its forwards is unacknowledged and the owner has read past the
last one acknowledged.

This only ever closes windows earlier, never with other contents: what a window holds is fixed
by what each source judged on time, and all of that has been read. The replayed state does not
include hand-overs (a replay waits for the records, which close the same windows).
"""

from __future__ import annotations

from collections.abc import Callable

Pair = tuple[int, int]  # (source partition, owner partition)


class LocalWatermarks:
    """Per (source, owner) pair: forwards in flight, the last acknowledged forward's offset and
    the barrier (offset of the first watermark record sent since the source was assigned)."""

    def __init__(self) -> None:
        self._generation: dict[int, int] = {}  # source → assignments so far
        self._in_flight: dict[Pair, int] = {}
        self._last_forward: dict[Pair, int] = {}
        self._barrier: dict[Pair, int] = {}

    def source_assigned(self, source: int) -> None:
        """The source partition (re)starts here: forget what earlier assignments recorded;
        acknowledgements of their records still in flight are ignored."""
        self._generation[source] = self._generation.get(source, 0) + 1
        for table in (self._in_flight, self._last_forward, self._barrier):
            for pair in [pair for pair in table if pair[0] == source]:
                del table[pair]

    def forward_sent(self, source: int, owner: int) -> Callable[[int], None]:
        """Note a forward from source to owner; returns its acknowledgement callback (offset)."""
        pair, generation = (source, owner), self._generation.get(source, 0)
        self._in_flight[pair] = self._in_flight.get(pair, 0) + 1

        def acknowledged(offset: int) -> None:
            if self._generation.get(source, 0) != generation:
                return
            self._in_flight[pair] -= 1
            self._last_forward[pair] = max(self._last_forward.get(pair, -1), offset)

        return acknowledged

    def watermark_sent(self, source: int, owner: int) -> Callable[[int], None]:
        """Note a watermark record from source to owner; returns its acknowledgement callback."""
        pair, generation = (source, owner), self._generation.get(source, 0)

        def acknowledged(offset: int) -> None:
            if self._generation.get(source, 0) == generation and pair not in self._barrier:
                self._barrier[pair] = offset

        return acknowledged

    def may_hand_over(self, source: int, owner: int, owner_read_until: int) -> bool:
        """Whether the owner, having read its repartition partition up to (excluding)
        `owner_read_until`, has read every record the source sent it before now."""
        pair = (source, owner)
        barrier = self._barrier.get(pair)
        if barrier is None or barrier >= owner_read_until:
            return False
        if self._in_flight.get(pair, 0):
            return False
        return self._last_forward.get(pair, -1) < owner_read_until
