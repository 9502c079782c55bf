"""Typed decoding of anomaly events (schemas/anomaly.schema.json) for the alert bridge.

msgspec checks the types in C; the rules a type cannot state (the Kafka key is
"<episode_id>@<state>", the window is ordered, the episode began no later than its window,
a deviation has an observed value) are checked here. Unknown fields are tolerated so a newer
detector's optional fields do not dead-letter its events.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import msgspec

from pipeline.core.reasons import Reason

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
Resolution = Annotated[str, msgspec.Meta(pattern="^[0-9]+(ms|s|m|h|d)$")]


class EventSeries(msgspec.Struct, frozen=True, gc=False):
    service: str
    region: str
    name: str
    type: Literal["timer", "gauge", "counter"]
    labels: dict[str, str]
    temporality: Literal["delta", "cumulative"] | None = None
    unit: str | None = None


class EventDetector(msgspec.Struct, frozen=True, gc=False):
    name: str
    version: str


class AnomalyEvent(msgspec.Struct, frozen=True, gc=False):
    episode_id: NonEmpty
    state: Literal["firing", "resolved"]
    kind: Literal["deviation", "absence"]
    series: EventSeries
    series_key: str
    statistic: NonEmpty
    resolution: Resolution
    window_start: int
    window_end: int
    started_at: int
    observed: float | None
    expected: float
    lower: float
    upper: float
    score: float
    direction: Literal["up", "down"]
    severity: Literal["warning", "critical"]
    detector: EventDetector

    @property
    def key(self) -> str:
        """The Kafka key the contract gives this event."""
        return f"{self.episode_id}@{self.state}"


_DECODER = msgspec.json.Decoder(AnomalyEvent)
#: 9999-12-31T23:59:59.999Z: the last instant an RFC 3339 timestamp (startsAt/endsAt) can say.
MAX_EPOCH_MS = 253_402_300_799_999


class InvalidEvent(Exception):
    """A record that is not a usable anomaly event; `reason` is its dead-letter code."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def decode_event(raw: bytes | None, key: bytes | None) -> AnomalyEvent:
    """The event in `raw` (published under `key`); raises InvalidEvent otherwise."""
    if not raw:
        raise InvalidEvent(Reason.MALFORMED_JSON, "empty record")
    try:
        event = _DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(Reason.INVALID_ANOMALY, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent(Reason.MALFORMED_JSON, str(exc)) from None
    problem = _problem(event, key)
    if problem:
        raise InvalidEvent(Reason.INVALID_ANOMALY, problem)
    return event


def _problem(e: AnomalyEvent, key: bytes | None) -> str:
    if key is not None and key != e.key.encode():
        return f"Kafka key {key[:200]!r} is not {e.key!r}"
    if not all(0 <= t <= MAX_EPOCH_MS for t in (e.started_at, e.window_start, e.window_end)):
        return "started_at, window_start and window_end must be epoch ms between 1970 and 9999"
    if e.window_end <= e.window_start:
        return f"window [{e.window_start}, {e.window_end}) is empty"
    if e.started_at > e.window_start:
        return f"started_at {e.started_at} is after the window start {e.window_start}"
    numbers = (e.expected, e.lower, e.upper, e.score)
    if not all(map(math.isfinite, numbers)) or (
        e.observed is not None and not math.isfinite(e.observed)
    ):
        return "observed, expected, lower, upper and score must be finite"
    if e.kind == "deviation" and e.observed is None:
        return "a deviation needs an observed value"
    return ""
