"""Raw samples for tests that build input by hand."""

from __future__ import annotations

from typing import Any


def timer_sample(ts: int, **changes: Any) -> dict[str, Any]:
    """A valid timer sample (checkout, eu-west-1, http.server.duration, 12.5 ms) at `ts`;
    `changes` override or add fields, and a field set to None is left out."""
    out: dict[str, Any] = {
        "service": "checkout",
        "region": "eu-west-1",
        "name": "http.server.duration",
        "type": "timer",
        "unit": "ms",
        "value": 12.5,
        "ts": ts,
    }
    out.update(changes)
    return {k: v for k, v in out.items() if v is not None}
