"""Synthetic 1 m timer rollups with lognormal noise, for the detector's tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from pipeline.core.rollup_wire import WireRollup, decode_rollup

MINUTE = 60_000
DAY = 1_440  # minutes
START = 1_767_225_600_000  # 2026-01-01T00:00Z


def rollup_body(service: str, index: int, p99: float, rate: float) -> dict[str, Any]:
    start = START + index * MINUTE
    count = max(1, round(rate * 60))
    body = {
        "series": {"service": service, "region": "eu", "name": "http.server.duration",
                   "type": "timer", "unit": "ms", "labels": {}},
        "series_key": f"{service}|eu|http.server.duration|timer|ms|{{}}",
        "resolution": "1m", "resolution_ms": MINUTE, "window_start": start,
        "window_end": start + MINUTE, "count": count, "sum": p99 * count / 3,
        "min": 1.0, "max": p99 * 1.2, "mean": p99 / 3, "rate": count / 60,
        "percentiles": {"p50": p99 / 4, "p99": p99},
        "digest": {"compression": 200, "n": count, "centroids": [{"m": p99 / 3, "c": count}]},
    }  # fmt: skip
    return body


def rollup(service: str, index: int, p99: float, rate: float) -> WireRollup:
    return decode_rollup(orjson.dumps(rollup_body(service, index, p99, rate)), MINUTE)


def stream(
    minutes: int,
    seed: int = 1,
    services: tuple[str, ...] = ("a", "b", "c"),
    p99: Any = None,
    rate: Any = None,
    silent: Any = None,
) -> list[tuple[int, WireRollup]]:
    """Rollups in time order; p99/rate(service, minute) override the lognormal noise, and
    silent(service, minute) drops a window."""
    rng = np.random.default_rng(seed)
    out: list[WireRollup] = []
    for m in range(minutes):
        for s in services:
            base_p99 = 200.0 * float(np.exp(rng.normal(0, 0.08)))
            base_rate = 50.0 * float(np.exp(rng.normal(0, 0.05)))
            if silent is not None and silent(s, m):
                continue
            value = p99(s, m, base_p99) if p99 else base_p99
            r = rate(s, m, base_rate) if rate else base_rate
            out.append(rollup(s, m, value, r))
    return list(enumerate(out))
