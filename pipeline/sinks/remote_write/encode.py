"""TimeSeries entries → one remote-write 1.0 request body: WriteRequest bytes, snappy block."""

from __future__ import annotations

import cramjam

#: The headers remote-write 1.0 requires on every request.
PROTOCOL_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def snappy_block(payload: bytes | memoryview) -> bytes:
    """Snappy *block* format (not the framed/stream format), as remote-write requires."""
    return bytes(cramjam.snappy.compress_raw(payload))


def request_body(timeseries: bytes | memoryview, metadata: bytes = b"") -> bytes:
    """The compressed WriteRequest: the TimeSeries entries (field 1, in the given order, so each
    series stays in time order) followed by `metadata` entries (field 3)."""
    return snappy_block(b"".join([timeseries, metadata]) if metadata else timeseries)
