"""Dead-letter records (schemas/deadletter.schema.json), keyed by their source position.

The key "<topic>/<partition>/<offset>/<index>" and the content depend only on the input, so a
replay re-produces byte-identical records that a keyed consumer can de-duplicate. A record is at
most MAX_RECORD_BYTES whatever it rejects: excerpt and error are cut, index runs capped.
"""

from __future__ import annotations

from typing import Any

import orjson

from pipeline.core.columns import SampleColumns
from pipeline.core.decode import Reject
from pipeline.core.reasons import Reason
from pipeline.core.series import SeriesTable

EXCERPT_CHARS = 512
ERROR_CHARS = 256
MAX_INDEX_RANGES = 64
# Every character of excerpt and error may take 6 bytes as a JSON escape; the rest is small.
MAX_RECORD_BYTES = 8192


def deadletter_key(topic: str, partition: int, offset: int, index: int) -> bytes:
    return f"{topic}/{partition}/{offset}/{index}".encode()


def _record(
    topic: str,
    partition: int,
    offset: int,
    index: int,
    reason: Reason,
    error: str,
    excerpt: bytes,
    samples: int,
    stage: str,
    ranges: list[tuple[int, int]] | None = None,
) -> bytes:
    text = excerpt.decode("utf-8", errors="replace")
    body: dict[str, Any] = {
        "reason": reason.value,
        # Lone surrogates from an exception's text would make orjson refuse the record.
        "error": error[:ERROR_CHARS].encode("utf-8", "backslashreplace").decode(),
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "index": index,
        "samples": samples,
        "excerpt": text[:EXCERPT_CHARS],
        "excerpt_truncated": len(text) > EXCERPT_CHARS,
        "stage": stage,
    }
    if index >= 0:
        runs = ranges or [(index, index)]
        body["indices"] = [list(run) for run in runs[:MAX_INDEX_RANGES]]
        body["indices_truncated"] = len(runs) > MAX_INDEX_RANGES
    return orjson.dumps(body)


def reject_records(
    topic: str, partition: int, rejects: list[Reject], stage: str = "worker"
) -> list[tuple[bytes, bytes]]:
    """(key, value) per rejected input."""
    return [
        (
            deadletter_key(topic, partition, r.offset, r.index),
            _record(
                topic,
                partition,
                r.offset,
                r.index,
                r.reason,
                r.detail,
                r.excerpt,
                r.samples,
                stage,
                r.ranges,
            ),
        )
        for r in rejects
    ]


def late_records(
    topic: str,
    partition: int,
    late: SampleColumns,
    series: SeriesTable,
    resolution_ms: int,
    stage: str = "worker",
) -> list[tuple[bytes, bytes]]:
    """(key, value) per late sample, its excerpt re-encoded from the columns."""
    out: list[tuple[bytes, bytes]] = []
    for sid, ts, value, iid, offset, index in zip(
        late.series.tolist(),
        late.ts.tolist(),
        late.value.tolist(),
        late.instance.tolist(),
        late.offset.tolist(),
        late.index.tolist(),
        strict=True,
    ):
        sample = dict(series.json_of(sid))
        sample["ts"] = ts
        sample["value"] = value
        if iid >= 0:
            sample["instance"] = series.instance_names[iid]
        window_end = ts - ts % resolution_ms + resolution_ms
        error = f"window ending {window_end} had closed"
        out.append(
            (
                deadletter_key(topic, partition, offset, index),
                _record(
                    topic,
                    partition,
                    offset,
                    index,
                    Reason.LATE,
                    error,
                    orjson.dumps(sample),
                    1,
                    stage,
                ),
            )
        )
    return out


def sink_record(
    topic: str,
    partition: int,
    offset: int,
    reason: Reason,
    error: str,
    raw: bytes,
    stage: str,
) -> tuple[bytes, bytes]:
    """(key, value) for a whole input record a sink could not read or its store refused."""
    return (
        deadletter_key(topic, partition, offset, -1),
        _record(topic, partition, offset, -1, reason, error, raw, 1, stage),
    )
