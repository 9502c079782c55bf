"""The event-time clock of one input partition, shared by every stage's state machine.

A stage (raw rollups, tiers, the detector) judges each record against the clock as it stood
before that record: `max_ts` is the largest event time seen so far, `watermark` is `max_ts`
minus the allowed lateness, and the stage has emitted everything ending at or before
`emitted_wm`. `next_offset` is the first input offset not consumed yet.

The only wall-clock input is the idle advance: the runtime may move the clock of a partition
that received nothing for a while. It is recorded at the offset where it happened (advances.py),
persisted in the checkpoint before what it closes is emitted, and applied at the same offset
when a replay reaches it. The raw stage also bounds how far one message may move the clock
(jumps.py); its unconfirmed claims are clock state too.

A checkpoint's `clock` entry is `snapshot()` taken at the resume offset the stage names (the
first offset its open windows still need); `restore()` puts the clock back there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import numpy as np

from pipeline.core.advances import DueAdvances, IdleAdvances
from pipeline.core.jumps import NO_TIME, Claims, ClockConfig, JumpGuard

__all__ = ["NO_TIME", "ClockConfig", "PartitionClock", "ResumeAt"]

T = TypeVar("T")
ResumeAt = tuple[int, int]  # (offset a replay starts from, max_ts just before it)


class PartitionClock:
    """config: the jump rule (raw input only; `observe` ignores it). lateness_ms: how far the
    watermark trails the largest event time."""

    def __init__(self, config: ClockConfig | None = None, lateness_ms: int = 0) -> None:
        self.lateness_ms = lateness_ms
        self.jumps = JumpGuard(config)
        self.max_ts = NO_TIME
        self.emitted_wm = NO_TIME
        self.next_offset = 0
        self.advances = IdleAdvances()

    @property
    def config(self) -> ClockConfig:
        return self.jumps.config

    @property
    def claims(self) -> Claims:
        return self.jumps.claims

    @property
    def watermark(self) -> int:
        return self.max_ts - self.lateness_ms

    # -- input ------------------------------------------------------------------------------

    def observe(self, ts: int) -> None:
        """One record's event time is in (records judged one at a time: tiers, detector)."""
        self.max_ts = max(self.max_ts, ts)

    def before_messages(self, ts: np.ndarray, series: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """The clock before each sample's message, advancing it over these samples (raw input,
        batched, under the jump rule)."""
        before, self.max_ts = self.jumps.before_messages(self.max_ts, ts, series, offset)
        return before

    def due(self, end_offset: int) -> DueAdvances:
        """The idle advances a step consuming up to `end_offset` passes."""
        return self.advances.due(self.next_offset, end_offset)

    def advance_to(self, max_ts: int) -> None:
        self.max_ts = max(self.max_ts, max_ts)

    def consumed(self, end_offset: int) -> None:
        self.next_offset = max(self.next_offset, end_offset)

    def records(
        self, records: Iterable[tuple[int, T]], end_offset: int, close: Callable[[], None]
    ) -> Iterator[tuple[int, T]]:
        """Step through (offset, record) pairs up to `end_offset`, applying each idle advance
        (and calling `close`) before the first record at or after its offset; the advances
        after the last record apply once the records are through. The caller observes each
        record and closes what the step completed."""
        due = self.due(end_offset)
        for offset, record in records:
            for adv_max_ts in due.before(offset):
                self.advance_to(adv_max_ts)
                close()
            yield offset, record
        for adv_max_ts in due.rest():
            self.advance_to(adv_max_ts)
        self.consumed(end_offset)

    def emit_until(self, watermark: int) -> bool:
        """Whether `watermark` completes anything new; if so, it becomes the emitted one."""
        if watermark <= self.emitted_wm:
            return False
        self.emitted_wm = watermark
        return True

    # -- idle advances ----------------------------------------------------------------------

    def plan_idle_advance(self, new_max_ts: int) -> bool:
        """Record an advance to `new_max_ts` at the next offset (False: it advances nothing).
        The caller persists a checkpoint before `apply_idle_advance`."""
        return self.advances.plan(self.next_offset, new_max_ts, self.max_ts)

    def apply_idle_advance(self) -> None:
        self.max_ts = self.advances.at(self.next_offset, self.max_ts)

    # -- checkpoints ------------------------------------------------------------------------

    def snapshot(self, resume: ResumeAt | None) -> tuple[int, dict[str, Any]]:
        """The resume offset and the clock there, for a checkpoint: `resume` is where the
        stage's oldest open window began (None: nothing open, resume where input stops).
        Moves the replay bases (advances, claims) to it."""
        offset, max_ts = (self.next_offset, self.max_ts) if resume is None else resume
        self.advances.keep_from(offset)
        doc: dict[str, Any] = {
            "max_ts": max_ts,
            "emitted_wm": self.emitted_wm,
            "advances": self.advances.to_json(),
        }
        claims = self.jumps.fold(offset)
        if claims[0]:
            doc["claims"] = claims
        return offset, doc

    def restore(self, offset: int, doc: dict[str, Any]) -> None:
        advances = [list(a) for a in doc["advances"]]
        max_ts = int(doc["max_ts"])
        # An advance at exactly the resume offset happened before that message: apply it now.
        for adv_offset, adv_max_ts in advances:
            if adv_offset <= offset:
                max_ts = max(max_ts, adv_max_ts)
        self.max_ts = max_ts
        self.emitted_wm = int(doc["emitted_wm"])
        self.next_offset = offset
        self.advances = IdleAdvances(advances)
        self.jumps.restore(doc.get("claims"))
