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

import itertools
from typing import Any, NamedTuple

import numpy as np
import orjson

from pipeline.core.columns import SampleColumns
from pipeline.core.reasons import Reason
from pipeline.core.series import SeriesIdentity, SeriesTable
from pipeline.core.validate import Reject

FORWARD_HEADER = "mp-fwd"
WATERMARK_HEADER = "mp-wm"
EXCERPT_BYTES = 512


# A forwarded record carries at most this many samples (and at most as many series), so that
# even series with large label maps stay far below any broker's message size limit.
SAMPLES_PER_FORWARD = 5_000


def parse_repartition_headers(headers: Any) -> tuple[str, tuple[int, ...]]:
    """What a repartition record is: ("samples", (source partition,)),
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
        if name == FORWARD_HEADER and len(numbers) == 1:
            return "samples", numbers
        if name == WATERMARK_HEADER and len(numbers) == 2:
            return "watermark", numbers
        break
    return "unexpected", ()


def watermark_messages(source: int, watermark: int, partitions: int) -> list[dict[str, Any]]:
    """One watermark record for each partition of the repartition topic (the source's own
    included: it may have forwarded to itself)."""
    header = [(WATERMARK_HEADER, f"{source}:{watermark}".encode())]
    return [{"partition": p, "value": b"", "headers": header} for p in range(partitions)]


def unexpected_record(offset: int, value: bytes | None) -> Reject:
    return Reject(
        offset,
        -1,
        Reason.UNEXPECTED_RECORD,
        "record in the repartition topic without a worker's header",
        (value or b"")[:EXCERPT_BYTES],
    )


Position = tuple[int, int]  # (source offset, index in the source message)


class ForwardDedup:
    """Last source position taken per source partition, with a replay-safe base.

    A source forwards its samples to one owner in source order (one record per consume batch
    and owner, its samples in partition order), so a sample at or before the last position
    taken from its source was taken already: a replaying source sends it again.
    """

    def __init__(self, base: dict[str, list[int]] | None = None) -> None:
        self._base: dict[int, Position] = {
            int(k): (int(v[0]), int(v[1])) for k, v in (base or {}).items()
        }
        self._seen = dict(self._base)
        self._log: list[tuple[int, int, Position]] = []  # (own offset, source partition, pos)

    def fresh(
        self, own_offset: int, source: int, offset: np.ndarray, index: np.ndarray
    ) -> np.ndarray:
        """Mask of the record's samples not taken before; remembers the last one taken."""
        seen_offset, seen_index = self._seen.get(source, (-1, -2))
        mask: np.ndarray = (offset > seen_offset) | ((offset == seen_offset) & (index > seen_index))
        if mask.any():
            last = int(np.flatnonzero(mask)[-1])
            position = (int(offset[last]), int(index[last]))
            if position > (seen_offset, seen_index):
                self._seen[source] = position
                self._log.append((own_offset, source, position))
        return mask

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
    cols: SampleColumns, owners: np.ndarray, series: SeriesTable, source_partition: int
) -> list[dict[str, Any]]:
    """Records for the repartition topic: per owner, this batch's samples for it in partition
    order, as columns (each series' identity once), in parts of at most SAMPLES_PER_FORWARD."""
    out: list[dict[str, Any]] = []
    header = [(FORWARD_HEADER, str(source_partition).encode())]
    order = np.argsort(owners, kind="stable")  # stable: partition order within an owner
    sorted_owners = owners[order]
    bounds = [0, *(np.flatnonzero(np.diff(sorted_owners)) + 1).tolist(), len(order)]
    for a, b in itertools.pairwise(bounds):
        owner = int(sorted_owners[a])
        for start in range(a, b, SAMPLES_PER_FORWARD):
            part = cols.take(order[start : min(b, start + SAMPLES_PER_FORWARD)])
            out.append(
                {"partition": owner, "value": encode_forward(part, series), "headers": header}
            )
    return out


def encode_forward(cols: SampleColumns, series: SeriesTable) -> bytes:
    sids, local = np.unique(cols.series, return_inverse=True)
    iids, local_instance = np.unique(cols.instance, return_inverse=True)
    return orjson.dumps(
        {
            "series": [series.json_of(int(sid)) for sid in sids.tolist()],
            "instances": [series.instance_names[i] if i >= 0 else None for i in iids.tolist()],
            "s": local,
            "i": local_instance,
            "ts": cols.ts,
            "value": cols.value,
            "offset": cols.offset,
            "index": cols.index,
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


class Forwarded(NamedTuple):
    """A forwarded record's samples and their positions at the source."""

    series: np.ndarray
    ts: np.ndarray
    value: np.ndarray
    instance: np.ndarray
    source_offset: np.ndarray
    source_index: np.ndarray


def decode_forward(value: bytes | None, series: SeriesTable) -> Forwarded:
    """The samples of a forwarded record; ValueError if it is not one a worker wrote."""
    try:
        doc = orjson.loads(value or b"")
        sids = np.array(
            [series.intern(SeriesIdentity.from_json(obj)) for obj in doc["series"]], np.int32
        )
        iids = np.array(
            [-1 if name is None else series.instance_id(str(name)) for name in doc["instances"]],
            np.int32,
        )
        local = np.asarray(doc["s"], np.int64)
        local_instance = np.asarray(doc["i"], np.int64)
        out = Forwarded(
            sids[local],
            np.asarray(doc["ts"], np.int64),
            np.asarray(doc["value"], np.float64),
            iids[local_instance],
            np.asarray(doc["offset"], np.int64),
            np.asarray(doc["index"], np.int32),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"not a forwarded record: {exc}") from exc
    n = len(out.ts)
    if any(len(column) != n for column in out) or not np.isfinite(out.value).all():
        raise ValueError("not a forwarded record: inconsistent columns")
    return out
