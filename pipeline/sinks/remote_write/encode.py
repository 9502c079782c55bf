"""Samples → remote-write 1.0 request body: protobuf WriteRequest, snappy block format."""

from __future__ import annotations

from collections.abc import Iterable

import cramjam

from pipeline.sinks.remote_write import proto
from pipeline.sinks.remote_write.naming import Labels

#: The headers remote-write 1.0 requires on every request.
PROTOCOL_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def group_by_series(
    samples: Iterable[tuple[Labels, int, float]],
) -> dict[Labels, list[tuple[int, float]]]:
    """Samples per series, each series in time order with exact repeats (a rollup delivered
    twice) removed. Two different values at one timestamp are both kept: the store decides."""
    grouped: dict[Labels, list[tuple[int, float]]] = {}
    for labels, ts, value in samples:
        grouped.setdefault(labels, []).append((ts, value))
    for labels, points in grouped.items():
        points.sort()
        grouped[labels] = [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]
    return grouped


def write_request(series: dict[Labels, list[tuple[int, float]]]) -> bytes:
    """The serialized WriteRequest (labels must already be sorted by name, see naming.py)."""
    request = proto.WriteRequest()
    add_series = request.timeseries.add
    for labels, points in series.items():
        ts = add_series()
        add_label = ts.labels.add
        for name, label_value in labels:
            add_label(name=name, value=label_value)
        add_sample = ts.samples.add
        for timestamp, value in points:
            add_sample(value=value, timestamp=timestamp)
    return bytes(request.SerializeToString())


def snappy_block(payload: bytes) -> bytes:
    """Snappy *block* format (not the framed/stream format), as remote-write requires."""
    return bytes(cramjam.snappy.compress_raw(payload))


def encode(samples: Iterable[tuple[Labels, int, float]]) -> tuple[bytes, int]:
    """(compressed request body, number of samples in it)."""
    series = group_by_series(samples)
    return snappy_block(write_request(series)), sum(len(p) for p in series.values())
