"""Per-sample validation: field types, identifiers, labels, instances → series ids or a reason.

Only samples the decoder's vectorized path cannot vouch for come here: the first sample of a
series or instance, and every sample of a batch that holds anything unusual.
"""

from __future__ import annotations

import re
import reprlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.core.contract import (
    IDENTIFIER_MAX_CHARS,
    IDENTIFIER_PATTERN,
    INSTANCE_MAX_CHARS,
    LABEL_NAME_PATTERN,
    MAX_ABS_VALUE,
    MAX_LABEL_VALUE_CHARS,
    MAX_LABELS,
    MAX_TS,
    UNIT_MAX_CHARS,
    UNIT_PATTERN,
)
from pipeline.core.reasons import Reason
from pipeline.core.series import Labels, MetricKind, SeriesIdentity, SeriesTable

__all__ = ["MAX_ABS_VALUE", "MAX_TS"]

# Applied with search(), as a JSON Schema validator applies the schema's patterns.
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
_UNIT = re.compile(UNIT_PATTERN)
_LABEL_NAME = re.compile(LABEL_NAME_PATTERN)
REQUIRED_FIELDS = ("service", "region", "name", "type", "value", "ts")
TS_RULE = "ts must be an integral epoch ms in [0, 2**42)"
NUMBER_TYPES = frozenset({int, float})
# Longer than the record's excerpt, so the record can tell that it cut.
EXCERPT_BYTES = 1024


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds beyond which input is dead-lettered instead of aggregated."""

    max_message_bytes: int = 1_048_576
    max_labels: int = MAX_LABELS
    max_label_value_chars: int = MAX_LABEL_VALUE_CHARS
    max_age_ms: int = 6 * 3_600_000
    max_future_ms: int = 10 * 60_000


@dataclass(slots=True)
class Reject:
    """Input that will not be aggregated. index is -1 when the whole message is rejected.

    samples: how many points it accounts for. A reject of points of a batch (index >= 0) stands
    for every point of that record rejected for the same reason: index is the first of them,
    ranges the inclusive (first, last) index runs of all of them (empty: just index).
    """

    offset: int
    index: int
    reason: Reason
    detail: str
    excerpt: bytes
    samples: int = 1
    ranges: list[tuple[int, int]] = field(default_factory=list)


class Invalid(Exception):
    """Raised by the validator; carries the dead-letter reason."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class SampleValidator:
    """Validates sample objects and interns their series (shared by one process's partitions)."""

    def __init__(
        self,
        series: SeriesTable,
        limits: DecodeLimits | None = None,
        lookup: dict[tuple[Any, ...], int] | None = None,
    ) -> None:
        self.series = series
        self.limits = limits or DecodeLimits()
        # ((service, region, name, type, temporality, unit), labels) → series id; avoids building
        # and validating a SeriesIdentity for every sample of a series already seen. The
        # decoder passes the table's own cache, which drops the entries of series it forgets.
        self.lookup: dict[tuple[Any, ...], int] = {} if lookup is None else lookup

    def sample(self, item: Any) -> tuple[int, int, float, int]:
        if not isinstance(item, dict):
            raise Invalid(Reason.NOT_AN_OBJECT, f"sample is a JSON {type(item).__name__}")
        try:
            t = item["ts"]
            v = item["value"]
            fast_key = (
                (
                    item["service"],
                    item["region"],
                    item["name"],
                    item["type"],
                    item.get("temporality"),
                    item.get("unit"),
                ),
                label_key(item.get("labels")),
            )
        except KeyError:
            missing = [f for f in REQUIRED_FIELDS if f not in item]
            raise Invalid(Reason.MISSING_FIELD, f"missing {', '.join(missing)}") from None
        except (TypeError, AttributeError):
            raise Invalid(Reason.WRONG_TYPE, "labels must be an object of strings") from None
        if type(t) is not int:
            t = integral_ts(t)
        elif not 0 <= t < MAX_TS:
            raise Invalid(Reason.WRONG_TYPE, TS_RULE)
        if type(v) is not float and type(v) is not int:
            raise Invalid(Reason.WRONG_TYPE, f"value must be a number, not {type(v).__name__}")
        try:
            value = float(v)
        except OverflowError:  # an integer literal beyond the float range
            raise Invalid(Reason.VALUE_OUT_OF_RANGE, VALUE_RULE) from None
        try:
            sid = self.lookup[fast_key]
        except KeyError:
            sid = self._new_series(item, fast_key)
        except TypeError:  # an unhashable field, e.g. a list where a string belongs
            self.labels(item.get("labels"))  # the precise reason when the labels are at fault
            raise Invalid(Reason.WRONG_TYPE, "identity fields must be strings") from None
        inst = item.get("instance")
        if inst is None:
            if self.series.kinds.view()[sid] == MetricKind.COUNTER_CUMULATIVE:
                raise Invalid(Reason.MISSING_INSTANCE, "cumulative counter without instance")
            return sid, t, value, -1
        return sid, t, value, self.instance(inst)

    def instance(self, name: Any) -> int:
        iid = self.series.instances.get(name) if type(name) is str else None
        if iid is not None:
            return iid
        if type(name) is not str or not 0 < len(name) <= INSTANCE_MAX_CHARS or not utf8(name):
            raise Invalid(Reason.WRONG_TYPE, "instance must be 1..256 characters of UTF-8")
        return self.series.instance_id(name)

    def _new_series(self, item: dict[str, Any], fast_key: tuple[Any, ...]) -> int:
        identity = self.identity(
            item["service"],
            item["region"],
            item["name"],
            item["type"],
            item.get("temporality"),
            item.get("unit"),
            item.get("labels"),
        )
        sid = self.series.intern(identity)
        self.lookup[fast_key] = sid
        return sid

    def identity(
        self,
        service: Any,
        region: Any,
        name: Any,
        type_name: Any,
        temporality: Any,
        unit: Any,
        labels: Any,
    ) -> SeriesIdentity:
        for what, text in (("service", service), ("region", region), ("name", name)):
            if type(text) is not str:
                raise Invalid(Reason.WRONG_TYPE, f"{what} must be a string")
            if len(text) > IDENTIFIER_MAX_CHARS or not _IDENTIFIER.search(text):
                raise Invalid(
                    Reason.INVALID_IDENTIFIER, f"{what} {text[:80]!r} not [A-Za-z0-9_.:/-]{{1,200}}"
                )
        if type(type_name) is not str:
            raise Invalid(Reason.WRONG_TYPE, "type must be a string")
        if temporality is not None and type(temporality) is not str:
            raise Invalid(Reason.WRONG_TYPE, "temporality must be a string")
        kind = MetricKind.parse(type_name, temporality)
        if kind is None:
            if type_name in ("timer", "gauge", "counter"):
                raise Invalid(
                    Reason.WRONG_TYPE,
                    f"temporality {temporality!r} not valid for {type_name} "
                    "(counters: delta or cumulative; others: none)",
                )
            raise Invalid(Reason.UNKNOWN_METRIC_TYPE, f"type {type_name[:40]!r}")
        if unit is None:
            unit = ""
        elif type(unit) is not str:
            raise Invalid(Reason.WRONG_TYPE, "unit must be a string")
        elif len(unit) > UNIT_MAX_CHARS or not _UNIT.search(unit):
            raise Invalid(
                Reason.INVALID_IDENTIFIER,
                f"unit {unit[:40]!r}: up to {UNIT_MAX_CHARS} printable ASCII characters, "
                'no space, " or \\',
            )
        return SeriesIdentity(service, region, name, kind, unit, self.labels(labels))

    def labels(self, labels: Any) -> Labels:
        if labels is None:
            return ()
        if not isinstance(labels, dict):
            raise Invalid(Reason.WRONG_TYPE, "labels must be an object")
        if len(labels) > self.limits.max_labels:
            raise Invalid(
                Reason.TOO_MANY_LABELS, f"{len(labels)} labels > limit {self.limits.max_labels}"
            )
        for key, val in labels.items():
            if not _LABEL_NAME.search(key):
                raise Invalid(Reason.INVALID_LABEL, f"label name {key[:80]!r}")
            if (
                type(val) is not str
                or len(val) > self.limits.max_label_value_chars
                or not utf8(val)
            ):
                raise Invalid(
                    Reason.INVALID_LABEL, f"label {key} value must be a short UTF-8 string"
                )
        return tuple(sorted(labels.items()))


