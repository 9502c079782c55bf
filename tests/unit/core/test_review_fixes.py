"""Regression tests for failure-mode findings of the replay review."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pipeline.core.aggregator import PartitionAggregator, WindowConfig
from pipeline.core.columns import SampleColumns
from pipeline.core.decode import Decoder
from pipeline.core.series import SeriesTable
from pipeline.errors import CheckpointError
from pipeline.kafka.forwarding import (
    SAMPLES_PER_FORWARD,
    ForwardDedup,
    decode_forward,
    forward_messages,
    parse_repartition_headers,
)

from .helpers import BASE_MS, messages


def counter(ts: int, value: float, instance: str = "pod-1") -> dict[str, Any]:
    return {
        "service": "a",
        "region": "eu",
        "name": "reqs",
        "type": "counter",
        "temporality": "cumulative",
        "instance": instance,
        "value": value,
        "ts": ts,
    }


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
    msgs = messages([counter(BASE_MS, 100.0), counter(BASE_MS + 1_200_000, 130.0)])
    out = agg.process(decoder.decode(msgs).columns, 2).rollups
    assert agg.plan_idle_advance()
    out += agg.apply_idle_advance()
    assert sorted(r.body["sum"] for r in out) == [0.0, 0.0]


def test_stale_counter_entries_leave_the_checkpoint() -> None:
    table = SeriesTable()
    agg = PartitionAggregator("raw", 0, table, WindowConfig(10_000, 5_000, 60_000))
    decoder = Decoder(table)
    old = messages([counter(BASE_MS, 1.0, "gone")])
    agg.process(decoder.decode(old).columns, 1)
    later = messages([counter(BASE_MS + 3_600_000, 5.0, "live")], start_offset=1)
    agg.process(decoder.decode(later).columns, 2)
    assert agg.plan_idle_advance()
    agg.apply_idle_advance()
    instances = [entry[1] for entry in agg.checkpoint().counters]
    assert instances == ["live"]


def test_forwards_are_split_and_replays_are_dropped_sample_by_sample() -> None:
    table = SeriesTable()
    decoder = Decoder(table)
    n = SAMPLES_PER_FORWARD * 2 + 7
    batch = [
        {"service": "a", "region": "eu", "name": "m", "type": "gauge", "value": float(i),
         "ts": BASE_MS + i}
        for i in range(n)
    ]  # fmt: skip
    cols: SampleColumns = decoder.decode_lists([orjson.dumps(batch)], [42], [BASE_MS]).columns
    import numpy as np

    records = forward_messages(cols, np.full(n, 3), table, 0)
    assert [r["partition"] for r in records] == [3, 3, 3]
    got = [decode_forward(r["value"], table) for r in records]
    assert [len(g.ts) for g in got] == [SAMPLES_PER_FORWARD, SAMPLES_PER_FORWARD, 7]
    assert np.concatenate([g.value for g in got]).tolist() == [float(i) for i in range(n)]
    assert {parse_repartition_headers(r["headers"]) for r in records} == {("samples", (0,))}
    dedup = ForwardDedup()
    taken = [dedup.fresh(i, 0, g.source_offset, g.source_index).sum() for i, g in enumerate(got)]
    assert taken == [SAMPLES_PER_FORWARD, SAMPLES_PER_FORWARD, 7]
    # A replaying source forwards again, batched differently: only what is new is taken.
    more = decoder.decode_lists([orjson.dumps(batch[:3])], [43], [BASE_MS]).columns
    again = forward_messages(SampleColumns.concat([cols, more]), np.full(n + 3, 3), table, 0)
    fresh = [
        int(dedup.fresh(10 + i, 0, g.source_offset, g.source_index).sum())
        for i, g in enumerate(decode_forward(r["value"], table) for r in again)
    ]
    assert sum(fresh) == 3


def test_a_record_that_is_no_forward_is_refused() -> None:
    with pytest.raises(ValueError):
        decode_forward(b'{"series": [], "s": [0]}', SeriesTable())


@pytest.mark.parametrize("header", [b"garbage", b"1:2", b"x:y:z", b""])
def test_unparsable_repartition_header_is_unexpected(header: bytes) -> None:
    assert parse_repartition_headers([("mp-fwd", header)]) == ("unexpected", ())
