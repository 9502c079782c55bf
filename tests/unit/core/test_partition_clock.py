"""Properties of the one partition clock every stage uses (core/clock.py): what it says before a
record depends only on the partition's records and idle advances, never on batching, and a clock
restored from its snapshot at any resume point replays to the very same values."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.core.checkpoint import Checkpoint
from pipeline.core.clock import NO_TIME, ClockConfig, PartitionClock

LATENESS = 5_000


@dataclass(frozen=True)
class Run:
    """A partition's records (event times, offsets 0..n-1), consumed in batches; after the
    batches in `idle_after`, an idle advance of `idle_by` ms is planned and applied."""

    ts: list[int]
    batches: list[int]
    idle_after: frozenset[int]
    idle_by: int


runs = st.builds(
    Run,
    ts=st.lists(st.integers(0, 200_000), min_size=1, max_size=120),
    batches=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    idle_after=st.frozensets(st.integers(0, 30), max_size=4),
    idle_by=st.integers(1, 50_000),
)


def chunks(start: int, end: int, sizes: list[int]) -> list[tuple[int, int]]:
    out, pos, k = [], start, 0
    while pos < end:
        size = sizes[k % len(sizes)]
        out.append((pos, min(end, pos + size)))
        pos += size
        k += 1
    return out


def consume(clock: PartitionClock, run: Run, start: int, end: int, idle: bool) -> dict[int, int]:
    """The clock as each record saw it (offset → max_ts before it), the way tiers and the
    detector step it; idle advances planned (and applied) only when `idle`."""
    seen: dict[int, int] = {}
    for k, (a, b) in enumerate(chunks(start, end, run.batches)):
        for offset, ts in clock.records(list(enumerate(run.ts))[a:b], b, lambda: None):
            seen[offset] = clock.max_ts
            clock.observe(ts)
        if idle and k in run.idle_after and clock.plan_idle_advance(clock.max_ts + run.idle_by):
            clock.apply_idle_advance()
    return seen


@settings(max_examples=150, deadline=None)
@given(run=runs)
def test_the_clock_before_a_record_is_the_largest_earlier_event_time_or_advance(run: Run) -> None:
    clock = PartitionClock(lateness_ms=LATENESS)
    seen = consume(clock, run, 0, len(run.ts), idle=True)
    advances = {o: m for o, m in clock.advances.to_json()}
    for offset in range(len(run.ts)):
        earlier = [*run.ts[:offset], *(m for o, m in advances.items() if o <= offset)]
        assert seen[offset] == max(earlier, default=NO_TIME)
    assert clock.max_ts == max([*run.ts, *advances.values()])
    assert clock.watermark == clock.max_ts - LATENESS
    assert clock.next_offset == len(run.ts)


@settings(max_examples=100, deadline=None)
@given(run=runs, other=st.lists(st.integers(1, 40), min_size=1, max_size=6))
def test_batching_changes_nothing_the_clock_says(run: Run, other: list[int]) -> None:
    first = PartitionClock(lateness_ms=LATENESS)
    seen = consume(first, run, 0, len(run.ts), idle=True)
    # The same records and advances, read back in other batches (as a replay would).
    second = PartitionClock(lateness_ms=LATENESS)
    second.advances.entries = first.advances.to_json()
    again = consume(second, Run(run.ts, other, frozenset(), 0), 0, len(run.ts), idle=False)
    assert again == seen
    assert second.max_ts == first.max_ts


@settings(max_examples=150, deadline=None)
@given(run=runs, cut=st.integers(0, 120), back=st.integers(0, 60), data=st.data())
def test_a_clock_restored_from_any_resume_point_replays_to_the_same_values(
    run: Run, cut: int, back: int, data: st.DataObject
) -> None:
    n = len(run.ts)
    cut = min(cut, n)
    clock = PartitionClock(lateness_ms=LATENESS)
    seen = consume(clock, Run(run.ts[:cut], run.batches, run.idle_after, run.idle_by), 0, cut, True)
    clock.plan_idle_advance(clock.max_ts + run.idle_by)  # planned, then the process dies
    clock.emit_until(clock.watermark - data.draw(st.integers(0, 30_000)))
    # The stage names where its oldest open window began: any record not after the cut.
    resume = None if cut == 0 or back == 0 else (max(0, cut - back), seen[max(0, cut - back)])
    offset, snapshot = clock.snapshot(resume)
    saved = Checkpoint.decode(
        Checkpoint("t", 0, offset, snapshot, {"allowed_lateness_ms": LATENESS}).encode()
    )
    # The uninterrupted run applies what it planned and carries on.
    clock.apply_idle_advance()
    rest = consume(clock, Run(run.ts, run.batches, frozenset(), 0), cut, n, idle=False)

    restored = PartitionClock(lateness_ms=LATENESS)
    restored.restore(saved.offset, saved.clock)
    assert restored.emitted_wm == clock.emitted_wm
    assert restored.next_offset == saved.offset
    replayed = consume(restored, Run(run.ts, run.batches[::-1], frozenset(), 0), saved.offset, n,
                       idle=False)  # fmt: skip
    assert replayed == {o: v for o, v in {**seen, **rest}.items() if o >= saved.offset}
    assert restored.max_ts == clock.max_ts


@given(base=st.integers(0, 10**9), steps=st.lists(st.integers(-5_000, 5_000), max_size=20))
def test_an_idle_advance_only_moves_the_clock_forward_once_per_offset(
    base: int, steps: list[int]
) -> None:
    clock = PartitionClock(lateness_ms=LATENESS)
    clock.observe(base)
    for step in steps:
        planned = clock.plan_idle_advance(clock.max_ts + step)
        assert planned == (step > 0)
    assert len(clock.advances.entries) <= 1  # one offset: one entry, the furthest
    clock.apply_idle_advance()
    assert clock.max_ts == base + max([0, *steps])


@given(marks=st.lists(st.integers(-(10**6), 10**6), max_size=30))
def test_the_emitted_watermark_never_goes_back(marks: list[int]) -> None:
    clock = PartitionClock()
    highest = NO_TIME
    for mark in marks:
        assert clock.emit_until(mark) == (mark > highest)
        highest = max(highest, mark)
        assert clock.emitted_wm == highest


def messages_of(
    steps: list[tuple[int, bool]], sizes: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Samples (event time, series, message offset) of honest series moving forward by `step`
    ms, and (the flag) of one producer five minutes ahead; consecutive samples share a message."""
    honest = np.cumsum([step for step, _ in steps])
    skewed = np.array([ahead for _, ahead in steps])
    ts = honest + np.where(skewed, 300_000, 0)
    series = np.where(skewed, 99, np.arange(len(steps)) % 7)
    offset = np.repeat(np.arange(len(sizes)), sizes)[: len(steps)]
    return ts.astype(np.int64), series.astype(np.int64), offset


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(0, 3_000), st.booleans()), min_size=2, max_size=150),
    sizes=st.lists(st.integers(1, 3), min_size=150, max_size=150),
    cut=st.integers(1, 149),
    back=st.integers(0, 100),
    jump=st.sampled_from([0, 20_000, 60_000]),
)
@example(  # a streak of messages ahead that the checkpoint cuts in two: confirmed after it
    steps=[(0, False), (1_000, False), (1_000, False), (0, True), (1_000, True), (1_000, True)],
    sizes=[1] * 150,
    cut=5,
    back=0,
    jump=20_000,
)
def test_under_the_jump_rule_a_restored_clock_judges_every_later_message_the_same(
    steps: list[tuple[int, bool]], sizes: list[int], cut: int, back: int, jump: int
) -> None:
    """The raw stage's path: whole messages, unconfirmed claims carried by the snapshot."""
    config = ClockConfig(jump_ms=jump, quorum=2, streak=3)
    t, series, offset = messages_of(steps, sizes)
    whole = PartitionClock(config)
    straight = whole.before_messages(t, series, offset)
    first = PartitionClock(config)
    k = int(np.searchsorted(offset, offset[min(cut, len(t) - 1)]))
    before = first.before_messages(t[:k], series[:k], offset[:k]) if k else np.zeros(0, np.int64)
    assert before.tolist() == straight[:k].tolist()  # batches end at message boundaries
    first.consumed(int(offset[k - 1]) + 1 if k else 0)
    r = max(0, k - back)
    resume = (int(offset[r]), int(straight[r])) if back and k else None
    at, snapshot = first.snapshot(resume)
    restored = PartitionClock(config)
    restored.restore(at, Checkpoint.decode(Checkpoint("t", 0, at, snapshot, {}).encode()).clock)
    i = int(np.searchsorted(offset, at))
    replayed = restored.before_messages(t[i:], series[i:], offset[i:])
    assert replayed.tolist() == straight[i:].tolist()
    assert restored.max_ts == whole.max_ts
