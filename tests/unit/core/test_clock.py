"""A partition clock that one skewed producer cannot drag ahead, and that still follows a stream
that legitimately jumps — through the aggregator, against what is late and what is emitted."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.core.aggregator import PartitionAggregator, WindowConfig
from pipeline.core.checkpoint import Checkpoint
from pipeline.core.clock import ClockConfig, PartitionClock
from pipeline.core.decode import Decoder, RawMessage
from pipeline.core.series import SeriesTable

from .helpers import BASE_MS, by_key, messages

RES = 10_000
LATE = 5_000
MINUTE = 60_000


def honest(
    n: int, services: int = 6, start: int = BASE_MS, step: int = 100
) -> list[dict[str, Any]]:
    """Samples of several series, one every `step` ms, in time order."""
    return [
        {
            "service": f"svc{i % services}",
            "region": "eu",
            "name": "latency",
            "type": "timer",
            "value": float(i % 97),
            "ts": start + i * step,
        }
        for i in range(n)
    ]


def skewed(ts: int, service: str = "skewed") -> dict[str, Any]:
    return {"service": service, "region": "eu", "name": "latency", "type": "timer",
            "value": 1.0, "ts": ts}  # fmt: skip


def run(samples: list[dict[str, Any]], batch: int = 50) -> tuple[int, dict[str, Any], int]:
    """(late samples, rollups by key, samples in rollups) after an idle flush."""
    table = SeriesTable()
    decoder = Decoder(table)
    agg = PartitionAggregator("raw", 0, table, WindowConfig(RES, LATE))
    msgs = messages(samples)
    late, rollups = 0, []
    for i in range(0, len(msgs), batch):
        part = msgs[i : i + batch]
        step = agg.process(decoder.decode(part).columns, part[-1].offset + 1)
        late += len(step.late)
        rollups += step.rollups
    if agg.plan_idle_advance():
        rollups += agg.apply_idle_advance()
    got = by_key(rollups)
    return late, got, sum(b["count"] for b in got.values())


def test_one_sample_minutes_ahead_makes_nothing_late() -> None:
    stream = honest(3_000)
    stream.insert(500, skewed(BASE_MS + 50_000 + 9 * MINUTE))
    late, _, counted = run(stream)
    assert late == 0
    assert counted == len(stream)  # the skewed sample too, in its own window


def test_a_skewed_producer_among_honest_ones_makes_nothing_late() -> None:
    stream = honest(3_000)
    for i in range(400, 3_000, 25):  # one series, 9 minutes ahead, all along the stream
        stream.insert(i, skewed(stream[i]["ts"] + 9 * MINUTE))
    late, _, counted = run(stream)
    assert late == 0
    assert counted == len(stream)


def test_the_protection_is_what_saves_them() -> None:
    """The same skewed sample with the jump limit off: the old behaviour, honest samples late."""
    table = SeriesTable()
    decoder = Decoder(table)
    agg = PartitionAggregator(
        "raw", 0, table, WindowConfig(RES, LATE), clock=ClockConfig(jump_ms=0)
    )
    stream = honest(3_000)
    stream.insert(500, skewed(BASE_MS + 50_000 + 9 * MINUTE))
    msgs = messages(stream)
    step = agg.process(decoder.decode(msgs).columns, len(msgs))
    assert len(step.late) > 2_000


def test_a_stream_that_jumps_ahead_as_a_whole_is_followed() -> None:
    """A pause of ten minutes (all producers down), then the stream resumes: the clock follows
    within a couple of messages, the old windows close and nothing new is late."""
    before = honest(1_000)
    after = honest(1_000, start=before[-1]["ts"] + 10 * MINUTE)
    late, got, counted = run(before + after)
    assert late == 0
    assert counted == 2_000
    windows = {b["window_start"] for b in got.values()}
    assert min(windows) == BASE_MS and max(windows) >= after[-1]["ts"] - RES


def test_a_partition_with_a_single_series_jumps_after_a_streak() -> None:
    clock = PartitionClock(ClockConfig(jump_ms=MINUTE, quorum=2, streak=5))
    ts = np.array([BASE_MS, BASE_MS + 1_000] + [BASE_MS + 10 * MINUTE + i for i in range(8)])
    before = clock.before_messages(ts, np.zeros(len(ts), np.int32), np.arange(len(ts)))
    # Held back for 5 messages beyond the limit, then it moves with the series.
    assert before[2:7].tolist() == [BASE_MS + 1_000] * 5
    assert before[7] >= BASE_MS + 10 * MINUTE


def test_a_replay_from_a_checkpoint_with_a_pending_jump_emits_the_same_bytes() -> None:
    """Claims are clock state: a replay from a checkpoint taken while a jump is unconfirmed
    decides every sample as the first run did."""
    stream = honest(2_000)
    stream.insert(300, skewed(BASE_MS + 40_000 + 3 * MINUTE, "a"))
    stream.insert(1_200, skewed(BASE_MS + 130_000 + 3 * MINUTE, "b"))  # confirms with "a"...
    msgs = messages(stream)

    def fresh() -> tuple[PartitionAggregator, Decoder]:
        table = SeriesTable()
        return PartitionAggregator("raw", 0, table, WindowConfig(RES, LATE)), Decoder(table)

    def feed(agg: PartitionAggregator, dec: Decoder, part: list[RawMessage]) -> list[Any]:
        return agg.process(dec.decode(part).columns, part[-1].offset + 1).rollups

    agg, dec = fresh()
    straight = feed(agg, dec, msgs)
    agg, dec = fresh()
    first = feed(agg, dec, msgs[:700])
    assert agg.clock.claims.by_series, "a jump is pending at the checkpoint"
    saved = Checkpoint.decode(agg.checkpoint().encode())
    agg, dec = fresh()
    agg.restore(saved)
    resumed = feed(agg, dec, msgs[saved.offset :])
    assert by_key(first + resumed) == by_key(straight)