def utf8(text: str) -> bool:
    """False for strings with lone surrogates (JSON `\\ud800`), which cannot be re-encoded."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def label_key(labels: Any) -> Any:
    """Hashable form of a label map; None for no labels (an empty map counts as none).

    Anything but a dict or None raises AttributeError, so that a wrong type is never served
    from the series cache (whether it would be depends on what the process saw before).
    """
    if labels is None or (type(labels) is dict and not labels):
        return None
    return tuple(sorted(labels.items()))


def integral_ts(t: Any) -> int:
    """A float ts with no fractional part as an int (JSON Schema's "integer" admits 1.7e12)."""
    if type(t) is float and t.is_integer() and 0 <= t < MAX_TS:
        return int(t)
    raise Invalid(Reason.WRONG_TYPE, TS_RULE)


VALUE_RULE = f"value beyond ±{MAX_ABS_VALUE:g}"
# Bounded in depth and width: an excerpt of anything, at a cost independent of its nesting.
_BOUNDED = reprlib.Repr()
_BOUNDED.maxlevel = 8
_BOUNDED.maxstring = _BOUNDED.maxother = _BOUNDED.maxlong = 400
_BOUNDED.maxdict = _BOUNDED.maxlist = 32


def dump(item: Any) -> bytes:
    """`item` as JSON, or a bounded Python repr of it; never raises, whatever its shape."""
    try:
        return orjson.dumps(item)
    except Exception:  # nesting beyond 254 levels, integers beyond 64 bits, ...
        pass
    try:
        return _BOUNDED.repr(item).encode("utf-8", "backslashreplace")
    except Exception:  # the excerpt is a courtesy, never a reason to fail
        return f"<unprintable {type(item).__name__}>".encode()
