"""Encoded rollups → one remote-write 1.0 request body: WriteRequest bytes, snappy block format."""

from __future__ import annotations

from collections.abc import Sequence

import cramjam

from pipeline.sinks.remote_write.rollup_encoder import EncodedRollup

#: The headers remote-write 1.0 requires on every request.
PROTOCOL_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def unique_rollups(rollups: Sequence[EncodedRollup]) -> list[EncodedRollup]:
    """The rollups in order, exact repeats (a rollup delivered twice: same series, window and
    values) removed. Two different values for one window are both kept: the store decides."""
    first: dict[bytes, EncodedRollup] = {}
    for r in rollups:
        first.setdefault(r.payload, r)
    return list(first.values())


def snappy_block(payload: bytes) -> bytes:
    """Snappy *block* format (not the framed/stream format), as remote-write requires."""
    return bytes(cramjam.snappy.compress_raw(payload))


def request_body(rollups: Sequence[EncodedRollup], metadata: bytes = b"") -> bytes:
    """The compressed WriteRequest: the rollups' TimeSeries entries (in the given order, so each
    series stays in time order) followed by `metadata` entries."""
    return snappy_block(b"".join([*(r.payload for r in rollups), metadata]))
