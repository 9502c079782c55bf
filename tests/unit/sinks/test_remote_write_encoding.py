"""Remote-write 1.0 bodies: snappy block format, protobuf WriteRequest, time order, de-dup."""

from __future__ import annotations

import struct

import cramjam
import pytest

from pipeline.sinks.remote_write import proto
from pipeline.sinks.remote_write.encode import encode, group_by_series, write_request
from pipeline.sinks.remote_write.naming import Labels

A: Labels = (("__name__", "m_sum"), ("service", "a"))
B: Labels = (("__name__", "m_sum"), ("service", "b"))


def test_decoded_back_with_the_protobuf_classes() -> None:
    body, count = encode([(A, 3000, 3.0), (B, 1000, -1.5), (A, 1000, 1.0), (A, 2000, 0.1 + 0.2)])
    assert count == 4
    request = proto.WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
    decoded = {
        tuple((label.name, label.value) for label in ts.labels): [
            (s.timestamp, s.value) for s in ts.samples
        ]
        for ts in request.timeseries
    }
    assert decoded == {
        A: [(1000, 1.0), (2000, 0.1 + 0.2), (3000, 3.0)],  # time order, exact doubles
        B: [(1000, -1.5)],
    }


def test_snappy_is_the_block_format_not_the_framed_one() -> None:
    body, _ = encode([(A, 1, 1.0)])
    assert not body.startswith(b"\xff\x06\x00\x00sNaPpY")  # the framed stream's header
    with pytest.raises(Exception):  # noqa: B017 - any error: the framed decoder must refuse it
        cramjam.snappy.decompress(body)


def test_wire_bytes_match_prometheus_field_numbers() -> None:
    # WriteRequest{timeseries(1): TimeSeries{labels(1): Label{name(1), value(2)},
    # samples(2): Sample{value(1) double, timestamp(2) int64}}}, written out by hand.
    payload = write_request({(("__name__", "x"),): [(1000, 1.5)]})
    label = b"\x0a\x08__name__" + b"\x12\x01x"
    sample = b"\x09" + struct.pack("<d", 1.5) + b"\x10\xe8\x07"  # 1000 as a varint
    series = b"\x0a" + bytes([len(label)]) + label + b"\x12" + bytes([len(sample)]) + sample
    assert payload == b"\x0a" + bytes([len(series)]) + series


def test_exact_repeats_are_sent_once_but_conflicts_are_kept() -> None:
    grouped = group_by_series([(A, 1000, 1.0), (A, 1000, 1.0), (A, 2000, 2.0), (A, 2000, 5.0)])
    assert grouped == {A: [(1000, 1.0), (2000, 2.0), (2000, 5.0)]}
