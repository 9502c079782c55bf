"""What a windowed stage keeps per owned input partition: the deterministic state machine and
the runtime bookkeeping around it (idle timing, replay-gap check, whether to checkpoint)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from confluent_kafka import Message

from pipeline.core.checkpoint import Checkpoint
from pipeline.core.keyed import KeyedOutput


class PartitionState(Protocol):
    """One input partition's deterministic window state (see core/aggregator.py)."""

    @property
    def next_offset(self) -> int: ...

    @property
    def watermark(self) -> int: ...

    @property
    def open_windows(self) -> int: ...

    def checkpoint(self) -> Checkpoint: ...

    def restore(self, checkpoint: Checkpoint) -> None: ...

    def plan_idle_advance(self) -> bool: ...

    def apply_idle_advance(self) -> Sequence[KeyedOutput]: ...


StateT = TypeVar("StateT", bound=PartitionState)


@dataclass(slots=True)
class OwnedPartition(Generic[StateT]):
    state: StateT
    last_input_at: float = field(default_factory=time.monotonic)
    dirty: bool = True
    resume_from: int = -1  # checkpoint offset the first record should carry (-1: none)
    received: bool = False  # input of its own was processed since assignment
    checked_empty_at: float = 0.0  # last time an input-less partition's end was looked up
    end_confirmed_at: float = 0.0  # last time the broker confirmed nothing more is waiting

    def not_yet_processed(self, batch: list[Message]) -> list[Message]:
        """The records not processed already (a seek re-delivers some)."""
        first = batch[0].offset()
        if first is not None and first < self.state.next_offset:
            return [m for m in batch if (m.offset() or 0) >= self.state.next_offset]
        return batch

    def replay_gap(self, batch: list[Message]) -> int | None:
        """For the first batch after a restore: the offset the replay needed if the batch
        starts after it (input deleted by retention), else None."""
        if self.resume_from < 0:
            return None
        needed_from, self.resume_from = self.resume_from, -1
        first = batch[0].offset() or 0
        return needed_from if first > needed_from else None
