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


# A forwarded record carries at most this many samples, so that even samples with large label
# maps stay far below any broker's message size limit (a source record can be 1 MiB).
SAMPLES_PER_FORWARD = 500


def parse_forward_header(headers: Any) -> tuple[int, tuple[int, int]] | None:
    """(source partition, (source offset, part)) of a forwarded record, else None.

    headers: what confluent-kafka's Message.headers() returns (a list of (name, bytes) or None).
    A header that does not parse is treated as absent: the record is then ordinary input.
    """
    if not headers:
        return None
    for name, value in headers:
        if name == FORWARD_HEADER and isinstance(value, bytes):
            try:
                source_partition, source_offset, part = (int(x) for x in value.split(b":"))
            except ValueError:
                return None
            return source_partition, (source_offset, part)
    return None


Position = tuple[int, int]  # (source offset, part)


class ForwardDedup:
    """Last source position accepted per source partition, with a replay-safe base."""

    def __init__(self, base: dict[str, list[int]] | None = None) -> None:
        self._base: dict[int, Position] = {
            int(k): (int(v[0]), int(v[1])) for k, v in (base or {}).items()
        }
        self._seen = dict(self._base)
        self._log: list[tuple[int, int, Position]] = []  # (own offset, source partition, pos)

    def accept(self, own_offset: int, source_partition: int, position: Position) -> bool:
        if position <= self._seen.get(source_partition, (-1, -1)):
            return False
        self._seen[source_partition] = position
        self._log.append((own_offset, source_partition, position))
        return True

    def fold(self, before_offset: int) -> dict[str, list[int]]:
        """Move the base to just before `before_offset`; returns it for the checkpoint."""
        keep = 0
        for own_offset, source_partition, position in self._log:
            if own_offset >= before_offset:
                break
            self._base[source_partition] = position
            keep += 1
        del self._log[:keep]
        return {str(k): list(v) for k, v in self._base.items()}


def forward_messages(
    cols: SampleColumns,
    owners: np.ndarray,
    series: SeriesTable,
    source_partition: int,
    timestamps: dict[int, int],
) -> list[dict[str, Any]]:
    """Records per (source message, owner partition): JSON-array batches of its samples, in
    parts of at most SAMPLES_PER_FORWARD, numbered so the owner can drop re-forwarded ones."""
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
            "value": orjson.dumps(samples[start : start + SAMPLES_PER_FORWARD]),
            "headers": [
                (FORWARD_HEADER, f"{source_partition}:{offset}:{part}".encode()),
            ],
            "timestamp": timestamps.get(offset, -1),
        }
        for (offset, owner), samples in groups.items()
        for part, start in enumerate(range(0, len(samples), SAMPLES_PER_FORWARD))
    ]
