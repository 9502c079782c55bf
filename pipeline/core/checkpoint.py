"""The per-partition checkpoint: what a new owner needs to replay a partition deterministically.

Written (and flushed) before every offset commit, keyed by (group, topic, partition). It is the
source of truth for where to resume: the committed Kafka offset only serves lag monitoring.

The same record for every stage: where to resume (`offset`), the partition's clock there
(clock.py), the settings the state was built with (`fingerprint`, which must match on
restore), and the stage's own `state`, whose shape each stage owns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.errors import CheckpointError

CHECKPOINT_VERSION = 2

# Layout 1 (the release before one clock) kept the clock and the settings at the top level
# and each stage's state in `extra`; these `extra` entries were settings, and this one clock.
_V1_FINGERPRINT_EXTRAS = ("input_resolution_ms", "history_windows")
_V1_CLAIMS = "clock_claims"


@dataclass(slots=True)
class Checkpoint:
    """State of one input partition just before `offset`.

    offset: first offset a replay must read. clock: PartitionClock.snapshot() there (largest
    event time, emitted watermark, idle advances at offsets >= `offset`, unconfirmed claims).
    fingerprint: the settings that must be the same to restore (window sizes, lateness, …).
    state: the stage's own (the raw stage's counters and repartition position, the
    detector's snapshot, …) and runtime state the stage's worker adds.
    """

    topic: str
    partition: int
    offset: int
    clock: dict[str, Any]
    fingerprint: dict[str, int]
    state: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "version": CHECKPOINT_VERSION,
                "topic": self.topic,
                "partition": self.partition,
                "offset": self.offset,
                "clock": self.clock,
                "fingerprint": self.fingerprint,
                "state": self.state,
            }
        )

    @staticmethod
    def decode(raw: bytes) -> Checkpoint:
        try:
            doc = orjson.loads(raw)
            version = doc.get("version")
            if version == 1:
                return _from_v1(doc)
            if version != CHECKPOINT_VERSION:
                raise CheckpointError(f"unknown checkpoint version {version!r}")
            return Checkpoint(
                topic=doc["topic"],
                partition=int(doc["partition"]),
                offset=int(doc["offset"]),
                clock=dict(doc["clock"]),
                fingerprint={k: int(v) for k, v in doc["fingerprint"].items()},
                state=dict(doc["state"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"unreadable checkpoint: {exc}") from exc

    def require(self, running: dict[str, int], settings: str) -> None:
        """Refuse to restore unless the checkpoint was written with the `running` settings
        (named by `settings`): other window sizes or lateness would classify the replayed input
        differently from the run that emitted, and re-emitted rollups would change."""
        stored = tuple(self.fingerprint.get(k) for k in running)
        if stored != tuple(running.values()):
            raise CheckpointError(
                f"checkpoint of {self.topic}[{self.partition}] was written with "
                f"{settings} {stored} ms, this process uses {tuple(running.values())} ms: keep "
                "the settings or use another consumer group"
            )


def _from_v1(doc: dict[str, Any]) -> Checkpoint:
    """A checkpoint of layout 1: the same content, moved to where layout 2 keeps it."""
    extra = dict(doc.get("extra", {}))
    clock: dict[str, Any] = {
        "max_ts": int(doc["max_ts"]),
        "emitted_wm": int(doc["emitted_wm"]),
        "advances": doc["advances"],
    }
    claims = extra.pop(_V1_CLAIMS, None)
    if claims:
        clock["claims"] = claims
    fingerprint = {
        k: int(doc[k]) for k in ("resolution_ms", "allowed_lateness_ms", "counter_staleness_ms")
    }
    for key in _V1_FINGERPRINT_EXTRAS:
        if extra.get(key) is not None:
            fingerprint[key] = int(extra.pop(key))
    return Checkpoint(
        topic=doc["topic"],
        partition=int(doc["partition"]),
        offset=int(doc["offset"]),
        clock=clock,
        fingerprint=fingerprint,
        state={"counters": doc["counters"], **extra},
    )
