"""The cardinality budget: overflow series, determinism under replay and batching, forgetting."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.aggregator import PartitionAggregator, WindowConfig
from pipeline.core.cardinality import (
    OVERFLOW_LABEL,
    CardinalityGuard,
    CardinalityLimits,
    OverflowTally,
    WindowAdmission,
)
from pipeline.core.checkpoint import Checkpoint
from pipeline.core.decode import Decoder, RawMessage
from pipeline.core.digest import DigestConfig
from pipeline.core.rollup import Rollup
from pipeline.core.series import SeriesTable

from .helpers import BASE_MS, by_key, messages

WINDOW = WindowConfig(10_000, 5_000)


class FakeClock:
    """Wall time under the test's control (idle forgetting is measured in seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sample(
    ts: int, label: str, name: str = "latency", service: str = "svc", value: float = 1.0
) -> dict[str, Any]:
    return {
        "service": service,
        "region": "eu",
        "name": name,
        "type": "timer",
        "labels": {"user": label},
        "value": value,
        "ts": ts,
    }


def build(
    limits: CardinalityLimits, clock: FakeClock | None = None
) -> tuple[PartitionAggregator, Decoder, SeriesTable, OverflowTally]:
    table = SeriesTable()
    agg = PartitionAggregator("raw", 0, table, WINDOW, DigestConfig(compression=50))
    tally = OverflowTally()
    agg.admission = WindowAdmission(
        table, limits, WINDOW.resolution_ms, tally, clock or FakeClock()
    )
    return agg, Decoder(table), table, tally


def feed(
    agg: PartitionAggregator, decoder: Decoder, msgs: list[RawMessage], size: int
) -> list[Rollup]:
    out: list[Rollup] = []
    for lo in range(0, len(msgs), size):
        part = msgs[lo : lo + size]
        out += agg.process(decoder.decode(part).columns, part[-1].offset + 1).rollups
    return out


def finish(agg: PartitionAggregator) -> list[Rollup]:
    return agg.apply_idle_advance() if agg.plan_idle_advance() else []


def test_series_beyond_the_partition_limit_go_to_one_overflow_series_per_metric() -> None:
    agg, decoder, _, tally = build(CardinalityLimits(series_per_partition=3))
    samples = [sample(BASE_MS + i, f"u{i}", value=float(i)) for i in range(10)]
    rollups = feed(agg, decoder, messages(samples), 4) + finish(agg)
    bodies = list(by_key(rollups).values())
    own = [b for b in bodies if OVERFLOW_LABEL not in b["series"]["labels"]]
    (overflow,) = [b for b in bodies if OVERFLOW_LABEL in b["series"]["labels"]]
    assert sorted(b["series"]["labels"]["user"] for b in own) == ["u0", "u1", "u2"]
    assert overflow["series"]["labels"] == {OVERFLOW_LABEL: "true"}
    assert overflow["series"]["name"] == "latency" and overflow["series"]["service"] == "svc"
    assert overflow["count"] == 7 and overflow["sum"] == sum(range(3, 10))
    assert sum(b["count"] for b in bodies) == 10  # every sample counted once
    assert tally.by_limit == {"worker": 7}
    assert tally.by_metric == {("svc", "eu", "latency"): 7}


def test_metric_limit_only_stops_the_metric_over_it() -> None:
    agg, decoder, _, tally = build(CardinalityLimits(series_per_metric=2))
    flood = [sample(BASE_MS + i, f"u{i}", name="flood") for i in range(6)]
    calm = [sample(BASE_MS + 10 + i, f"c{i}", name="calm") for i in range(4)]
    bodies = by_key(feed(agg, decoder, messages(flood + calm), 100) + finish(agg)).values()
    counts = {
        (b["series"]["name"], b["series"]["labels"].get("user", "overflow")): b["count"]
        for b in bodies
    }
    assert counts == {
        ("flood", "u0"): 1,
        ("flood", "u1"): 1,
        ("flood", "overflow"): 4,
        ("calm", "c0"): 1,
        ("calm", "c1"): 1,
        ("calm", "overflow"): 2,
    }
    assert tally.by_limit == {"metric": 6}


def test_admission_starts_afresh_in_each_window() -> None:
    agg, decoder, _, _ = build(CardinalityLimits(series_per_partition=1))
    # Window 1: a then b (b overflows); window 2: b then a (a overflows).
    samples = [
        sample(BASE_MS + 1, "a"),
        sample(BASE_MS + 2, "b"),
        sample(BASE_MS + 10_001, "b"),
        sample(BASE_MS + 10_002, "a"),
    ]
    rollups = feed(agg, decoder, messages(samples), 1) + finish(agg)
    got = {
        (r.body["window_start"] - BASE_MS, r.body["series"]["labels"].get("user", "overflow"))
        for r in rollups
    }
    assert got == {(0, "a"), (0, "overflow"), (10_000, "b"), (10_000, "overflow")}


