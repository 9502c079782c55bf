"""Build raw messages and exact expectations for core tests (no Kafka)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import orjson

from pipeline.core.decode import RawMessage
from pipeline.core.rollup import Rollup

BASE_MS = 1_767_225_600_000


def messages(samples: list[dict[str, Any]], start_offset: int = 0) -> list[RawMessage]:
    return [
        RawMessage(orjson.dumps(s), start_offset + i, int(s["ts"])) for i, s in enumerate(samples)
    ]


def cumulative(ts: int, value: float, instance: str = "pod-1") -> dict[str, Any]:
    """One sample of a cumulative counter `reqs` (service a, region eu) reported by `instance`."""
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


def timers(
    rng: np.random.Generator,
    n: int,
    services: int = 5,
    span_ms: int = 120_000,
    jitter_ms: int = 2_000,
) -> list[dict[str, Any]]:
    """Timer samples in roughly increasing time with bounded disorder."""
    ts = BASE_MS + np.sort(rng.integers(0, span_ms, n)) + rng.integers(-jitter_ms, 1, n)
    ts = np.maximum(ts, BASE_MS)
    svc = rng.integers(0, services, n)
    val = rng.lognormal(0.0, 1.0, n)
    return [
        {
            "service": f"svc{s}",
            "region": "eu",
            "name": "latency",
            "type": "timer",
            "value": float(v),
            "ts": int(t),
        }
        for s, v, t in zip(svc.tolist(), val.tolist(), ts.tolist(), strict=True)
    ]


def by_key(rollups: list[Rollup]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in rollups:
        assert r.key not in out or out[r.key] == r.body, f"conflicting duplicate {r.key}"
        out[r.key] = r.body
    return out


def group_values(
    samples: list[dict[str, Any]], resolution_ms: int
) -> dict[tuple[str, int], list[float]]:
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for s in samples:
        groups[(s["service"], s["ts"] - s["ts"] % resolution_ms)].append(s["value"])
    return groups
