"""The sink runner parses a rollup without its digest for sinks that never read it."""

from __future__ import annotations

import numpy as np
import orjson

from pipeline.core.aggregator import PartitionAggregator, WindowConfig
from pipeline.core.decode import Decoder, RawMessage
from pipeline.core.series import SeriesTable
from pipeline.sinks.runner import _decode

BASE_MS = 1_767_225_600_000


def rendered_rollups() -> list[bytes]:
    table = SeriesTable()
    agg = PartitionAggregator("raw", 0, table, WindowConfig(10_000, 5_000))
    rng = np.random.default_rng(3)
    msgs = [
        RawMessage(
            orjson.dumps(
                {"service": "s", "region": "r", "name": f"m{i % 3}", "type": "timer",
                 "value": float(rng.lognormal()), "ts": BASE_MS + i * 10}
            ),
            i,
            BASE_MS + i * 10,
        )
        for i in range(3_000)
    ]  # fmt: skip
    step = agg.process(Decoder(table).decode(msgs).columns, len(msgs))
    assert agg.plan_idle_advance()
    return [r.encode() for r in step.rollups + agg.apply_idle_advance()]


def test_without_digest_equals_the_whole_body_less_its_digest() -> None:
    raws = rendered_rollups()
    assert raws
    for raw in raws:
        whole = _decode(raw)
        short = _decode(raw, digest=False)
        assert isinstance(whole, dict) and isinstance(short, dict)
        assert "digest" not in short
        assert short == {k: v for k, v in whole.items() if k != "digest"}


def test_other_layouts_and_garbage_are_parsed_as_before() -> None:
    reordered = orjson.dumps({"digest": {"n": 1}, "count": 1})
    assert _decode(reordered, digest=False) == {"digest": {"n": 1}, "count": 1}
    assert _decode(b'{"a": "x,\\"digest\\":"}', digest=False) == {"a": 'x,"digest":'}
    assert isinstance(_decode(b'{"count": 1,"digest": [', digest=False), str)
    assert isinstance(_decode(b"[1]", digest=False), str)
