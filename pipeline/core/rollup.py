"""The rollup record: naming of resolutions, keys and the JSON body (schemas/rollup.schema.json)."""

from __future__ import annotations

import re
from typing import Any

import orjson

from pipeline.errors import ConfigError

_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_RESOLUTION = re.compile(r"([0-9]+)(ms|s|m|h|d)")


def parse_duration_ms(text: str) -> int:
    """ "10s" → 10000, "1m" → 60000, "250ms" → 250. Raises ConfigError on anything else."""
    match = _RESOLUTION.fullmatch(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise ConfigError(f"not a duration: {text!r} (use e.g. 250ms, 10s, 1m, 5m, 1h, 1d)")
    return int(match.group(1)) * _UNITS_MS[match.group(2)]


def format_duration(ms: int) -> str:
    """The largest exact unit: 60000 → "1m", 90000 → "90s"."""
    for unit in ("d", "h", "m", "s"):
        size = _UNITS_MS[unit]
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def rollup_key(series_key: str, resolution_ms: int, window_start: int) -> str:
    """Kafka key of a rollup: unique per (series, resolution, window), so re-emissions overwrite."""
    return f"{series_key}@{resolution_ms}@{window_start}"


class Rollup:
    """One emitted window. routing_key ("service|region") chooses the output partition.

    Built either from a body dict (tiers, tests) or from its rendered JSON (the rollup worker
    renders bodies in bulk, pipeline/core/render.py); `body` and `encode()` give both views,
    each computed once. count: the body's `count` (0 for other keyed records, e.g. anomaly
    events), kept apart so emitting needs no parsing.
    """

    __slots__ = ("_body", "_encoded", "count", "key", "routing_key")

    def __init__(
        self,
        key: str,
        routing_key: str,
        body: dict[str, Any] | None = None,
        *,
        encoded: bytes | None = None,
        count: int | None = None,
    ) -> None:
        if body is None and encoded is None:
            raise ValueError("a rollup needs its body or its encoded body")
        self.key = key
        self.routing_key = routing_key
        self._body = body
        self._encoded = encoded
        # Keyed records that are not rollups (anomaly events) count no samples.
        self.count: int = int(self.body.get("count", 0)) if count is None else count

    @property
    def body(self) -> dict[str, Any]:
        if self._body is None:
            assert self._encoded is not None
            self._body = orjson.loads(self._encoded)
        return self._body

    def encode(self) -> bytes:
        if self._encoded is None:
            self._encoded = orjson.dumps(self._body)
        return self._encoded

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Rollup):
            return NotImplemented
        return (self.key, self.routing_key, self.body) == (other.key, other.routing_key, other.body)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Rollup(key={self.key!r}, routing_key={self.routing_key!r}, count={self.count})"
