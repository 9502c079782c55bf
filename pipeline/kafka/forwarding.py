"""The repartition topic: samples on their way to the partition that owns their series, and
the partitions' watermarks.

The owner of a series is the partition Kafka's default (murmur2) partitioner picks for its key
"<service>|<region>". A sample that another partitioner (or another key) put elsewhere is judged
on time or late there, against that partition's clock, and if on time re-produced to the
owner's partition of the repartition topic, with a header naming where it came from. Each
partition also sends every other partition its watermark (see core/upstream.py). The owner drops
a forwarded record it has seen before (a replaying source forwards again), which it can tell
because one source partition's forwards reach it in source-offset order.

Only workers write the repartition topic; records without the headers below are dead-lettered.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import orjson

from pipeline.core.columns import SampleColumns
from pipeline.core.reasons import Reason
from pipeline.core.series import SeriesTable
from pipeline.core.validate import Reject

FORWARD_HEADER = "mp-fwd"
WATERMARK_HEADER = "mp-wm"
EXCERPT_BYTES = 512


# A forwarded record carries at most this many samples, so that even samples with large label
# maps stay far below any broker's message size limit (a source record can be 1 MiB).
SAMPLES_PER_FORWARD = 500


def parse_repartition_headers(headers: Any) -> tuple[str, tuple[int, ...]]:
    """What a repartition record is: ("samples", (source partition, source offset, part)),
    ("watermark", (source partition, watermark)) or ("unexpected", ()).

    headers: what confluent-kafka's Message.headers() returns (a list of (name, bytes) or None).
    """
    for name, value in headers or ():
        if not isinstance(value, bytes) or name not in (FORWARD_HEADER, WATERMARK_HEADER):
            continue
        try:
            numbers = tuple(int(x) for x in value.split(b":"))
        except ValueError:
            break
        if name == FORWARD_HEADER and len(numbers) == 3:
            return "samples", numbers
        if name == WATERMARK_HEADER and len(numbers) == 2:
            return "watermark", numbers
        break
    return "unexpected", ()


def watermark_messages(source: int, watermark: int, partitions: int) -> list[dict[str, Any]]:
    """One watermark record for each other partition of the repartition topic."""
    header = [(WATERMARK_HEADER, f"{source}:{watermark}".encode())]
    return [
        {"partition": p, "value": b"", "headers": header} for p in range(partitions) if p != source
    ]


def unexpected_record(offset: int, value: bytes | None) -> Reject:
    return Reject(
        offset,
        -1,
        Reason.UNEXPECTED_RECORD,
        "record in the repartition topic without a worker's header",
        (value or b"")[:EXCERPT_BYTES],
    )


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
