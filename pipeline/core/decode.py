"""Bytes from the raw topic → validated sample columns plus rejects with reason codes.

Three encodings share one topic (schemas/): a single sample object, a JSON array of samples,
and a columnar series batch (one series, arrays `ts` and `value`). Checks that only need the
columns (finite values, negative delta counters, timestamps against the message time) run
vectorized over the whole consumed batch; the per-sample Python work is limited to pulling
fields out of the parsed JSON and a dictionary lookup of the series identity.

No record can escape as an exception: if decoding a batch raises anyway (a defect of ours), the
batch is decoded again record by record and the record that raises is dead-lettered as
`undecodable`, so a replay does not meet the same crash again and again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import attrgetter
from typing import Any, NamedTuple, cast

import msgspec
import numpy as np

from pipeline.core.columnar import ColumnarPart, append_columnar, read_columnar
from pipeline.core.columns import SampleColumns
from pipeline.core.reasons import Reason
from pipeline.core.rejects import (
    RecordExcerpts,
    columnar_points,
    count_points,
    finish_rejects,
    parse_any,
    point_rejects,
)
from pipeline.core.series import MetricKind, SeriesTable
from pipeline.core.validate import (
    EXCERPT_BYTES,
    MAX_ABS_VALUE,
    VALUE_RULE,
    DecodeLimits,
    Invalid,
    Reject,
    SampleValidator,
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
        try:
            return self._decode_batch(records, offsets, times)
        except Exception:  # isolate the record that raised, below
            return self._decode_isolated(records, offsets, times)

    def _decode_isolated(
        self, records: list[bytes], offsets: list[int], times: list[int]
    ) -> DecodeResult:
        parts: list[SampleColumns] = []
        rejects: list[Reject] = []
        for raw, offset, mtime in zip(records, offsets, times, strict=True):
            try:
                one = self._decode_batch([raw], [offset], [mtime])
            except Exception as exc:  # whatever it is, it is this record's
                detail = f"decoder failed: {type(exc).__name__}: {str(exc)[:200]}"
                samples = count_points(raw) if len(raw) <= self.limits.max_message_bytes else 1
                rejects.append(
                    Reject(offset, -1, Reason.UNDECODABLE, detail, raw[:EXCERPT_BYTES], samples)
                )
                continue
            parts.append(one.columns)
            rejects.extend(one.rejects)
        return DecodeResult(SampleColumns.concat(parts), rejects)

    def _decode_batch(
        self, records: list[bytes], offsets: list[int], times: list[int]
    ) -> DecodeResult:
        raw_of = RecordExcerpts(offsets, records)
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
        except (*WIRE_ERRORS, RecursionError, MemoryError):
            return None

    def _decode_general(
        self,
        values: list[bytes],
        offsets: list[int],
        times: list[int],
        docs: list[Any] | None,
        raw_of: RecordExcerpts,
    ) -> DecodeResult:
        rejects: list[Reject] = []
        col_parts: list[ColumnarPart] = []
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
                    # The stdlib parser (after orjson) also reads NaN, Infinity and 1e999: such
                    # a message gets its own reason code, and a batch keeps its valid samples.
                    doc = parse_any(raw)
                except (ValueError, RecursionError) as exc:
                    detail = str(exc)[:200] or type(exc).__name__
                    rejects.append(
                        Reject(offset, -1, Reason.MALFORMED_JSON, detail, raw[:EXCERPT_BYTES])
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
        cols = self._rows_slow(items, offset_arr, index_arr, rejects)
        time_arr = np.array(item_time, np.int64)
        if len(cols) != len(items):
            time_arr = time_arr[self._kept]
        if col_parts:
            cols, time_arr = append_columnar(cols, time_arr, col_parts)
        return self._vector_checks(cols, time_arr, raw_of, rejects)

    def _rows_fast(
        self,
        items: list[WireSample],
        offsets: np.ndarray,
        index: np.ndarray,
        raw_of: RecordExcerpts,
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
                except Invalid as bad:  # excerpt: finish_rejects, once per record and reason
                    rejects.append(
                        Reject(int(offsets[i]), int(index[i]), bad.reason, bad.detail, b"")
                    )
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
            except Invalid as bad:  # excerpt: finish_rejects, once per record and reason
                rejects.append(Reject(offset, idx, bad.reason, bad.detail, b""))
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
        parts: list[ColumnarPart],
        rejects: list[Reject],
    ) -> None:
        try:
            sid, ts_arr, val_arr, iid = read_columnar(self, doc)
        except Invalid as bad:  # the whole batch: it accounts for all of its points
            points = columnar_points(doc)
            rejects.append(Reject(offset, -1, bad.reason, bad.detail, raw[:EXCERPT_BYTES], points))
            return
        parts.append((sid, ts_arr, val_arr, iid, offset, mtime))

    # -- vectorized checks ------------------------------------------------------------------

    def _vector_checks(
        self,
        cols: SampleColumns,
        times: np.ndarray,
        raw_of: RecordExcerpts,
        rejects: list[Reject],
    ) -> DecodeResult:
        if len(cols) == 0:
            return DecodeResult(cols, finish_rejects(rejects, raw_of))
        kinds = self.series.kinds.view()[cols.series]
        has_time = times >= 0
        finite = np.isfinite(cols.value)
        checks = (
            (~finite, Reason.NON_FINITE_VALUE, "value is NaN or infinite"),
            (
                finite & (np.abs(cols.value) > MAX_ABS_VALUE),
                Reason.VALUE_OUT_OF_RANGE,
                VALUE_RULE,
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
            rejects.extend(point_rejects(cols.offset[hit], cols.index[hit], reason, detail))
            bad_any |= hit
        if bad_any.any():
            cols = cols.take(~bad_any)
        return DecodeResult(cols, finish_rejects(rejects, raw_of))


_TS = attrgetter("ts")
_VALUE = attrgetter("value")
_IDENTITY = attrgetter("service", "region", "name", "type", "temporality", "unit")
_LABELS = attrgetter("labels")
_INSTANCE = attrgetter("instance")
