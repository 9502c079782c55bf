"""Samples that arrived on a partition that does not own their series.

The owner of a series is the partition Kafka's default (murmur2) partitioner picks for its key
"<service>|<region>". A sample produced with another key, or by a client with another
partitioner, is re-produced to its owner with a header naming where it came from. The owner drops
a forwarded record it has seen before (a replaying source forwards again), which it can tell
because one source partition's forwards reach it in source-offset order.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import orjson

from pipeline.core.columns import SampleColumns
from pipeline.core.series import SeriesTable

FORWARD_HEADER = "mp-fwd"


def parse_forward_header(headers: Any) -> tuple[int, int] | None:
    """(source partition, source offset) of a forwarded record, else None.

    headers: what confluent-kafka's Message.headers() returns (a list of (name, bytes) or None).
    """
    if not headers:
        return None
    for name, value in headers:
        if name == FORWARD_HEADER and isinstance(value, bytes):
            source_partition, source_offset = value.decode().split(":")
            return int(source_partition), int(source_offset)
    return None


class ForwardDedup:
    """Last source offset accepted per source partition, with a replay-safe base."""

    def __init__(self, base: dict[str, int] | None = None) -> None:
        self._base: dict[int, int] = {int(k): v for k, v in (base or {}).items()}
        self._seen = dict(self._base)
        self._log: list[tuple[int, int, int]] = []  # (own offset, source partition, source offset)

    def accept(self, own_offset: int, source_partition: int, source_offset: int) -> bool:
        if source_offset <= self._seen.get(source_partition, -1):
            return False
        self._seen[source_partition] = source_offset
        self._log.append((own_offset, source_partition, source_offset))
        return True

    def fold(self, before_offset: int) -> dict[str, int]:
        """Move the base to just before `before_offset`; returns it for the checkpoint."""
        keep = 0
        for own_offset, source_partition, source_offset in self._log:
            if own_offset >= before_offset:
                break
            self._base[source_partition] = source_offset
            keep += 1
        del self._log[:keep]
        return {str(k): v for k, v in self._base.items()}


def forward_messages(
    cols: SampleColumns,
    owners: np.ndarray,
    series: SeriesTable,
    source_partition: int,
    timestamps: dict[int, int],
) -> list[dict[str, Any]]:
    """One record per (source message, owner partition): a JSON-array batch of its samples."""
    groups: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    routing: dict[tuple[int, int], str] = {}
    for sid, ts, value, iid, offset, owner in zip(
        cols.series.tolist(),
        cols.ts.tolist(),
        cols.value.tolist(),
        cols.instance.tolist(),
        cols.offset.tolist(),
        owners.tolist(),
        strict=True,
    ):
        sample = dict(series.json_of(sid))
        if not sample["labels"]:
            del sample["labels"]
        sample["ts"] = ts
        sample["value"] = value
        if iid >= 0:
            sample["instance"] = series.instance_names[iid]
        groups[(offset, owner)].append(sample)
        routing[(offset, owner)] = series.identities[sid].routing_key
    return [
        {
            "partition": owner,
            "key": routing[(offset, owner)].encode(),
            "value": orjson.dumps(samples),
            "headers": [(FORWARD_HEADER, f"{source_partition}:{offset}".encode())],
            "timestamp": timestamps.get(offset, -1),
        }
        for (offset, owner), samples in groups.items()
    ]
