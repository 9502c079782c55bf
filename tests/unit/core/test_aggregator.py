"""Windows, watermark and lateness of the framework-free core, against exact numpy results."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.aggregator import PartitionAggregator, WindowConfig
from pipeline.core.decode import Decoder, RawMessage
from pipeline.core.rollup import Rollup
from pipeline.core.series import SeriesTable

from .helpers import BASE_MS, by_key, group_values, messages, timers

RES = 10_000
LATE = 5_000


def run(
    msgs: list[RawMessage], batch: int = 1000, window: WindowConfig | None = None
) -> tuple[list[Rollup], int, PartitionAggregator]:
    table = SeriesTable()
    decoder = Decoder(table)
    agg = PartitionAggregator("raw", 0, table, window or WindowConfig(RES, LATE))
    out: list[Rollup] = []
    late = 0
    for i in range(0, len(msgs), batch):
        part = msgs[i : i + batch]
        step = agg.process(decoder.decode(part).columns, part[-1].offset + 1)
        out += step.rollups
        late += len(step.late)
    if agg.plan_idle_advance():
        out += agg.apply_idle_advance()
    return out, late, agg


def sample(service: str, ts: int, value: float = 1.0) -> dict[str, object]:
    return {
        "service": service,
        "region": "eu",
        "name": "m",
        "type": "timer",
        "value": value,
        "ts": ts,
    }


def test_rollups_equal_numpy_for_every_window() -> None:
    samples = timers(np.random.default_rng(1), 8_000, jitter_ms=0)
    rollups, late, _ = run(messages(samples))
    assert late == 0
    expected = group_values(samples, RES)
    got = by_key(rollups)
    assert len(got) == len(expected)
    for body in got.values():
        values = np.array(expected[(body["series"]["service"], body["window_start"])])
        assert body["count"] == len(values)
        assert body["window_end"] - body["window_start"] == RES
        np.testing.assert_allclose(body["sum"], values.sum(), rtol=1e-12)
        assert body["min"] == values.min() and body["max"] == values.max()
        np.testing.assert_allclose(body["rate"], len(values) / 10.0)
        # Fewer values than the compression: percentiles and digest are exact.
        np.testing.assert_allclose(
            list(body["percentiles"].values()),
            np.quantile(values, [0.5, 0.9, 0.95, 0.99, 0.999]),
        )
        assert body["digest"]["exact"] is True
        assert sum(c["c"] for c in body["digest"]["centroids"]) == len(values)


def test_window_boundaries_are_half_open() -> None:
    # ts = window end belongs to the next window; integer ms, no float rounding.
    msgs = messages(
        [sample("a", BASE_MS), sample("a", BASE_MS + RES - 1), sample("a", BASE_MS + RES)]
    )
    rollups, _, _ = run(msgs)
    counts = {r.body["window_start"]: r.body["count"] for r in rollups}
    assert counts == {BASE_MS: 2, BASE_MS + RES: 1}


def test_lateness_watermark_and_late_classification() -> None:
    msgs = messages(
        [
            sample("a", BASE_MS + 1_000),  # window [0, 10s)
            sample("a", BASE_MS + 14_000),  # watermark 9s: window 0 still open
            sample("a", BASE_MS + 2_000),  # out of order but within lateness → counted
            sample("a", BASE_MS + 15_500),  # watermark 10.5s → closes window 0 after this msg
            sample("a", BASE_MS + 3_000),  # window 0 closed → late
        ]
    )
    rollups, late, _ = run(msgs, batch=1)
    first = [r.body for r in rollups if r.body["window_start"] == BASE_MS]
    assert len(first) == 1 and first[0]["count"] == 2
    assert late == 1


def test_message_is_judged_against_the_watermark_before_it() -> None:
    # A batch message spanning 30 s of event time is not late against itself.
    batch = [sample("a", BASE_MS + t) for t in (0, 15_000, 30_000)]
    import orjson

    msgs = [RawMessage(orjson.dumps(batch), 0, BASE_MS)]
    rollups, late, _ = run(msgs)
    assert late == 0
    assert sorted(r.body["count"] for r in rollups) == [1, 1, 1]


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(20, 400), min_size=1, max_size=30), st.integers(0, 2**31))
def test_output_does_not_depend_on_batching(splits: list[int], seed: int) -> None:
    samples = timers(np.random.default_rng(seed), 2_000, span_ms=60_000, jitter_ms=8_000)
    msgs = messages(samples)
    reference, ref_late, _ = run(msgs, batch=len(msgs))
    table = SeriesTable()
    decoder = Decoder(table)
    agg = PartitionAggregator("raw", 0, table, WindowConfig(RES, LATE))
    out: list[Rollup] = []
    late = 0
    pos = 0
    for size in splits * (len(msgs) // max(1, sum(splits)) + 1):
        part = msgs[pos : pos + size]
        if not part:
            break
        step = agg.process(decoder.decode(part).columns, part[-1].offset + 1)
        out += step.rollups
        late += len(step.late)
        pos += size
    if agg.plan_idle_advance():
        out += agg.apply_idle_advance()
    assert by_key(out) == by_key(reference)
    assert late == ref_late
