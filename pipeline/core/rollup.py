"""The rollup record: naming of resolutions, keys and the JSON body (schemas/rollup.schema.json)."""

from __future__ import annotations

import re
from dataclasses import dataclass
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


@dataclass(slots=True)
class Rollup:
    """One emitted window. routing_key ("service|region") chooses the output partition."""

    key: str
    routing_key: str
    body: dict[str, Any]

    def encode(self) -> bytes:
        return orjson.dumps(self.body)
