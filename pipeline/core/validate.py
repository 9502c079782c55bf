"""Per-sample validation: field types, identifiers, labels, instances → series ids or a reason.

Only samples the decoder's vectorized path cannot vouch for come here: the first sample of a
series or instance, and every sample of a batch that holds anything unusual.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.core.reasons import Reason
from pipeline.core.series import Labels, MetricKind, SeriesIdentity, SeriesTable

_IDENTIFIER = re.compile(r"[A-Za-z0-9_.:/-]{1,200}")
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
REQUIRED_FIELDS = ("service", "region", "name", "type", "value", "ts")
# Epoch ms below 2**42 (year 2109): leaves room to pack keys beside a timestamp in an int64.
MAX_TS = 2**42
# Sums of up to ~1e18 values this large stay finite in float64.
MAX_ABS_VALUE = 1e290
TS_RULE = "ts must be an integer epoch ms in [0, 2**42)"
INT_TYPES = frozenset({int})
NUMBER_TYPES = frozenset({int, float})
# Longer than the record's excerpt, so the record can tell that it cut.
EXCERPT_BYTES = 1024


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds beyond which input is dead-lettered instead of aggregated."""

    max_message_bytes: int = 1_048_576
    max_labels: int = 16
    max_label_value_chars: int = 256
    max_age_ms: int = 6 * 3_600_000
    max_future_ms: int = 10 * 60_000


@dataclass(slots=True)
class Reject:
    """Input that will not be aggregated. index is -1 when the whole message is rejected."""

    offset: int
    index: int
    reason: Reason
    detail: str
    excerpt: bytes
    samples: int = 1


class Invalid(Exception):
    """Raised by the validator; carries the dead-letter reason."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class SampleValidator:
    """Validates sample objects and interns their series (shared by one process's partitions)."""

    def __init__(self, series: SeriesTable, limits: DecodeLimits | None = None) -> None:
        self.series = series
        self.limits = limits or DecodeLimits()
        # ((service, region, name, type, temporality, unit), labels) → series id; avoids building
        # and validating a SeriesIdentity for every sample of a series already seen.
        self._fast: dict[tuple[Any, ...], int] = {}

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
        if type(t) is not int or not 0 <= t < MAX_TS:
            raise Invalid(Reason.WRONG_TYPE, TS_RULE)
        if type(v) is not float and type(v) is not int:
            raise Invalid(Reason.WRONG_TYPE, f"value must be a number, not {type(v).__name__}")
        try:
            value = float(v)
        except OverflowError:  # an integer literal beyond the float range
            raise Invalid(Reason.NON_FINITE_VALUE, "value beyond the float range") from None
        try:
            sid = self._fast[fast_key]
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
        if type(name) is not str or not 0 < len(name) <= 256 or not utf8(name):
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
        self._fast[fast_key] = sid
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
            if not _IDENTIFIER.fullmatch(text):
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
        elif type(unit) is not str or (unit and not _IDENTIFIER.fullmatch(unit)) or len(unit) > 32:
            raise Invalid(Reason.INVALID_IDENTIFIER, "unit must match [A-Za-z0-9_.:/-]{0,32}")
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
            if not _LABEL_NAME.fullmatch(key):
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


def dump(item: Any) -> bytes:
    try:
        return orjson.dumps(item)
    except TypeError:
        return repr(item).encode()
