"""Replay at the core: restore a checkpoint, replay, and get byte-identical rollups."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.aggregator import PartitionAggregator, WindowConfig
from pipeline.core.checkpoint import Checkpoint
from pipeline.core.decode import Decoder, RawMessage
from pipeline.core.digest import DigestConfig
from pipeline.core.rollup import Rollup
from pipeline.core.series import SeriesTable
from pipeline.errors import CheckpointError

from .helpers import BASE_MS, by_key, cumulative, messages, timers

WINDOW = WindowConfig(10_000, 5_000)


def mixed_stream(seed: int, n: int = 2_000) -> list[RawMessage]:
    """Timers plus cumulative counters (several instances, with resets) in bounded disorder."""
    rng = np.random.default_rng(seed)
    samples: list[dict[str, Any]] = timers(rng, n, span_ms=60_000, jitter_ms=7_000)
    totals = {f"i{k}": 0.0 for k in range(3)}
    for i, s in enumerate(list(samples)):
        if i % 3:
            continue
        inst = f"i{i % 9 // 3}"
        totals[inst] = 0.0 if rng.random() < 0.03 else totals[inst] + float(rng.integers(0, 50))
        samples.append(
            {
                "service": "svc0",
                "region": "eu",
                "name": "requests",
                "type": "counter",
                "temporality": "cumulative",
                "instance": inst,
                "value": totals[inst],
                "ts": s["ts"],
            }
        )
    order = np.argsort([s["ts"] for s in samples], kind="stable")
    # Keep counter samples in their own order per instance: shuffle only timers a bit.
    return messages([samples[i] for i in order])


def feed(
    agg: PartitionAggregator, decoder: Decoder, msgs: list[RawMessage], sizes: list[int]
) -> list[Rollup]:
    out: list[Rollup] = []
    pos, k = 0, 0
    while pos < len(msgs):
        part = msgs[pos : pos + sizes[k % len(sizes)]]
        out += agg.process(decoder.decode(part).columns, part[-1].offset + 1).rollups
        pos += len(part)
        k += 1
    return out


def fresh(digest: DigestConfig) -> tuple[PartitionAggregator, Decoder]:
    table = SeriesTable()
    return PartitionAggregator("raw", 0, table, WINDOW, digest), Decoder(table)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    crash_at=st.integers(100, 2_500),
    sizes_before=st.lists(st.integers(5, 300), min_size=1, max_size=8),
    sizes_after=st.lists(st.integers(5, 300), min_size=1, max_size=8),
    raw_limit=st.sampled_from([0, 16, 1024]),
)
def test_replay_from_checkpoint_reemits_identical_rollups(
    seed: int,
    crash_at: int,
    sizes_before: list[int],
    sizes_after: list[int],
    raw_limit: int,
) -> None:
    msgs = mixed_stream(seed)
    crash_at = min(crash_at, len(msgs) - 1)
    digest = DigestConfig(raw_limit=raw_limit, compression=50)

    # The run that "crashes": checkpoint after crash_at messages, then keep going (what it
    # produced after the checkpoint is exactly what a crash would lose or duplicate).
    agg, decoder = fresh(digest)
    emitted = feed(agg, decoder, msgs[:crash_at], sizes_before)
    stored = Checkpoint.decode(agg.checkpoint().encode())
    reference = emitted + feed(agg, decoder, msgs[crash_at:], sizes_before)
    if agg.plan_idle_advance():
        reference += agg.apply_idle_advance()

    # A new owner, with its own series ids, restores and replays from the checkpoint's offset.
    replayed_agg, replayed_decoder = fresh(digest)
    replayed_agg.restore(stored)
    replayed = feed(replayed_agg, replayed_decoder, msgs[stored.offset :], sizes_after)
    if replayed_agg.plan_idle_advance():
        replayed += replayed_agg.apply_idle_advance()

    ref = by_key(reference)
    again = by_key(replayed)
    for key, body in again.items():
        assert ref[key] == body, f"replay changed {key}"
    assert by_key(emitted + replayed) == ref  # nothing lost
    assert again or stored.offset == len(msgs)
    assert stored.offset <= crash_at


def test_cumulative_counter_increase_with_reset() -> None:
    values = [10.0, 15.0, 15.0, 3.0, 8.0]  # reset after 15: 3 counts as an increase of 3
    samples = [cumulative(BASE_MS + 1_000 * i, v) for i, v in enumerate(values)]
    agg, decoder = fresh(DigestConfig())
    msgs = messages(samples)
    out = agg.process(decoder.decode(msgs).columns, len(msgs)).rollups
    assert agg.plan_idle_advance()
    out += agg.apply_idle_advance()
    (body,) = [r.body for r in out]
    assert body["sum"] == 0 + 5 + 0 + 3 + 5  # the first sample has no previous value
    assert body["rate"] == body["sum"] / 10
    assert body["min"] == 3.0 and body["max"] == 15.0
    assert body["digest"] is None and body["percentiles"] == {}


def test_out_of_order_cumulative_sample_adds_nothing() -> None:
    # ts order 0, 1, 2, 3 but the sample of ts 1 arrives after the one of ts 2: it is not a reset.
    arrivals = [(0, 10.0), (2, 20.0), (1, 15.0), (3, 25.0)]
    samples = [cumulative(BASE_MS + 1_000 * t, v) for t, v in arrivals]
    agg, decoder = fresh(DigestConfig())
    msgs = messages(samples)
    out = agg.process(decoder.decode(msgs).columns, len(msgs)).rollups
    assert agg.plan_idle_advance()
    out += agg.apply_idle_advance()
    (body,) = [r.body for r in out]
    assert body["sum"] == 15.0  # 0 + 10 + 0 + 5
    assert body["count"] == 4


def test_checkpoint_refuses_other_lateness() -> None:
    table = SeriesTable()
    agg = PartitionAggregator("raw", 0, table, WindowConfig(10_000, 5_000))
    stored = agg.checkpoint()
    other = PartitionAggregator("raw", 0, SeriesTable(), WindowConfig(10_000, 30_000))
    with pytest.raises(CheckpointError, match="lateness"):
        other.restore(stored)


def test_stale_cumulative_value_is_forgotten() -> None:
    # 20 minutes of silence (> 10 min staleness): the next value is not an increase over 100.
    table = SeriesTable()
    agg = PartitionAggregator("raw", 0, table, WindowConfig(10_000, 5_000, 600_000))
    decoder = Decoder(table)
    msgs = messages([cumulative(BASE_MS, 100.0), cumulative(BASE_MS + 1_200_000, 130.0)])
    out = agg.process(decoder.decode(msgs).columns, 2).rollups
    assert agg.plan_idle_advance()
    out += agg.apply_idle_advance()
    assert sorted(r.body["sum"] for r in out) == [0.0, 0.0]


def test_stale_counter_entries_leave_the_checkpoint() -> None:
    table = SeriesTable()
    agg = PartitionAggregator("raw", 0, table, WindowConfig(10_000, 5_000, 60_000))
    decoder = Decoder(table)
    old = messages([cumulative(BASE_MS, 1.0, "gone")])
    agg.process(decoder.decode(old).columns, 1)
    later = messages([cumulative(BASE_MS + 3_600_000, 5.0, "live")], start_offset=1)
    agg.process(decoder.decode(later).columns, 2)
    assert agg.plan_idle_advance()
    agg.apply_idle_advance()
    instances = [entry[1] for entry in agg.checkpoint().state["counters"]]
    assert instances == ["live"]
