"""Idle advances of one partition: the only wall-clock input to a stage's event time.

An advance is recorded at the offset where it happened (`[offset, max_ts]`: before the record
at `offset`, the partition's largest event time became `max_ts`), written into the checkpoint
before what it closes is emitted, and applied at the same offset when a replay reaches it — so a
replay closes the same windows at the same points as the run that crashed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator


class IdleAdvances:
    def __init__(self, entries: Iterable[Iterable[int]] = ()) -> None:
        self.entries: list[list[int]] = [list(a) for a in entries]

    def plan(self, offset: int, new_max_ts: int, max_ts: int) -> bool:
        """Record an advance to `new_max_ts` at `offset`, unless it would not advance anything."""
        if new_max_ts <= max_ts:
            return False
        if self.entries and self.entries[-1][0] == offset:
            # A quiet partition may advance again and again at one offset: keep one entry.
            self.entries[-1][1] = max(self.entries[-1][1], new_max_ts)
        else:
            self.entries.append([offset, new_max_ts])
        return True

    def at(self, offset: int, max_ts: int) -> int:
        """`max_ts` moved by the advances recorded exactly at `offset` (the live one)."""
        for adv_offset, adv_max_ts in self.entries:
            if adv_offset == offset:
                max_ts = max(max_ts, adv_max_ts)
        return max_ts

    def due(self, after: int, upto: int) -> DueAdvances:
        """The advances a step from `after` (exclusive) to `upto` (inclusive) passes."""
        return DueAdvances([(o, m) for o, m in self.entries if after < o <= upto])

    def keep_from(self, offset: int) -> None:
        """Forget advances before a checkpoint's offset: a replay never reaches them again."""
        self.entries = [a for a in self.entries if a[0] >= offset]

    def to_json(self) -> list[list[int]]:
        return [list(a) for a in self.entries]


class DueAdvances:
    """Advances of one step, in offset order, consumed as the step's records go by."""

    def __init__(self, advances: list[tuple[int, int]]) -> None:
        self.all = advances
        self._pending = deque(advances)

    def before(self, offset: int) -> Iterator[int]:
        """max_ts of each advance recorded at or before `offset` (not yet taken)."""
        while self._pending and self._pending[0][0] <= offset:
            yield self._pending.popleft()[1]

    def rest(self) -> Iterator[int]:
        """max_ts of the advances after the step's last record."""
        while self._pending:
            yield self._pending.popleft()[1]
