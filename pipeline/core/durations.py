"""Durations as written in settings and topic names: "250ms", "10s", "1m", "5m", "1h", "1d"."""

from __future__ import annotations

import re

from pipeline.errors import ConfigError

_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"([0-9]+)(ms|s|m|h|d)")


def parse_duration_ms(text: str) -> int:
    """ "10s" → 10000, "1m" → 60000, "250ms" → 250. Raises ConfigError on anything else."""
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise ConfigError(f"not a duration: {text!r} (use e.g. 250ms, 10s, 1m, 5m, 1h, 1d)")
    return int(match.group(1)) * _UNITS_MS[match.group(2)]


def format_duration(ms: int) -> str:
    """The largest exact unit: 60000 → "1m", 90000 → "90s" (0 → "0s")."""
    if ms == 0:
        return "0s"  # an "off" setting, as written
    for unit in ("d", "h", "m", "s"):
        size = _UNITS_MS[unit]
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
