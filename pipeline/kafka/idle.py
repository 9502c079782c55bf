"""The idle rule of a windowed stage: a partition that received nothing for `idle_timeout` (and
has nothing waiting, as the broker itself confirms) records a clock advance in its checkpoint,
then emits the windows the advance closes. Without it, a partition whose producers stopped
would hold its last windows open forever."""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, Generic

from confluent_kafka import Consumer, TopicPartition

from pipeline.core.checkpoint import Checkpoint
from pipeline.core.keyed import KeyedOutput
from pipeline.kafka.clients import OutputProducer
from pipeline.kafka.group_io import broker_end
from pipeline.kafka.partition_state import OwnedPartition, StateT
from pipeline.settings import StageSettings


class IdleRule(Generic[StateT]):
    """The idle rule as a part of `PartitionedStage` (kafka/stage.py), which provides what is
    declared here; a stage refines when a partition counts as quiet (`_quiet`) and what follows
    an advance (`_after_idle_advance`)."""

    settings: StageSettings
    owned: dict[int, OwnedPartition[StateT]]
    producer: OutputProducer
    _idle_after: float
    _log: Any

    @abstractmethod
    def _write_checkpoint(self, partition: int, owned: OwnedPartition[StateT]) -> Checkpoint: ...

    @abstractmethod
    def _emit(self, outputs: Sequence[KeyedOutput], closed_at: float | None = None) -> None: ...

    def _quiet(
        self, consumer: Consumer, partition: int, owned: OwnedPartition[StateT], now: float
    ) -> bool:
        """Whether the idle rule may advance the partition's clock now."""
        return now - owned.last_input_at >= self._idle_after

    def _after_idle_advance(self, partition: int, owned: OwnedPartition[StateT]) -> None:
        """Called once an idle advance moved a partition's clock and emitted what it closed."""

    def _close_idle(self, consumer: Consumer) -> None:
        now = time.monotonic()
        for partition, owned in self.owned.items():
            state = owned.state
            if not self._quiet(consumer, partition, owned, now):
                continue
            if self._input_waiting(consumer, partition, owned, now):
                continue  # not idle, just slow
            if not state.plan_idle_advance():
                continue
            # Persist the advance before emitting what it closes (see plan_idle_advance).
            self.producer.flush()
            self._write_checkpoint(partition, owned)
            self.producer.flush()
            self._emit(state.apply_idle_advance())
            self._after_idle_advance(partition, owned)
            owned.dirty = True
            self._log.info(
                "idle partition flushed",
                partition=partition,
                offset=state.next_offset,
                watermark_ms=state.watermark,
            )

    def _input_waiting(
        self, consumer: Consumer, partition: int, owned: OwnedPartition[StateT], now: float
    ) -> bool:
        """Whether the partition has input beyond what was processed, as far as the broker
        knows now. The fetch cache alone is not enough: its end can be a fetch behind, and an
        advance on a stale end would judge the records it missed late. So the broker is asked
        (at most once a second per partition) before the clock moves."""
        tp = TopicPartition(self.settings.source_topic, partition)
        _, high = consumer.get_watermark_offsets(tp, cached=True)
        if high is not None and high > owned.state.next_offset:
            return True
        if now - owned.end_confirmed_at < 1.0:
            return owned.end_confirmed_at < owned.last_input_at + self._idle_after
        end = broker_end(consumer, tp)
        if end is None or end > owned.state.next_offset:
            return True  # waiting, or the broker cannot say: do not advance on a guess
        owned.end_confirmed_at = now
        return False
