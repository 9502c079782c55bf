"""The per-partition checkpoint: what a new owner needs to replay a partition deterministically.

Written (and flushed) before every offset commit, keyed by (group, topic, partition). It is the
source of truth for where to resume: the committed Kafka offset only serves lag monitoring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.errors import CheckpointError

CHECKPOINT_VERSION = 1


@dataclass(slots=True)
class Checkpoint:
    """State of one input partition just before `offset`.

    offset: first offset a replay must read. max_ts: the largest event time (ms) before it,
    including idle advances. emitted_wm: every window ending at or before it has been emitted.
    counters: cumulative counter values before `offset`. advances: idle watermark advances at
    offsets >= `offset`, as [offset, max_ts]. extra: runtime state (e.g. forwarded-input dedup).
    """

    topic: str
    partition: int
    offset: int
    max_ts: int
    emitted_wm: int
    resolution_ms: int
    allowed_lateness_ms: int
    counter_staleness_ms: int
    counters: list[list[Any]] = field(default_factory=list)
    advances: list[list[int]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "version": CHECKPOINT_VERSION,
                "topic": self.topic,
                "partition": self.partition,
                "offset": self.offset,
                "max_ts": self.max_ts,
                "emitted_wm": self.emitted_wm,
                "resolution_ms": self.resolution_ms,
                "allowed_lateness_ms": self.allowed_lateness_ms,
                "counter_staleness_ms": self.counter_staleness_ms,
                "counters": self.counters,
                "advances": self.advances,
                "extra": self.extra,
            }
        )

    @staticmethod
    def decode(raw: bytes) -> Checkpoint:
        try:
            doc = orjson.loads(raw)
            if doc.get("version") != CHECKPOINT_VERSION:
                raise CheckpointError(f"unknown checkpoint version {doc.get('version')!r}")
            return Checkpoint(
                topic=doc["topic"],
                partition=int(doc["partition"]),
                offset=int(doc["offset"]),
                max_ts=int(doc["max_ts"]),
                emitted_wm=int(doc["emitted_wm"]),
                resolution_ms=int(doc["resolution_ms"]),
                allowed_lateness_ms=int(doc["allowed_lateness_ms"]),
                counter_staleness_ms=int(doc["counter_staleness_ms"]),
                counters=doc["counters"],
                advances=doc["advances"],
                extra=doc.get("extra", {}),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"unreadable checkpoint: {exc}") from exc


@dataclass(slots=True)
class ResumePoint:
    """Where a partition's watermark state stands when a replay starts from a checkpoint."""

    max_ts: int
    emitted_wm: int
    next_offset: int
    advances: list[list[int]]


def resume_point(
    checkpoint: Checkpoint, stored: tuple[Any, ...], running: tuple[Any, ...], settings: str
) -> ResumePoint:
    """The state to replay from, once the checkpoint's `stored` settings (named by `settings`)
    are those `running`: other window sizes or lateness would classify the replayed input
    differently from the run that emitted, and re-emitted rollups would change."""
    if stored != running:
        raise CheckpointError(
            f"checkpoint of {checkpoint.topic}[{checkpoint.partition}] was written with "
            f"{settings} {stored} ms, this process uses {running} ms: keep the settings or "
            "use another consumer group"
        )
    advances = [list(a) for a in checkpoint.advances]
    max_ts = checkpoint.max_ts
    # An advance at exactly the resume offset happened before that message: apply it now.
    for adv_offset, adv_max_ts in advances:
        if adv_offset <= checkpoint.offset:
            max_ts = max(max_ts, adv_max_ts)
    return ResumePoint(max_ts, checkpoint.emitted_wm, checkpoint.offset, advances)
