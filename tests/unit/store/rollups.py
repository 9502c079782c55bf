"""Real rollups for store tests: samples through the framework-free core (decode → windows)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from pipeline.core.aggregator import PartitionAggregator, WindowConfig
from pipeline.core.decode import Decoder, RawMessage
from pipeline.core.series import SeriesTable
from pipeline.sinks.base import SinkRecord

#: 2026-11-25T23:30:00Z: an hour of windows crosses midnight, so two date partitions.
START_MS = 1_795_649_400_000
MINUTE = 60_000


def samples(minutes: int = 60, per_minute: int = 40, seed: int = 3) -> list[dict[str, Any]]:
    """Latencies of two services (one with a route label variant) and a delta counter, with a
    slow rise and fall of the latency so a plot has a shape."""
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    for minute in range(minutes):
        base = START_MS + minute * MINUTE
        phase = np.sin(minute / minutes * 2 * np.pi)
        n = int(per_minute * (1.0 + 0.5 * phase))  # traffic and latency rise and fall together
        ts = np.sort(base + rng.integers(0, MINUTE, n))
        for service, route in (("checkout", "/pay"), ("checkout", "/cart"), ("search", "/q")):
            values = rng.lognormal(np.log(20.0 * (1.5 + phase)), 0.6, n)
            for t, v in zip(ts.tolist(), values.tolist(), strict=True):
                out.append(
                    {
                        "service": service,
                        "region": "eu-west-1",
                        "name": "http.server.duration",
                        "type": "timer",
                        "unit": "ms",
                        "labels": {"route": route},
                        "value": v,
                        "ts": t,
                    }
                )
        for t in ts[::4].tolist():
            out.append(
                {
                    "service": "checkout",
                    "region": "eu-west-1",
                    "name": "http.requests",
                    "type": "counter",
                    "value": 5,
                    "ts": t,
                }
            )
    out.sort(key=lambda s: s["ts"])
    return out


def rollup_records(
    raw: list[dict[str, Any]] | None = None,
    resolution_ms: int = MINUTE,
    topic: str = "metrics.rollups.1m",
) -> list[SinkRecord]:
    """The rollups the core emits for `raw`, as the sink runner would hand them over."""
    raw = samples() if raw is None else raw
    table = SeriesTable()
    decoder = Decoder(table)
    agg = PartitionAggregator("raw", 0, table, WindowConfig(resolution_ms, 0))
    messages = [RawMessage(orjson.dumps(s), i, int(s["ts"])) for i, s in enumerate(raw)]
    rollups = agg.process(decoder.decode(messages).columns, len(messages)).rollups
    if agg.plan_idle_advance():
        rollups += agg.apply_idle_advance()
    return [
        SinkRecord(topic, 0, offset, r.key.encode(), r.encode(), r.body)
        for offset, r in enumerate(rollups)
    ]
