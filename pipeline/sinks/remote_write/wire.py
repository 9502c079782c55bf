"""The protobuf wire format of remote-write TimeSeries, written by hand from cached label bytes.

A WriteRequest is a concatenation of `timeseries` entries (field 1) and `metadata` entries
(field 3); protobuf parsers accept repeated fields in any order and concatenated messages, so a
request body is simply `b"".join(entries)`. One rollup output is one TimeSeries with one sample:

    0x0a <len> [ 0x0a <len> Label{0x0a <len> name, 0x12 <len> value} ... ]   labels (field 1)
               0x12 <len> [ 0x09 <8-byte little-endian double> 0x10 <varint timestamp> ]

Everything before the double depends only on the label set and the timestamp's varint length
(6 bytes for every epoch-ms time between 2004 and 2039), so it is built once per series
(`series_head`); batch.py writes each sample's double and timestamp tail into a batch of such
templates with numpy. The byte layout is pinned by a unit test against the protobuf library's
own encoding.
"""

from __future__ import annotations

import struct
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from pipeline.sinks.remote_write.naming import Labels

pack_double = struct.Struct("<d").pack


_SMALL = [bytes([n]) for n in range(128)]


def varint(value: int) -> bytes:
    """Base-128 varint of a non-negative int (a negative int64 takes ten bytes)."""
    if 0 <= value < 128:
        return _SMALL[value]
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + varint(len(payload)) + payload


@lru_cache(maxsize=1 << 16)
def label_field(name: str, value: str) -> bytes:
    """One encoded `labels` field of a TimeSeries. Cached: services, regions, metric names and
    label values repeat across many series, and a cold start builds thousands of label sets."""
    return _field(0x0A, _field(0x0A, name.encode()) + _field(0x12, value.encode()))


def label_bytes(labels: Labels) -> bytes:
    """The encoded `labels` fields of a TimeSeries (labels must already be sorted by name)."""
    return b"".join([label_field(name, value) for name, value in labels])


def series_head(labels: bytes, timestamp_varint_len: int) -> bytes:
    """A TimeSeries entry up to and including the sample's double tag: append the 8 bytes of
    the value, then `timestamp_tail(ts)`."""
    sample_len = 1 + 8 + 1 + timestamp_varint_len
    body_len = len(labels) + 2 + sample_len
    return b"\x0a" + varint(body_len) + labels + b"\x12" + bytes([sample_len]) + b"\x09"


def timestamp_tail(timestamp_ms: int) -> bytes:
    """The sample's timestamp field (tag 2, varint)."""
    return b"\x10" + varint(timestamp_ms)


#: The timestamp tail of every epoch-ms time in [MIN_TS, MAX_TS) — 2004-09 to 2039-09 — is
#: the tag and a 6-byte varint; the batched path writes those, others take the struct path.
TAIL_LEN = 7
MIN_TS = 1 << 35
MAX_TS = 1 << 42
_SHIFTS = np.arange(6, dtype=np.int64) * 7
_CONTINUE = np.array([0x80] * 5 + [0], dtype=np.int64)


def timestamp_tails(stamps: NDArray[np.int64]) -> NDArray[np.uint8]:
    """`timestamp_tail` of each of `stamps` (all in [MIN_TS, MAX_TS)), one row each."""
    groups = ((stamps[:, None] >> _SHIFTS) & 0x7F) | _CONTINUE
    tails = np.empty((len(stamps), TAIL_LEN), dtype=np.uint8)
    tails[:, 0] = 0x10
    tails[:, 1:] = groups
    return tails
