"""The rollup record: keys and the JSON body (schemas/rollup.schema.json)."""

from __future__ import annotations

from typing import Any

import orjson


def rollup_key(series_key: str, resolution_ms: int, window_start: int) -> str:
    """Kafka key of a rollup: unique per (series, resolution, window), so re-emissions overwrite."""
    return f"{series_key}@{resolution_ms}@{window_start}"


class Rollup:
    """One emitted window. routing_key ("service|region") chooses the output partition.

    Built either from a body dict (tiers, tests) or from its rendered JSON (the rollup worker
    renders bodies in bulk, pipeline/core/render.py); `body` and `encode()` give both views,
    each computed once. count: the body's `count`, kept apart so emitting needs no parsing.
    A rollup is one of the stages' keyed outputs (core/keyed.py).
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
