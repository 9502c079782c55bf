"""Bytes from the raw topic → validated sample columns plus rejects with reason codes.

Three encodings share one topic (schemas/): a single sample object, a JSON array of samples,
and a columnar series batch (one series, arrays `ts` and `value`). Checks that only need the
columns (finite values, negative delta counters, timestamps against the message time) run
vectorized over the whole consumed batch; the per-sample Python work is limited to pulling
fields out of the parsed JSON and a dictionary lookup of the series identity.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import orjson

from pipeline.core.columns import SampleColumns
from pipeline.core.reasons import Reason
from pipeline.core.series import Labels, MetricKind, SeriesIdentity, SeriesTable

_IDENTIFIER = re.compile(r"[A-Za-z0-9_.:/-]{1,200}")
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_REQUIRED = ("service", "region", "name", "type", "value", "ts")
# Longer than the record's excerpt, so the record can tell that it cut.
_EXCERPT_BYTES = 1024


class RawMessage(NamedTuple):
    """One record of the raw topic. timestamp_ms is None when the record carries no time."""

    value: bytes | None
    offset: int
    timestamp_ms: int | None


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


@dataclass(slots=True)
class DecodeResult:
    columns: SampleColumns
    rejects: list[Reject] = field(default_factory=list)


class _Invalid(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Decoder:
    """Stateless apart from the interning tables; one per process is enough."""

    def __init__(self, series: SeriesTable, limits: DecodeLimits | None = None) -> None:
        self.series = series
        self.limits = limits or DecodeLimits()
        # (service, region, name, type, temporality, unit, labels) → series id; avoids building
        # and validating a SeriesIdentity for every sample of a series already seen.
        self._fast: dict[tuple[Any, ...], int] = {}

    def decode(self, messages: Sequence[RawMessage]) -> DecodeResult:
        series: list[int] = []
        ts: list[int] = []
        value: list[float] = []
        instance: list[int] = []
        offsets: list[int] = []
        index: list[int] = []
        msg_time: list[int] = []
        rejects: list[Reject] = []
        col_parts: list[tuple[int, np.ndarray, np.ndarray, int, int, int]] = []

        for msg in messages:
            raw = msg.value or b""
            mtime = -1 if msg.timestamp_ms is None else msg.timestamp_ms
            if len(raw) > self.limits.max_message_bytes:
                rejects.append(
                    Reject(
                        msg.offset,
                        -1,
                        Reason.OVERSIZE_MESSAGE,
                        f"{len(raw)} bytes > limit {self.limits.max_message_bytes}",
                        raw[:_EXCERPT_BYTES],
                    )
                )
                continue
            try:
                doc = _parse(raw)
            except ValueError as exc:
                rejects.append(
                    Reject(msg.offset, -1, Reason.MALFORMED_JSON, str(exc), raw[:_EXCERPT_BYTES])
                )
                continue
            if isinstance(doc, dict):
                if isinstance(doc.get("ts"), list):
                    self._columnar(doc, msg, raw, col_parts, rejects)
                    continue
                items: list[Any] = [doc]
                first_index = -1
            elif isinstance(doc, list):
                if not doc:
                    rejects.append(
                        Reject(msg.offset, -1, Reason.EMPTY_BATCH, "empty array", raw[:64])
                    )
                    continue
                items = doc
                first_index = 0
            else:
                rejects.append(
                    Reject(
                        msg.offset,
                        -1,
                        Reason.NOT_AN_OBJECT,
                        f"top-level JSON {type(doc).__name__}",
                        raw[:_EXCERPT_BYTES],
                    )
                )
                continue
            for pos, item in enumerate(items):
                idx = -1 if first_index < 0 else pos
                try:
                    sid, t, v, iid = self._sample(item)
                except _Invalid as bad:
                    excerpt = raw if idx < 0 else _dump(item)
                    rejects.append(
                        Reject(msg.offset, idx, bad.reason, bad.detail, excerpt[:_EXCERPT_BYTES])
                    )
                    continue
                series.append(sid)
                ts.append(t)
                value.append(v)
                instance.append(iid)
                offsets.append(msg.offset)
                index.append(idx)
                msg_time.append(mtime)

        cols = SampleColumns(
            np.array(series, np.int32),
            np.array(ts, np.int64),
            np.array(value, np.float64),
            np.array(instance, np.int32),
            np.array(offsets, np.int64),
            np.array(index, np.int32),
        )
        times = np.array(msg_time, np.int64)
        if col_parts:
            cols, times = self._append_columnar(cols, times, col_parts)
        return self._vector_checks(cols, times, messages, rejects)

    # -- per-sample extraction ------------------------------------------------------------

    def _sample(self, item: Any) -> tuple[int, int, float, int]:
        if not isinstance(item, dict):
            raise _Invalid(Reason.NOT_AN_OBJECT, f"sample is a JSON {type(item).__name__}")
        try:
            t = item["ts"]
            v = item["value"]
            fast_key = (
                item["service"],
                item["region"],
                item["name"],
                item["type"],
                item.get("temporality"),
                item.get("unit"),
                _label_key(item.get("labels")),
            )
        except KeyError:
            missing = [f for f in _REQUIRED if f not in item]
            raise _Invalid(Reason.MISSING_FIELD, f"missing {', '.join(missing)}") from None
        except (TypeError, AttributeError):
            raise _Invalid(Reason.WRONG_TYPE, "labels must be an object of strings") from None
        if type(t) is not int or t < 0:
            raise _Invalid(Reason.WRONG_TYPE, "ts must be a non-negative integer (epoch ms)")
        if type(v) is not float and type(v) is not int:
            raise _Invalid(Reason.WRONG_TYPE, f"value must be a number, not {type(v).__name__}")
        try:
            sid = self._fast[fast_key]
        except KeyError:
            sid = self._new_series(item, fast_key)
        except TypeError:  # an unhashable field, e.g. a list where a string belongs
            raise _Invalid(Reason.WRONG_TYPE, "identity fields must be strings") from None
        inst = item.get("instance")
        if inst is None:
            if self.series.kinds.view()[sid] == MetricKind.COUNTER_CUMULATIVE:
                raise _Invalid(Reason.MISSING_INSTANCE, "cumulative counter without instance")
            return sid, t, float(v), -1
        if type(inst) is not str or not 0 < len(inst) <= 256:
            raise _Invalid(Reason.WRONG_TYPE, "instance must be a string of 1..256 characters")
        return sid, t, float(v), self.series.instance_id(inst)

    def _new_series(self, item: dict[str, Any], fast_key: tuple[Any, ...]) -> int:
        identity = self._identity(
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

    def _identity(
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
                raise _Invalid(Reason.WRONG_TYPE, f"{what} must be a string")
            if not _IDENTIFIER.fullmatch(text):
                raise _Invalid(
                    Reason.INVALID_IDENTIFIER, f"{what} {text[:80]!r} not [A-Za-z0-9_.:/-]{{1,200}}"
                )
        if type(type_name) is not str:
            raise _Invalid(Reason.WRONG_TYPE, "type must be a string")
        if temporality is not None and type(temporality) is not str:
            raise _Invalid(Reason.WRONG_TYPE, "temporality must be a string")
        kind = MetricKind.parse(type_name, temporality)
        if kind is None:
            if type_name in ("timer", "gauge", "counter"):
                raise _Invalid(
                    Reason.WRONG_TYPE,
                    f"temporality {temporality!r} not valid for {type_name} "
                    "(counters: delta or cumulative; others: none)",
                )
            raise _Invalid(Reason.UNKNOWN_METRIC_TYPE, f"type {type_name[:40]!r}")
        if unit is None:
            unit = ""
        elif type(unit) is not str or (unit and not _IDENTIFIER.fullmatch(unit)) or len(unit) > 32:
            raise _Invalid(Reason.INVALID_IDENTIFIER, "unit must match [A-Za-z0-9_.:/-]{0,32}")
        return SeriesIdentity(service, region, name, kind, unit, self._labels(labels))

    def _labels(self, labels: Any) -> Labels:
        if labels is None:
            return ()
        if not isinstance(labels, dict):
            raise _Invalid(Reason.WRONG_TYPE, "labels must be an object")
        if len(labels) > self.limits.max_labels:
            raise _Invalid(
                Reason.TOO_MANY_LABELS, f"{len(labels)} labels > limit {self.limits.max_labels}"
            )
        for key, val in labels.items():
            if not _LABEL_NAME.fullmatch(key):
                raise _Invalid(Reason.INVALID_LABEL, f"label name {key[:80]!r}")
            if type(val) is not str or len(val) > self.limits.max_label_value_chars:
                raise _Invalid(Reason.INVALID_LABEL, f"label {key} value must be a short string")
        return tuple(sorted(labels.items()))

    # -- columnar batches -------------------------------------------------------------------

    def _columnar(
        self,
        doc: dict[str, Any],
        msg: RawMessage,
        raw: bytes,
        parts: list[tuple[int, np.ndarray, np.ndarray, int, int, int]],
        rejects: list[Reject],
    ) -> None:
        excerpt = raw[:_EXCERPT_BYTES]
        try:
            missing = [f for f in _REQUIRED if f not in doc]
            if missing:
                raise _Invalid(Reason.MISSING_FIELD, f"missing {', '.join(missing)}")
            ts_list, val_list = doc["ts"], doc["value"]
            if not isinstance(val_list, list):
                raise _Invalid(Reason.WRONG_TYPE, "columnar batch: value must be an array")
            if len(ts_list) != len(val_list):
                raise _Invalid(
                    Reason.LENGTH_MISMATCH, f"{len(ts_list)} timestamps, {len(val_list)} values"
                )
            if not ts_list:
                raise _Invalid(Reason.EMPTY_BATCH, "columnar batch without points")
            ts_arr = np.array(ts_list)
            val_arr = np.array(val_list)
            if ts_arr.dtype.kind not in "iu" or ts_arr.ndim != 1 or (ts_arr < 0).any():
                raise _Invalid(Reason.WRONG_TYPE, "ts must be an array of non-negative integers")
            if val_arr.dtype.kind not in "iuf" or val_arr.ndim != 1:
                raise _Invalid(Reason.WRONG_TYPE, "value must be an array of numbers")
            identity = self._identity(
                doc["service"],
                doc["region"],
                doc["name"],
                doc["type"],
                doc.get("temporality"),
                doc.get("unit"),
                doc.get("labels"),
            )
            inst = doc.get("instance")
            if inst is not None and (type(inst) is not str or not 0 < len(inst) <= 256):
                raise _Invalid(Reason.WRONG_TYPE, "instance must be a string of 1..256 characters")
            if inst is None and identity.kind is MetricKind.COUNTER_CUMULATIVE:
                raise _Invalid(Reason.MISSING_INSTANCE, "cumulative counter without instance")
        except _Invalid as bad:
            rejects.append(Reject(msg.offset, -1, bad.reason, bad.detail, excerpt))
            return
        sid = self.series.intern(identity)
        iid = -1 if inst is None else self.series.instance_id(inst)
        mtime = -1 if msg.timestamp_ms is None else msg.timestamp_ms
        parts.append(
            (sid, ts_arr.astype(np.int64), val_arr.astype(np.float64), iid, msg.offset, mtime)
        )

    @staticmethod
    def _append_columnar(
        cols: SampleColumns,
        times: np.ndarray,
        parts: list[tuple[int, np.ndarray, np.ndarray, int, int, int]],
    ) -> tuple[SampleColumns, np.ndarray]:
        lengths = np.array([len(p[1]) for p in parts])
        # Columnar parts must keep partition order relative to the row-wise samples.
        pieces = [
            cols,
            SampleColumns(
                np.repeat(np.array([p[0] for p in parts], np.int32), lengths),
                np.concatenate([p[1] for p in parts]),
                np.concatenate([p[2] for p in parts]),
                np.repeat(np.array([p[3] for p in parts], np.int32), lengths),
                np.repeat(np.array([p[4] for p in parts], np.int64), lengths),
                np.concatenate([np.arange(n, dtype=np.int32) for n in lengths]),
            ),
        ]
        all_times = np.concatenate([times, np.repeat(np.array([p[5] for p in parts]), lengths)])
        merged = SampleColumns.concat(pieces)
        order = np.lexsort((merged.index, merged.offset))
        return merged.take(order), all_times[order]

    # -- vectorized checks ------------------------------------------------------------------

    def _vector_checks(
        self,
        cols: SampleColumns,
        times: np.ndarray,
        messages: Sequence[RawMessage],
        rejects: list[Reject],
    ) -> DecodeResult:
        if len(cols) == 0:
            return DecodeResult(cols, rejects)
        kinds = self.series.kinds.view()[cols.series]
        has_time = times >= 0
        checks = (
            (~np.isfinite(cols.value), Reason.NON_FINITE_VALUE, "value is NaN or infinite"),
            (
                (kinds == MetricKind.COUNTER_DELTA) & (cols.value < 0),
                Reason.NEGATIVE_DELTA_COUNTER,
                "delta counter increment < 0",
            ),
            (
                has_time & (cols.ts < times - self.limits.max_age_ms),
                Reason.TS_TOO_OLD,
                f"ts more than {self.limits.max_age_ms} ms before the message time",
            ),
            (
                has_time & (cols.ts > times + self.limits.max_future_ms),
                Reason.TS_IN_FUTURE,
                f"ts more than {self.limits.max_future_ms} ms after the message time",
            ),
        )
        bad_any = np.zeros(len(cols), dtype=bool)
        by_offset: dict[int, bytes] | None = None
        for mask, reason, detail in checks:
            hit = mask & ~bad_any
            if not hit.any():
                continue
            if by_offset is None:
                by_offset = {m.offset: m.value or b"" for m in messages}
            for i in np.flatnonzero(hit):
                excerpt = _excerpt_of(by_offset[int(cols.offset[i])], int(cols.index[i]))
                rejects.append(
                    Reject(int(cols.offset[i]), int(cols.index[i]), reason, detail, excerpt)
                )
            bad_any |= hit
        if bad_any.any():
            cols = cols.take(~bad_any)
        rejects.sort(key=lambda r: (r.offset, r.index))
        return DecodeResult(cols, rejects)


def _parse(raw: bytes) -> Any:
    """orjson, and on failure the stdlib parser, which also reads NaN, Infinity and 1e999.

    orjson rejects non-finite numbers outright; re-reading such a message lets the vectorized
    check give it its own reason code (and keeps the valid samples of a batch).
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def _label_key(labels: Any) -> Any:
    if labels is None:
        return None
    return tuple(sorted(labels.items()))


def _dump(item: Any) -> bytes:
    try:
        return orjson.dumps(item)
    except TypeError:
        return repr(item).encode()


def _excerpt_of(raw: bytes, index: int) -> bytes:
    """The offending sample of a message: the whole message, or one element of a batch."""
    if index < 0:
        return raw[:_EXCERPT_BYTES]
    try:
        doc = _parse(raw)
    except ValueError:
        return raw[:_EXCERPT_BYTES]
    if isinstance(doc, list) and index < len(doc):
        return _dump(doc[index])[:_EXCERPT_BYTES]
    if isinstance(doc, dict) and isinstance(doc.get("ts"), list):
        point = {k: v for k, v in doc.items() if k not in ("ts", "value")}
        point["ts"] = doc["ts"][index]
        point["value"] = doc["value"][index]
        return _dump(point)[:_EXCERPT_BYTES]
    return raw[:_EXCERPT_BYTES]
