"""Reading a rollup topic: records → typed rollups, or dead letters with a reason."""

from __future__ import annotations

from typing import cast

from confluent_kafka import Message

from pipeline.core.decode import Reject
from pipeline.core.reasons import Reason
from pipeline.core.rollup_wire import RollupReject, WireRollup, decode_rollup
from pipeline.kafka.deadletter import EXCERPT_CHARS

EXCERPT_BYTES = 2048


class RollupBatch:
    """One partition's records decoded: the rollups in order, and the records refused."""

    def __init__(self, batch: list[Message], resolution_ms: int) -> None:
        self.rollups: list[tuple[int, WireRollup]] = []
        self.rejects: list[Reject] = []
        self._raw: dict[int, bytes] = {}
        for msg in batch:
            offset = cast(int, msg.offset())
            raw = msg.value() or b""
            try:
                self.rollups.append((offset, decode_rollup(msg.value(), resolution_ms)))
                self._raw[offset] = raw
            except RollupReject as exc:
                self.rejects.append(Reject(offset, -1, exc.reason, exc.detail, raw[:EXCERPT_BYTES]))
        self.end_offset = cast(int, batch[-1].offset()) + 1

    def reject_late(self, late: list[tuple[int, WireRollup]], detail: str) -> None:
        """Dead-letter rollups that arrived after their window was closed (as `late`)."""
        for offset, rollup in late:
            self.rejects.append(
                Reject(
                    offset, -1, Reason.LATE, detail, self._raw[offset][:EXCERPT_CHARS], rollup.count
                )
            )
