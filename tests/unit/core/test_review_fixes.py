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


def test_forwards_are_split_and_numbered() -> None:
    table = SeriesTable()
    decoder = Decoder(table)
    n = SAMPLES_PER_FORWARD * 2 + 7
    batch = [
        {"service": "a", "region": "eu", "name": "m", "type": "gauge", "value": 1.0, "ts": BASE_MS}
    ] * n
    cols: SampleColumns = decoder.decode_lists([orjson.dumps(batch)], [42], [BASE_MS]).columns
    import numpy as np

    records = forward_messages(cols, np.full(n, 3), table, 0, {42: BASE_MS})
    assert [len(orjson.loads(r["value"])) for r in records] == [
        SAMPLES_PER_FORWARD,
        SAMPLES_PER_FORWARD,
        7,
    ]
    parsed = [parse_repartition_headers(r["headers"]) for r in records]
    assert parsed == [("samples", (0, 42, i)) for i in range(3)]
    positions = [(source, (offset, part)) for _, (source, offset, part) in parsed]
    dedup = ForwardDedup()
    assert [dedup.accept(i, *p) for i, p in enumerate(positions) if p] == [True, True, True]
    # A replaying source forwards the same parts again: all dropped.
    assert [dedup.accept(10 + i, *p) for i, p in enumerate(positions) if p] == [False] * 3


@pytest.mark.parametrize("header", [b"garbage", b"1:2", b"x:y:z", b""])
def test_unparsable_repartition_header_is_unexpected(header: bytes) -> None:
    assert parse_repartition_headers([("mp-fwd", header)]) == ("unexpected", ())
