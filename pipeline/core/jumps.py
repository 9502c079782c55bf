"""How far one message may move a partition's clock: one skewed producer cannot drag it ahead.

The clock (clock.py) is the largest event time of the partition's messages so far; a sample is
late when its window ended more than the allowed lateness before the clock as it stood before the
sample's message. One producer with a clock minutes ahead would make every honest sample after it
late. So a message may move the clock by at most `jump_ms` at once; event times further ahead are
held as claims, per series, and the clock jumps to them only when the jump is confirmed:

- by `quorum` distinct series that all reached beyond the limit (the clock moves to the
  lowest of the `quorum` highest claims), or
- by `streak` consecutive messages beyond the limit with no message inside it: the whole
  partition moved on (a stream resuming after a pause, or a producer alone on its partition).

A single skewed sample, or a skewed producer reporting fewer than `quorum` series among honest
ones, never moves the clock; its samples still count in their own (future) windows. What a
producer with `quorum` or more skewed series can do is bounded by `max_future` (judged against
the record timestamp when the sample is decoded).

Claims are part of the clock's state, so every change of them is logged with its offset and
a checkpoint carries them as they were at its resume offset: a replay confirms the same jumps
at the same messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

NO_TIME = -(2**62)


@dataclass(frozen=True, slots=True)
class ClockConfig:
    """jump_ms <= 0 turns the protection off (every message may move the clock any distance)."""

    jump_ms: int = 60_000
    quorum: int = 2
    streak: int = 20


@dataclass(slots=True)
class Claims:
    """Unconfirmed event times beyond the clock's jump limit."""

    by_series: dict[int, int]
    streak: int = 0

    def to_json(self) -> list[Any]:
        return [sorted([s, t] for s, t in self.by_series.items()), self.streak]

    @staticmethod
    def from_json(doc: Any) -> Claims:
        if not doc:
            return Claims({})
        pairs, streak = doc
        return Claims({int(s): int(t) for s, t in pairs}, int(streak))


class JumpGuard:
    """The jump rule of one partition's clock: its unconfirmed claims, and their log by offset
    so that a checkpoint carries them as they stood at its resume offset."""

    def __init__(self, config: ClockConfig | None = None) -> None:
        self.config = config or ClockConfig()
        self.claims = Claims({})
        self._base = Claims({})  # claims as of the replay base
        self._log: list[tuple[int, Claims]] = []  # (offset of the message, claims after it)

    def before_messages(
        self, max_ts: int, ts: np.ndarray, series: np.ndarray, offset: np.ndarray
    ) -> tuple[np.ndarray, int]:
        """The clock before each sample's message, and the clock after these samples, from
        `max_ts` (partition order; a message is atomic: all its samples see the clock as it
        was before it)."""
        n = len(ts)
        new_msg = np.ones(n, dtype=bool)
        new_msg[1:] = offset[1:] != offset[:-1]
        msg_starts = np.flatnonzero(new_msg)
        msg_max = np.maximum.reduceat(ts, msg_starts)
        running = np.maximum.accumulate(np.concatenate(([max_ts], msg_max)))
        msg_of_sample = np.cumsum(new_msg) - 1
        jump = self.config.jump_ms
        before = running[:-1]
        if jump <= 0:
            fast = True
        else:
            ahead = msg_max > before + jump
            if max_ts == NO_TIME:
                ahead[0] = False  # the first message sets the clock
            fast = not self.claims.by_series and not ahead.any()
        if fast:
            out: np.ndarray = before[msg_of_sample]
            return out, int(running[-1])
        return self._one_by_one(max_ts, ts, series, offset, msg_starts, msg_of_sample)

    def _one_by_one(
        self,
        max_ts: int,
        ts: np.ndarray,
        series: np.ndarray,
        offset: np.ndarray,
        msg_starts: np.ndarray,
        msg_of_sample: np.ndarray,
    ) -> tuple[np.ndarray, int]:
        """The general rule, a message at a time (only batches near a jump take this path)."""
        jump, quorum, streak = self.config.jump_ms, self.config.quorum, self.config.streak
        before = np.empty(len(msg_starts), np.int64)
        bounds = [*msg_starts.tolist(), len(ts)]
        claims = self.claims
        for m in range(len(msg_starts)):
            a, b = bounds[m], bounds[m + 1]
            before[m] = max_ts
            if max_ts == NO_TIME:  # the first message sets the clock
                max_ts = int(ts[a:b].max())
                continue
            limit = max_ts + jump
            msg_ts = ts[a:b]
            inside = msg_ts <= limit
            changed = False
            if inside.any():
                max_ts = max(max_ts, int(msg_ts[inside].max()))
                changed = claims.streak != 0
                claims.streak = 0
            if not inside.all():
                for sid, t in zip(
                    series[a:b][~inside].tolist(), msg_ts[~inside].tolist(), strict=True
                ):
                    claims.by_series[sid] = max(claims.by_series.get(sid, NO_TIME), t)
                claims.streak += 1 if not inside.any() else 0
                changed = True
                heights = sorted(claims.by_series.values(), reverse=True)
                if len(heights) >= quorum:
                    max_ts = max(max_ts, heights[quorum - 1])
                elif claims.streak >= streak:
                    max_ts = max(max_ts, heights[-1])
            if claims.by_series:
                limit = max_ts + jump
                kept = {s: t for s, t in claims.by_series.items() if t > limit}
                if len(kept) != len(claims.by_series):
                    claims.by_series = kept
                    claims.streak = 0 if not kept else claims.streak
                    changed = True
            if changed:
                self._log.append((int(offset[a]), Claims(dict(claims.by_series), claims.streak)))
        result: np.ndarray = before[msg_of_sample]
        return result, max_ts

    def fold(self, before_offset: int) -> Any:
        """Move the replay base to just before `before_offset`; returns the claims there."""
        keep = 0
        for offset, claims in self._log:
            if offset >= before_offset:
                break
            self._base = claims
            keep += 1
        del self._log[:keep]
        return self._base.to_json()

    def restore(self, claims: Any) -> None:
        self._base = Claims.from_json(claims)
        self.claims = Claims(dict(self._base.by_series), self._base.streak)
        self._log = []
