"""The Decoder: one partition's consumed records → validated sample columns plus rejects.

It picks the path for a batch and puts the pieces together: records that all parse as typed
samples (all single samples, or all JSON arrays of them) take the vectorized path (rows.py's
`typed_rows`); any other batch goes record by record (`object_rows`, columnar.py), so each
problem gets its reason code. Either way the column checks (checks.py) run once over the
whole batch, and rejects.py merges the rejects and gives them excerpts.

No record can escape as an exception: if decoding a batch raises anyway (a defect of ours), the
batch is decoded again record by record and the record that raises is dead-lettered as
`undecodable`, so a replay does not meet the same crash again and again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, NamedTuple, cast

import numpy as np

from pipeline.core.columns import SampleColumns
from pipeline.core.decode.checks import check_columns
from pipeline.core.decode.columnar import ColumnarPart, append_columnar, take_columnar
from pipeline.core.decode.labels import LabelKeys
from pipeline.core.decode.rejects import RecordExcerpts, count_points, finish_rejects, parse_any
from pipeline.core.decode.rows import object_rows, typed_rows
from pipeline.core.decode.wire import WIRE_DECODER, WIRE_ERRORS, WireSample
from pipeline.core.reasons import Reason
from pipeline.core.series import SeriesTable
from pipeline.core.validate import EXCERPT_BYTES, DecodeLimits, Reject, SampleValidator


class RawMessage(NamedTuple):
    """One record of the raw topic. timestamp_ms is None when the record carries no time."""

    value: bytes | None
    offset: int
    timestamp_ms: int | None


@dataclass(frozen=True, slots=True)
class DecodeResult:
    columns: SampleColumns
    rejects: list[Reject] = field(default_factory=list)


class Decoder:
    """Decodes consumed records; stateless apart from the interning tables it shares.

    The validator it holds judges the samples the vectorized path cannot vouch for; it looks
    series up in the table's own cache, which forgets the entries of series the table forgets.
    """

    def __init__(self, series: SeriesTable, limits: DecodeLimits | None = None) -> None:
        self.validator = SampleValidator(series, limits, series.lookup_cache)
        self.series = series
        self.limits = self.validator.limits
        self.label_keys = LabelKeys()

    def decode(self, messages: Sequence[RawMessage]) -> DecodeResult:
        return self.decode_lists(
            [m.value or b"" for m in messages],
            [m.offset for m in messages],
            [-1 if m.timestamp_ms is None else m.timestamp_ms for m in messages],
        )

    def decode_lists(
        self, values: list[bytes | None], offsets: list[int], times: list[int]
    ) -> DecodeResult:
        """Decode one partition's records given as parallel lists (times: -1 when absent)."""
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
                typed = typed_rows(self.validator, self.label_keys, items, item_offsets, index)
                if typed is not None:
                    rows, rejects, kept = typed
                    return self._finish(rows, item_times[kept], raw_of, rejects)
        return self._decode_general(records, offsets, times, raw_of)

    def _parse_wire(self, values: list[bytes]) -> list[Any] | None:
        """Every record as WireSample(s), or None if any is oversize or of another shape."""
        if not values or max(map(len, values)) > self.limits.max_message_bytes:
            return None
        try:
            return list(map(WIRE_DECODER.decode, values))
        except (*WIRE_ERRORS, RecursionError, MemoryError):
            return None

    def _decode_general(
        self, values: list[bytes], offsets: list[int], times: list[int], raw_of: RecordExcerpts
    ) -> DecodeResult:
        rejects: list[Reject] = []
        col_parts: list[ColumnarPart] = []
        items: list[Any] = []  # sample objects of single and array messages, in order
        item_offset: list[int] = []
        item_index: list[int] = []
        item_time: list[int] = []

        limit = self.limits.max_message_bytes
        for raw, offset, mtime in zip(values, offsets, times, strict=True):
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
                    take_columnar(self.validator, doc, offset, mtime, raw, col_parts, rejects)
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
        cols, kept = object_rows(self.validator, items, offset_arr, index_arr, rejects)
        time_arr = np.array(item_time, np.int64)
        if len(cols) != len(items):
            time_arr = time_arr[kept]
        if col_parts:
            cols, time_arr = append_columnar(cols, time_arr, col_parts)
        return self._finish(cols, time_arr, raw_of, rejects)

    def _finish(
        self,
        cols: SampleColumns,
        times: np.ndarray,
        raw_of: RecordExcerpts,
        rejects: list[Reject],
    ) -> DecodeResult:
        """Run the column checks, then merge the rejects and give them excerpts."""
        cols = check_columns(self.series, self.limits, cols, times, rejects)
        return DecodeResult(cols, finish_rejects(rejects, raw_of))
