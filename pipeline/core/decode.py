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
# Epoch ms below 2**42 (year 2109): leaves room to pack keys beside a timestamp in an int64.
MAX_TS = 2**42
_TS_RULE = "ts must be an integer epoch ms in [0, 2**42)"
_INT = frozenset({int})
_NUMBER = frozenset({int, float})
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
        self._kept = np.empty(0, np.int64)  # rows of the last batch that became samples

    def decode(self, messages: Sequence[RawMessage]) -> DecodeResult:
        rejects: list[Reject] = []
        col_parts: list[tuple[int, np.ndarray, np.ndarray, int, int, int]] = []
        items: list[Any] = []  # sample objects of single and array messages, in order
        item_offset: list[int] = []
        item_index: list[int] = []
        item_time: list[int] = []
        raw_of: dict[int, bytes] = {}

        limit = self.limits.max_message_bytes
        for msg in messages:
            raw = msg.value or b""
            if len(raw) > limit:
                rejects.append(
                    Reject(
                        msg.offset,
                        -1,
                        Reason.OVERSIZE_MESSAGE,
                        f"{len(raw)} bytes > limit {limit}",
                        raw[:_EXCERPT_BYTES],
                    )
                )
                continue
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError:
                try:
                    doc = _parse_lenient(raw)
                except ValueError as exc:
                    rejects.append(
                        Reject(
                            msg.offset, -1, Reason.MALFORMED_JSON, str(exc), raw[:_EXCERPT_BYTES]
                        )
                    )
                    continue
            raw_of[msg.offset] = raw
            mtime = -1 if msg.timestamp_ms is None else msg.timestamp_ms
            kind = type(doc)
            if kind is dict:
                if type(doc.get("ts")) is list:
                    self._columnar(doc, msg, raw, col_parts, rejects)
                    continue
                items.append(doc)
                item_offset.append(msg.offset)
                item_index.append(-1)
                item_time.append(mtime)
            elif kind is list and doc:
                items.extend(doc)
                item_offset.extend([msg.offset] * len(doc))
                item_index.extend(range(len(doc)))
                item_time.extend([mtime] * len(doc))
            elif kind is list:
                rejects.append(Reject(msg.offset, -1, Reason.EMPTY_BATCH, "empty array", raw[:64]))
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

        offsets = np.array(item_offset, np.int64)
        index = np.array(item_index, np.int32)
        rows = self._rows_fast(items, offsets, index)
        if rows is None:
            rows = self._rows_slow(items, offsets, index, raw_of, rejects)
        cols = rows
        times = np.array(item_time, np.int64)
        if len(cols) != len(items):
            times = times[self._kept]
        if col_parts:
            cols, times = self._append_columnar(cols, times, col_parts)
        return self._vector_checks(cols, times, raw_of, rejects)

    def _rows_fast(
        self, items: list[Any], offsets: np.ndarray, index: np.ndarray
    ) -> SampleColumns | None:
        """All items at once, or None when any item needs the per-sample path.

        The common case — every sample well-formed and of a series and instance seen before —
        costs a few list comprehensions and dictionary lookups per sample; anything else (a new
        series, a wrong type, a missing field) sends the whole batch down `_rows_slow`.
        """
        if not items:
            self._kept = np.empty(0, np.int64)
            return SampleColumns.empty()
        try:
            ts_list = [d["ts"] for d in items]
            value_list = [d["value"] for d in items]
            fast = self._fast
            series_ids = [
                fast[
                    (
                        d["service"],
                        d["region"],
                        d["name"],
                        d["type"],
                        d.get("temporality"),
                        d.get("unit"),
                        tuple(sorted(lab.items())) if (lab := d.get("labels")) else None,
                    )
                ]
                for d in items
            ]
            instances = self.series.instances
            instance_ids = [
                -1 if (name := d.get("instance")) is None else instances[name] for d in items
            ]
        except (KeyError, TypeError, AttributeError):
            return None
        if not set(map(type, ts_list)) <= _INT or not set(map(type, value_list)) <= _NUMBER:
            return None
        try:
            ts = np.array(ts_list, np.int64)
            values = np.array(value_list, np.float64)
        except OverflowError:
            return None
        if ((ts < 0) | (ts >= MAX_TS)).any():
            return None
        series = np.array(series_ids, np.int32)
        instance = np.array(instance_ids, np.int32)
        needs_instance = self.series.kinds.view()[series] == MetricKind.COUNTER_CUMULATIVE
        if (needs_instance & (instance < 0)).any():
            return None
        self._kept = np.arange(len(items))
        return SampleColumns(series, ts, values, instance, offsets, index)

    def _rows_slow(
        self,
        items: list[Any],
        offsets: np.ndarray,
        index: np.ndarray,
        raw_of: dict[int, bytes],
        rejects: list[Reject],
    ) -> SampleColumns:
        series: list[int] = []
        ts: list[int] = []
        value: list[float] = []
        instance: list[int] = []
        kept: list[int] = []
        for pos, (item, offset, idx) in enumerate(
            zip(items, offsets.tolist(), index.tolist(), strict=True)
        ):
            try:
                sid, t, v, iid = self._sample(item)
            except _Invalid as bad:
                excerpt = raw_of[offset] if idx < 0 else _dump(item)
                rejects.append(
                    Reject(offset, idx, bad.reason, bad.detail, excerpt[:_EXCERPT_BYTES])
                )
                continue
            series.append(sid)
            ts.append(t)
            value.append(v)
            instance.append(iid)
            kept.append(pos)
        self._kept = np.array(kept, np.int64)
        return SampleColumns(
            np.array(series, np.int32),
            np.array(ts, np.int64),
            np.array(value, np.float64),
            np.array(instance, np.int32),
            offsets[self._kept],
            index[self._kept],
        )

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
        if type(t) is not int or not 0 <= t < MAX_TS:
            raise _Invalid(Reason.WRONG_TYPE, _TS_RULE)
        if type(v) is not float and type(v) is not int:
            raise _Invalid(Reason.WRONG_TYPE, f"value must be a number, not {type(v).__name__}")
        try:
            value = float(v)
        except OverflowError:  # an integer literal beyond the float range
            raise _Invalid(Reason.NON_FINITE_VALUE, "value beyond the float range") from None
        try:
            sid = self._fast[fast_key]
        except KeyError:
            sid = self._new_series(item, fast_key)
        except TypeError:  # an unhashable field, e.g. a list where a string belongs
            self._labels(item.get("labels"))  # the precise reason when the labels are at fault
            raise _Invalid(Reason.WRONG_TYPE, "identity fields must be strings") from None
        inst = item.get("instance")
        if inst is None:
            if self.series.kinds.view()[sid] == MetricKind.COUNTER_CUMULATIVE:
                raise _Invalid(Reason.MISSING_INSTANCE, "cumulative counter without instance")
            return sid, t, value, -1
        return sid, t, value, self._instance(inst)

    def _instance(self, name: Any) -> int:
        iid = self.series.instances.get(name) if type(name) is str else None
        if iid is not None:
            return iid
        if type(name) is not str or not 0 < len(name) <= 256 or not _utf8(name):
            raise _Invalid(Reason.WRONG_TYPE, "instance must be 1..256 characters of UTF-8")
        return self.series.instance_id(name)

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
            if (
                type(val) is not str
                or len(val) > self.limits.max_label_value_chars
                or not _utf8(val)
            ):
                raise _Invalid(
                    Reason.INVALID_LABEL, f"label {key} value must be a short UTF-8 string"
                )
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
            try:
                ts_arr = np.array(ts_list)
                val_arr = np.array(val_list)
            except (ValueError, OverflowError):  # ragged: an element is itself an array
                raise _Invalid(Reason.WRONG_TYPE, "ts and value must be flat arrays") from None
            if (
                ts_arr.dtype.kind not in "iu"
                or ts_arr.ndim != 1
                or (ts_arr < 0).any()
                or (ts_arr >= MAX_TS).any()
            ):
                raise _Invalid(Reason.WRONG_TYPE, _TS_RULE.replace("ts must be", "ts must hold"))
            if val_arr.dtype.kind not in "iuf" or val_arr.ndim != 1:
                raise _Invalid(Reason.WRONG_TYPE, "value must be an array of numbers")
            if val_arr.dtype.kind in "iu" and len(val_arr) and np.abs(val_arr).max() > 2**53:
                val_arr = val_arr.astype(np.float64)  # exact enough; guards uint64 wrap-around
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
        raw_of: dict[int, bytes],
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
        for mask, reason, detail in checks:
            hit = mask & ~bad_any
            if not hit.any():
                continue
            for i in np.flatnonzero(hit):
                excerpt = _excerpt_of(raw_of[int(cols.offset[i])], int(cols.index[i]))
                rejects.append(
                    Reject(int(cols.offset[i]), int(cols.index[i]), reason, detail, excerpt)
                )
            bad_any |= hit
        if bad_any.any():
            cols = cols.take(~bad_any)
        rejects.sort(key=lambda r: (r.offset, r.index))
        return DecodeResult(cols, rejects)


def _parse_lenient(raw: bytes) -> Any:
    """The stdlib parser, which also reads NaN, Infinity and 1e999 (orjson rejects them).

    Re-reading such a message lets the vectorized check give it its own reason code, and keeps
    the valid samples of a batch.
    """
    return json.loads(raw)


def _utf8(text: str) -> bool:
    """False for strings with lone surrogates (JSON `\\ud800`), which cannot be re-encoded."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            doc = _parse_lenient(raw)
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
