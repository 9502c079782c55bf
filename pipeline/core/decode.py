"""Bytes from the raw topic → validated sample columns plus rejects with reason codes.

Three encodings share one topic (schemas/): a single sample object, a JSON array of samples,
and a columnar series batch (one series, arrays `ts` and `value`). Checks that only need the
columns (finite values, negative delta counters, timestamps against the message time) run
vectorized over the whole consumed batch; the per-sample Python work is limited to pulling
fields out of the parsed JSON and a dictionary lookup of the series identity.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import attrgetter
from typing import Any, NamedTuple, cast

import msgspec
import numpy as np
import orjson

from pipeline.core.columns import SampleColumns
from pipeline.core.reasons import Reason
from pipeline.core.series import MetricKind, SeriesTable
from pipeline.core.validate import (
    EXCERPT_BYTES,
    INT_TYPES,
    MAX_ABS_VALUE,
    MAX_TS,
    NUMBER_TYPES,
    REQUIRED_FIELDS,
    TS_RULE,
    DecodeLimits,
    Invalid,
    Reject,
    SampleValidator,
    dump,
)
from pipeline.core.wire import WIRE_DECODER, WIRE_ERRORS, WireSample

__all__ = ["DecodeLimits", "DecodeResult", "Decoder", "RawMessage", "Reject"]


class RawMessage(NamedTuple):
    """One record of the raw topic. timestamp_ms is None when the record carries no time."""

    value: bytes | None
    offset: int
    timestamp_ms: int | None


@dataclass(frozen=True, slots=True)
class DecodeResult:
    columns: SampleColumns
    rejects: list[Reject] = field(default_factory=list)


class Decoder(SampleValidator):
    """Decodes consumed records; stateless apart from the interning tables it shares."""

    def __init__(self, series: SeriesTable, limits: DecodeLimits | None = None) -> None:
        super().__init__(series, limits)
        self._fast = series.lookup_cache  # the table drops entries of series it forgets
        self._kept = np.empty(0, np.int64)  # rows of the last batch that became samples

    def decode(self, messages: Sequence[RawMessage]) -> DecodeResult:
        return self.decode_lists(
            [m.value or b"" for m in messages],
            [m.offset for m in messages],
            [-1 if m.timestamp_ms is None else m.timestamp_ms for m in messages],
        )

    def decode_lists(
        self, values: list[bytes | None], offsets: list[int], times: list[int]
    ) -> DecodeResult:
        """Decode one partition's records given as parallel lists (times: -1 when absent).

        Batches whose records all parse as typed samples (all single samples, or all JSON arrays
        of them) take the vectorized path; anything else goes record by record.
        """
        # Tombstones (null values) are malformed input, not a crash.
        records = [v or b"" for v in values] if None in values else cast(list[bytes], values)
        raw_of = _RawIndex(offsets, records)
        docs = self._parse_wire(records)
        if docs:
            shape = set(map(type, docs))
            items: list[WireSample] | None = None
            if shape == {WireSample}:
                items = docs
                item_offsets = np.array(offsets, np.int64)
                index = np.full(len(docs), -1, np.int32)
                item_times = np.array(times, np.int64)
            elif shape == {list}:
                lengths = np.fromiter(map(len, docs), np.int64, len(docs))
                if lengths.min() > 0:
                    items = list(chain.from_iterable(docs))
                    item_offsets = np.repeat(np.array(offsets, np.int64), lengths)
                    firsts = np.repeat(np.cumsum(lengths) - lengths, lengths)
                    index = (np.arange(len(items)) - firsts).astype(np.int32)
                    item_times = np.repeat(np.array(times, np.int64), lengths)
            if items is not None:
                rows, rejects = self._rows_fast(items, item_offsets, index, raw_of)
                return self._vector_checks(rows, item_times[self._kept], raw_of, rejects)
        return self._decode_general(records, offsets, times, None, raw_of)

    def _parse_wire(self, values: list[bytes]) -> list[Any] | None:
        """Every record as WireSample(s), or None if any is oversize or of another shape."""
        if not values or max(map(len, values)) > self.limits.max_message_bytes:
            return None
        try:
            return list(map(WIRE_DECODER.decode, values))
        except (*WIRE_ERRORS, RecursionError):
            return None

    def _decode_general(
        self,
        values: list[bytes],
        offsets: list[int],
        times: list[int],
        docs: list[Any] | None,
        raw_of: _RawIndex,
    ) -> DecodeResult:
        rejects: list[Reject] = []
        col_parts: list[tuple[int, np.ndarray, np.ndarray, int, int, int]] = []
        items: list[Any] = []  # sample objects of single and array messages, in order
        item_offset: list[int] = []
        item_index: list[int] = []
        item_time: list[int] = []

        limit = self.limits.max_message_bytes
        for position, (raw, offset, mtime) in enumerate(zip(values, offsets, times, strict=True)):
            if len(raw) > limit:
                rejects.append(
                    Reject(
                        offset,
                        -1,
                        Reason.OVERSIZE_MESSAGE,
                        f"{len(raw)} bytes > limit {limit}",
                        raw[:EXCERPT_BYTES],
                    )
                )
                continue
            if docs is not None:
                doc = docs[position]
            else:
                try:
                    doc = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    try:
                        doc = _parse_lenient(raw)
                    except (ValueError, RecursionError) as exc:
                        rejects.append(
                            Reject(offset, -1, Reason.MALFORMED_JSON, str(exc), raw[:EXCERPT_BYTES])
                        )
                        continue
            kind = type(doc)
            if kind is dict:
                if type(doc.get("ts")) is list:
                    self._columnar(doc, offset, mtime, raw, col_parts, rejects)
                    continue
                items.append(doc)
                item_offset.append(offset)
                item_index.append(-1)
                item_time.append(mtime)
            elif kind is list and doc:
                items.extend(doc)
                item_offset.extend([offset] * len(doc))
                item_index.extend(range(len(doc)))
                item_time.extend([mtime] * len(doc))
            elif kind is list:
                rejects.append(Reject(offset, -1, Reason.EMPTY_BATCH, "empty array", raw[:64]))
            else:
                rejects.append(
                    Reject(
                        offset,
                        -1,
                        Reason.NOT_AN_OBJECT,
                        f"top-level JSON {type(doc).__name__}",
                        raw[:EXCERPT_BYTES],
                    )
                )

        offset_arr = np.array(item_offset, np.int64)
        index_arr = np.array(item_index, np.int32)
        cols = self._rows_slow(items, offset_arr, index_arr, raw_of, rejects)
        time_arr = np.array(item_time, np.int64)
        if len(cols) != len(items):
            time_arr = time_arr[self._kept]
        if col_parts:
            cols, time_arr = self._append_columnar(cols, time_arr, col_parts)
        return self._vector_checks(cols, time_arr, raw_of, rejects)

    def _rows_fast(
        self, items: list[WireSample], offsets: np.ndarray, index: np.ndarray, raw_of: _RawIndex
    ) -> tuple[SampleColumns, list[Reject]]:
        """Samples msgspec has type-checked, as columns, plus rejects for the invalid ones.

        Known series and instances cost a few C-level maps and one dictionary lookup per sample;
        only the samples that introduce a new series or instance (or lack a required instance)
        go through the per-sample validator, so a burst of new series does not slow the rest.
        """
        self._kept = np.arange(len(items))
        if not items:
            return SampleColumns.empty(), []
        labels: Iterable[Any] = list(map(_LABELS, items))
        if any(labels):
            labels = [tuple(sorted(lab.items())) if lab else None for lab in labels]
        else:  # all None or {}: both mean no labels
            labels = repeat(None, len(items))
        # Same layout as the key SampleValidator.sample caches; C-level map/zip throughout.
        keys = zip(map(_IDENTITY, items), labels)  # noqa: B905 - repeat() has no len
        series_ids: list[int | None] = list(map(self._fast.get, keys))
        known = self.series.instances
        instance_ids = [-1 if n is None else known.get(n, -2) for n in map(_INSTANCE, items)]
        unknown: list[int] = []
        if None in series_ids or -2 in instance_ids:  # C-level scans; rare after warm-up
            unknown = [
                i
                for i, (sid, iid) in enumerate(zip(series_ids, instance_ids, strict=True))
                if sid is None or iid == -2
            ]
            sid_arr = np.array([-1 if sid is None else sid for sid in series_ids], np.int32)
        else:
            sid_arr = np.array(series_ids, np.int32)
        inst_arr = np.array(instance_ids, np.int32)
        without = (inst_arr == -1) & (sid_arr >= 0)
        if without.any():  # a known cumulative counter must name its instance
            missing = np.zeros(len(items), dtype=bool)
            kinds = self.series.kinds.view()[sid_arr[without]]
            missing[without] = kinds == MetricKind.COUNTER_CUMULATIVE
            if missing.any():
                unknown = sorted({*unknown, *np.flatnonzero(missing).tolist()})
        rejects: list[Reject] = []
        if unknown:
            dropped: list[int] = []
            for i in unknown:
                sample = msgspec.structs.asdict(items[i])
                try:
                    series_ids[i], _, _, instance_ids[i] = self.sample(sample)
                except Invalid as bad:
                    offset, idx = int(offsets[i]), int(index[i])
                    excerpt = _excerpt_of(raw_of[offset], idx)
                    rejects.append(Reject(offset, idx, bad.reason, bad.detail, excerpt))
                    dropped.append(i)
            if dropped:
                keep = np.ones(len(items), dtype=bool)
                keep[dropped] = False
                self._kept = np.flatnonzero(keep)
                items = [items[i] for i in self._kept.tolist()]
                series_ids = [series_ids[i] for i in self._kept.tolist()]
                instance_ids = [instance_ids[i] for i in self._kept.tolist()]
                offsets, index = offsets[self._kept], index[self._kept]
        ts = np.fromiter(map(_TS, items), np.int64, len(items))
        values = np.fromiter(map(_VALUE, items), np.float64, len(items))
        if unknown:  # ids were filled in (and rows maybe dropped) above
            sid_arr = np.array(series_ids, np.int32)
            inst_arr = np.array(instance_ids, np.int32)
        return SampleColumns(sid_arr, ts, values, inst_arr, offsets, index), rejects

    def _rows_slow(
        self,
        items: list[Any],
        offsets: np.ndarray,
        index: np.ndarray,
        raw_of: _RawIndex,
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
                sid, t, v, iid = self.sample(item)
            except Invalid as bad:
                excerpt = raw_of[offset] if idx < 0 else dump(item)
                rejects.append(Reject(offset, idx, bad.reason, bad.detail, excerpt[:EXCERPT_BYTES]))
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

    # -- columnar batches -------------------------------------------------------------------

    def _columnar(
        self,
        doc: dict[str, Any],
        offset: int,
        mtime: int,
        raw: bytes,
        parts: list[tuple[int, np.ndarray, np.ndarray, int, int, int]],
        rejects: list[Reject],
    ) -> None:
        excerpt = raw[:EXCERPT_BYTES]
        try:
            missing = [f for f in REQUIRED_FIELDS if f not in doc]
            if missing:
                raise Invalid(Reason.MISSING_FIELD, f"missing {', '.join(missing)}")
            ts_list, val_list = doc["ts"], doc["value"]
            if not isinstance(val_list, list):
                raise Invalid(Reason.WRONG_TYPE, "columnar batch: value must be an array")
            if len(ts_list) != len(val_list):
                raise Invalid(
                    Reason.LENGTH_MISMATCH, f"{len(ts_list)} timestamps, {len(val_list)} values"
                )
            if not ts_list:
                raise Invalid(Reason.EMPTY_BATCH, "columnar batch without points")
            if not set(map(type, ts_list)) <= INT_TYPES:
                raise Invalid(Reason.WRONG_TYPE, TS_RULE.replace("ts must be", "ts must hold"))
            if not set(map(type, val_list)) <= NUMBER_TYPES:
                raise Invalid(Reason.WRONG_TYPE, "value must be an array of numbers")
            try:
                ts_arr = np.array(ts_list, np.int64)
            except OverflowError:
                raise Invalid(Reason.WRONG_TYPE, TS_RULE) from None
            if (ts_arr < 0).any() or (ts_arr >= MAX_TS).any():
                raise Invalid(Reason.WRONG_TYPE, TS_RULE.replace("ts must be", "ts must hold"))
            try:
                val_arr = np.array(val_list, np.float64)
            except OverflowError:  # an integer beyond the float range
                raise Invalid(Reason.NON_FINITE_VALUE, "value beyond the float range") from None
            identity = self.identity(
                doc["service"],
                doc["region"],
                doc["name"],
                doc["type"],
                doc.get("temporality"),
                doc.get("unit"),
                doc.get("labels"),
            )
            inst = doc.get("instance")
            iid = -1 if inst is None else self.instance(inst)
            if inst is None and identity.kind is MetricKind.COUNTER_CUMULATIVE:
                raise Invalid(Reason.MISSING_INSTANCE, "cumulative counter without instance")
        except Invalid as bad:
            rejects.append(Reject(offset, -1, bad.reason, bad.detail, excerpt))
            return
        sid = self.series.intern(identity)
        parts.append((sid, ts_arr.astype(np.int64), val_arr.astype(np.float64), iid, offset, mtime))

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
        raw_of: _RawIndex,
        rejects: list[Reject],
    ) -> DecodeResult:
        if len(cols) == 0:
            return DecodeResult(cols, rejects)
        kinds = self.series.kinds.view()[cols.series]
        has_time = times >= 0
        checks = (
            (
                ~(np.abs(cols.value) <= MAX_ABS_VALUE),  # also catches NaN
                Reason.NON_FINITE_VALUE,
                f"value is NaN, infinite or beyond ±{MAX_ABS_VALUE:g}",
            ),
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


_TS = attrgetter("ts")
_VALUE = attrgetter("value")
_IDENTITY = attrgetter("service", "region", "name", "type", "temporality", "unit")
_LABELS = attrgetter("labels")
_INSTANCE = attrgetter("instance")


class _RawIndex:
    """Record bytes by offset, indexed only when an excerpt is actually needed."""

    def __init__(self, offsets: list[int], values: list[bytes]) -> None:
        self._offsets = offsets
        self._values = values
        self._by_offset: dict[int, bytes] | None = None

    def __getitem__(self, offset: int) -> bytes:
        if self._by_offset is None:
            self._by_offset = dict(zip(self._offsets, self._values, strict=True))
        return self._by_offset[offset]


def _excerpt_of(raw: bytes, index: int) -> bytes:
    """The offending sample of a message: the whole message, or one element of a batch."""
    if index < 0:
        return raw[:EXCERPT_BYTES]
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            doc = _parse_lenient(raw)
        except (ValueError, RecursionError):
            return raw[:EXCERPT_BYTES]
    if isinstance(doc, list) and index < len(doc):
        return dump(doc[index])[:EXCERPT_BYTES]
    if isinstance(doc, dict) and isinstance(doc.get("ts"), list):
        point = {k: v for k, v in doc.items() if k not in ("ts", "value")}
        point["ts"] = doc["ts"][index]
        point["value"] = doc["value"][index]
        return dump(point)[:EXCERPT_BYTES]
    return raw[:EXCERPT_BYTES]