def flood_stream(seed: int, n: int = 1_000) -> list[RawMessage]:
    """A few steady series plus a flood of one-off label values, in bounded disorder."""
    rng = np.random.default_rng(seed)
    ts = BASE_MS + np.sort(rng.integers(0, 60_000, n)) - rng.integers(0, 4_000, n)
    steady = rng.random(n) < 0.4
    out = []
    for i, t in enumerate(ts.tolist()):
        label = f"s{i % 7}" if steady[i] else f"x{i}"
        name = "steady" if steady[i] else f"flood{i % 2}"
        out.append(sample(int(t), label, name=name, value=float(rng.lognormal())))
    return messages(out)


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    crash_at=st.integers(50, 950),
    size_before=st.integers(5, 300),
    size_after=st.integers(5, 300),
)
def test_replay_sends_the_same_samples_to_overflow(
    seed: int, crash_at: int, size_before: int, size_after: int
) -> None:
    limits = CardinalityLimits(series_per_partition=20, series_per_metric=8)
    msgs = flood_stream(seed)
    agg, decoder, _, _ = build(limits)
    emitted = feed(agg, decoder, msgs[:crash_at], size_before)
    stored = Checkpoint.decode(agg.checkpoint().encode())
    reference = emitted + feed(agg, decoder, msgs[crash_at:], size_before) + finish(agg)

    # A new owner: fresh table, other batching, replays from the checkpoint.
    again, again_decoder, _, _ = build(limits)
    again.restore(stored)
    replayed = feed(again, again_decoder, msgs[stored.offset :], size_after) + finish(again)

    ref = by_key(reference)
    for key, body in by_key(replayed).items():
        assert ref[key] == body, f"replay changed {key}"
    assert by_key(emitted + replayed) == ref
    assert sum(b["count"] for b in ref.values()) == len(msgs)  # nothing lost to the budget
    assert any(OVERFLOW_LABEL in b["series"]["labels"] for b in ref.values())


def test_forgetting_returns_series_and_reuses_ids_safely() -> None:
    clock = FakeClock()
    agg, decoder, table, _ = build(CardinalityLimits(), clock)
    guard = CardinalityGuard(table, 0, 50, idle_seconds=60.0, clock=clock)
    agg.admission = guard.admission(WINDOW.resolution_ms)
    flood = [sample(BASE_MS + i, f"x{i}") for i in range(2_000)]
    out = feed(agg, decoder, messages(flood), 500)
    guard.after_batch([agg])  # refused series go at once; admitted ones are in open windows
    assert len(table) == 50 + 1  # admitted + the overflow series
    out += finish(agg)
    clock.now += 30
    guard.sweep([agg], clock.now)
    assert len(table) == 51, "not idle for long enough yet"
    clock.now += 31
    guard.sweep([agg], clock.now)
    assert len(table) == 0
    assert guard.forgotten == 2_000 + 1
    assert sum(r.count for r in out) == 2_000

    # Ids are reused by other series; the decoder must not hand out a stale id.
    later = [sample(BASE_MS + 20_000 + i, f"y{i}") for i in range(5)]
    later.append(sample(BASE_MS + 20_010, "x3"))  # a forgotten series comes back
    more = feed(agg, decoder, messages(later, start_offset=2_000), 100) + finish(agg)
    labels = sorted(r.body["series"]["labels"]["user"] for r in more)
    assert labels == ["x3", "y0", "y1", "y2", "y3", "y4"]
    assert table.capacity <= 2_001 + 1  # ids were reused, not appended


def test_series_with_open_windows_or_counter_state_are_not_forgotten() -> None:
    clock = FakeClock()
    agg, decoder, table, _ = build(CardinalityLimits(), clock)
    counter = {
        "service": "svc",
        "region": "eu",
        "name": "reqs",
        "type": "counter",
        "temporality": "cumulative",
        "instance": "pod",
        "value": 5.0,
        "ts": BASE_MS,
    }
    feed(agg, decoder, messages([sample(BASE_MS, "open"), counter]), 10)
    guard = CardinalityGuard(table, 0, 0, idle_seconds=1.0, clock=clock)
    clock.now += 100
    assert guard.sweep([agg], clock.now) == 0  # both have open windows
    finish(agg)
    assert guard.sweep([agg], clock.now) == 1  # the timer; the counter keeps its state
    assert [i.name for i in table.identities if i.name] == ["reqs"]


def test_limits_split_over_partitions() -> None:
    assert CardinalityLimits.for_worker(100, 7, 8) == CardinalityLimits(13, 7)
    assert CardinalityLimits.for_worker(0, 0, 8).unlimited


def test_a_flood_of_new_series_stays_within_the_budget_and_is_counted() -> None:
    """Unique label values spread over many windows: each window admits them all (they fit its
    budget), so it is the table's budget that must keep memory bounded."""
    clock = FakeClock()
    table = SeriesTable()
    agg = PartitionAggregator("raw", 0, table, WINDOW, DigestConfig(compression=50))
    guard = CardinalityGuard(table, 2_000, 500, idle_seconds=300.0, clock=clock)
    agg.admission = guard.admission(WINDOW.resolution_ms)
    decoder = Decoder(table)
    n, batch = 8_000, 500
    flood = [sample(BASE_MS + i * 6, f"r{i}") for i in range(n)]  # ~1,700 per 10 s window
    msgs = messages(flood)
    counted, most = 0, 0
    for lo in range(0, n, batch):
        part = msgs[lo : lo + batch]
        counted += sum(
            r.count for r in agg.process(decoder.decode(part).columns, lo + batch).rollups
        )
        guard.after_batch([agg])
        most = max(most, len(table))
        clock.now += 0.1
    counted += sum(r.count for r in finish(agg))
    assert counted == n  # every sample in some rollup
    # Open windows (at most two here, 500 admitted each) + the series of one batch.
    assert most <= 2_000 + batch
    guard.sweep([agg], clock.now)
    assert len(table) <= 2_000 * 3 // 4
    clock.now += 301
    guard.sweep([agg], clock.now)
    assert len(table) == 0
