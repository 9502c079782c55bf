"""Call-site validation of samples with the worker's own rules.

A sample the client accepts is one the worker aggregates: identity, labels, unit, instance, type
and timestamp rules come from `pipeline.core.validate` (the code the worker runs), never from a
copy here, so a rule changed there is enforced here too. What the worker checks in bulk while
decoding (finite values, non-negative delta counters, timestamps within `max_age`/`max_future` of
the record) is checked against the same limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import orjson

from pipeline.core.reasons import Reason
from pipeline.core.series import MetricKind, SeriesIdentity, SeriesTable
from pipeline.core.validate import (
    MAX_ABS_VALUE,
    REQUIRED_FIELDS,
    DecodeLimits,
    Invalid,
    SampleValidator,
)
from pipeline.errors import PipelineError

__all__ = [
    "CheckedSample",
    "InvalidSampleError",
    "SampleChecker",
    "Stream",
    "check_fields",
]

#: Fields of a raw sample besides the required ones (schemas/sample.schema.json). Anything else
#: is refused: the client writes only the fields it knows, so an unknown one would be lost.
OPTIONAL_FIELDS: Final = ("labels", "unit", "instance", "temporality")
_KNOWN_FIELDS: Final = frozenset(REQUIRED_FIELDS + OPTIONAL_FIELDS)


class InvalidSampleError(PipelineError, ValueError):
    """A sample the worker would dead-letter; `reason` is the dead-letter reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Stream:
    """One (series, instance): its Kafka key, the JSON opening every record of it starts with
    (identity fields and a trailing comma), and the points waiting to be sent."""

    key: bytes
    prefix: bytes
    ts: list[int]
    values: list[int | float]


@dataclass(frozen=True, slots=True)
class CheckedSample:
    stream: Stream
    ts: int
    value: int | float


class SampleChecker:
    """Validates samples and hands out one `Stream` per (series, instance). Not thread-safe:
    the producer calls it under its lock."""

    def __init__(self, limits: DecodeLimits | None = None) -> None:
        self.limits = limits or DecodeLimits()
        self._series = SeriesTable()
        self._validator = SampleValidator(self._series, self.limits)
        self._streams: dict[tuple[int, int], Stream] = {}

    def check(self, sample: dict[str, Any], now_ms: int) -> CheckedSample:
        """The sample's stream, ts and value; InvalidSampleError if the worker would refuse it."""
        try:
            sid, ts, as_float, iid = self._validator.sample(sample)
        except Invalid as exc:
            raise InvalidSampleError(exc.reason, exc.detail) from None
        if not math.isfinite(as_float):
            raise InvalidSampleError(Reason.NON_FINITE_VALUE, "value is NaN or infinite")
        if abs(as_float) > MAX_ABS_VALUE:  # as the worker: sums must stay finite
            raise InvalidSampleError(Reason.VALUE_OUT_OF_RANGE, f"value beyond ±{MAX_ABS_VALUE:g}")
        identity = self._series.identities[sid]
        if identity.kind is MetricKind.COUNTER_DELTA and as_float < 0:
            raise InvalidSampleError(
                Reason.NEGATIVE_DELTA_COUNTER, "a delta counter's value must be >= 0"
            )
        if ts < now_ms - self.limits.max_age_ms:
            raise InvalidSampleError(
                Reason.TS_TOO_OLD, f"ts more than {self.limits.max_age_ms} ms in the past"
            )
        if ts > now_ms + self.limits.max_future_ms:
            raise InvalidSampleError(
                Reason.TS_IN_FUTURE, f"ts more than {self.limits.max_future_ms} ms in the future"
            )
        stream = self._streams.get((sid, iid))
        if stream is None:
            instance = self._series.instance_names[iid] if iid >= 0 else None
            stream = Stream(identity.routing_key.encode(), _prefix(identity, instance), [], [])
            self._streams[(sid, iid)] = stream
        # Ints stay ints: counters are written as integers, as clients send them.
        value = sample["value"]
        return CheckedSample(stream, ts, value if type(value) is int else as_float)


def check_fields(sample: dict[str, Any]) -> None:
    """InvalidSampleError if `sample` has a field the contract does not define."""
    unknown = sample.keys() - _KNOWN_FIELDS
    if unknown:
        raise InvalidSampleError("unknown_field", f"not sample fields: {sorted(unknown)}")


def _prefix(identity: SeriesIdentity, instance: str | None) -> bytes:
    """`{"service":...,"instance":...,` — the sample or batch object up to its ts and value."""
    fields: dict[str, Any] = {
        "service": identity.service,
        "region": identity.region,
        "name": identity.name,
        "type": identity.kind.type_name,
    }
    if identity.kind.temporality is not None:
        fields["temporality"] = identity.kind.temporality
    if identity.unit:
        fields["unit"] = identity.unit
    if identity.labels:
        fields["labels"] = dict(identity.labels)
    if instance is not None:
        fields["instance"] = instance
    return orjson.dumps(fields)[:-1] + b","
