"""Rejects of points inside batch records: one per (record, reason), with a cheap excerpt.

A columnar batch of 50,000 points that are all too old is one dead letter that says how many
points it accounts for and which (index runs), not 50,000 records. Excerpts come from parsing
each record at most once per decoded batch, so the cost stays linear in the input's size
whatever share of it is rejected.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson

from pipeline.core.reasons import Reason
from pipeline.core.validate import EXCERPT_BYTES, Reject, dump


def parse_any(raw: bytes) -> Any:
    """orjson's reading of `raw`, else the stdlib's (which also reads NaN, Infinity, 1e999).

    Raises ValueError (or RecursionError for the stdlib's recursion on deep nesting).
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def count_points(raw: bytes) -> int:
    """Samples a record offers when it can be read: array elements, columnar points, else 1."""
    try:
        doc = parse_any(raw)
    except Exception:  # unreadable records count as one
        return 1
    if type(doc) is list:
        return max(len(doc), 1)
    if type(doc) is dict:
        return columnar_points(doc)
    return 1


def columnar_points(doc: dict[str, Any]) -> int:
    """Points of a columnar batch: the longer of its ts and value arrays, at least 1."""
    lengths = [len(doc[k]) for k in ("ts", "value") if type(doc.get(k)) is list]
    return max([1, *lengths])


class RecordExcerpts:
    """Record bytes by offset, and excerpts of single points, each record parsed at most once."""

    def __init__(self, offsets: list[int], values: list[bytes]) -> None:
        self._offsets = offsets
        self._values = values
        self._by_offset: dict[int, bytes] | None = None
        self._parsed: dict[int, _Parsed] = {}

    def raw(self, offset: int) -> bytes:
        if self._by_offset is None:
            self._by_offset = dict(zip(self._offsets, self._values, strict=True))
        return self._by_offset[offset]

    def excerpt(self, offset: int, index: int) -> bytes:
        """The offending sample: the record's head for index -1, else that element or point."""
        raw = self.raw(offset)
        if index < 0:
            return raw[:EXCERPT_BYTES]
        parsed = self._parsed.get(offset)
        if parsed is None:
            parsed = self._parsed[offset] = _Parsed(raw)
        return parsed.point(index)[:EXCERPT_BYTES]


class _Parsed:
    """One record, parsed once; `point(i)` serializes only what the excerpt needs."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        try:
            self.doc: Any = parse_any(raw)
        except Exception:  # too deep for the stdlib, or not JSON at all
            self.doc = None
        self._head: bytes | None = None

    def point(self, index: int) -> bytes:
        doc = self.doc
        if type(doc) is list and index < len(doc):
            return dump(doc[index])
        if type(doc) is dict and type(doc.get("ts")) is list and type(doc.get("value")) is list:
            ts, values = doc["ts"], doc["value"]
            if index < len(ts) and index < len(values):
                head = self._identity_head()
                return head + b'"ts":' + dump(ts[index]) + b',"value":' + dump(values[index]) + b"}"
        return self.raw[:EXCERPT_BYTES]

    def _identity_head(self) -> bytes:
        """`{"service":…,` — the batch's fields other than ts and value, dumped once."""
        if self._head is None:
            identity = {k: v for k, v in self.doc.items() if k not in ("ts", "value")}
            text = dump(identity)
            if text == b"{}":
                self._head = b"{"
            elif len(text) > EXCERPT_BYTES or not text.endswith(b"}"):
                self._head = text[:EXCERPT_BYTES]  # cut (or not JSON) anyway: no point to add
            else:
                self._head = text[:-1] + b","
        return self._head


def point_rejects(
    offsets: np.ndarray, index: np.ndarray, reason: Reason, detail: str
) -> list[Reject]:
    """One reject per record for rejected points given in partition order (offset, index).

    Single-sample records (index -1) each get their own; runs are built with numpy, so 50,000
    rejected points of a record cost a few array operations.
    """
    out: list[Reject] = []
    if len(offsets) == 0:
        return out
    single = index < 0
    for offset in offsets[single].tolist():
        out.append(Reject(offset, -1, reason, detail, b""))
    offsets, index = offsets[~single], index[~single].astype(np.int64)
    if len(offsets) == 0:
        return out
    starts = np.flatnonzero(np.r_[True, offsets[1:] != offsets[:-1]])
    ends = np.r_[starts[1:], len(offsets)]
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        out.append(
            Reject(
                int(offsets[start]),
                int(index[start]),
                reason,
                detail,
                b"",
                end - start,
                _runs(index[start:end]),
            )
        )
    return out


def _runs(sorted_index: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (first, last) runs of consecutive values of a sorted index array."""
    breaks = np.flatnonzero(np.diff(sorted_index) != 1)
    firsts = np.r_[sorted_index[:1], sorted_index[breaks + 1]]
    lasts = np.r_[sorted_index[breaks], sorted_index[-1:]]
    return list(zip(firsts.tolist(), lasts.tolist(), strict=True))


def finish_rejects(rejects: list[Reject], records: RecordExcerpts) -> list[Reject]:
    """Merge point rejects per (record, reason), give each its excerpt, sort by position.

    The validator rejects points one by one and the vectorized checks per record; a record's
    points rejected for one reason end up in one reject whichever check found them.
    """
    merged: list[Reject] = []
    groups: dict[tuple[int, Reason], Reject] = {}
    for r in sorted(rejects, key=lambda r: (r.offset, r.index)):
        if r.index < 0:
            if not r.excerpt:
                r.excerpt = records.excerpt(r.offset, -1)
            merged.append(r)
            continue
        runs = r.ranges or [(r.index, r.index)]
        head = groups.get((r.offset, r.reason))
        if head is None:
            r.ranges = list(runs)
            groups[(r.offset, r.reason)] = r
            merged.append(r)
            continue
        head.samples += r.samples
        head.ranges.extend(runs)
    for head in groups.values():
        head.ranges = _coalesce(head.ranges)
        head.index = head.ranges[0][0]
        head.excerpt = records.excerpt(head.offset, head.index)
        if head.samples > 1:
            head.detail = f"{head.detail} (first of {head.samples} points)"
    merged.sort(key=lambda r: (r.offset, r.index))
    return merged


def _coalesce(runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    runs.sort()
    out = [runs[0]]
    for first, last in runs[1:]:
        if first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out
