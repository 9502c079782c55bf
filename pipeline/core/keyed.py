"""What a windowed stage produces, as the stage's output side sees it.

The rollup worker and the tiers produce rollups (rollup.py), the detector anomaly events
(detect/events.py); kafka/stage.py produces either the same way: the record's key and value
bytes, the routing key that picks the output partition (the same partition for every record
of one "service|region"), and the samples it accounts for.
"""

from __future__ import annotations

from typing import Protocol


class KeyedOutput(Protocol):
    @property
    def key(self) -> str:
        """Kafka key: unique per record, so that a replay's re-emission overwrites it."""

    @property
    def routing_key(self) -> str:
        """The "service|region" that chooses the output partition."""

    @property
    def count(self) -> int:
        """Samples the record accounts for (an anomaly event: none)."""

    def encode(self) -> bytes:
        """The record's value."""
