"""A windowed stage's checkpoints and commits, without stopping consumption for them.

Every commit tick, for each partition with new input: take its checkpoint now (the state is
exact at this point), write it once every output produced for the partition before it is
acknowledged (kafka/acks.py), and commit its offsets once the checkpoint record itself is. A
checkpoint is therefore never ahead of the outputs it covers, and a commit never ahead of its
checkpoint, as with a global flush, but the loop only waits when an output is still
unacknowledged a whole tick later (a failed or very slow delivery): then it flushes, which
raises if a record was refused, and nothing more is checkpointed. A revoke or a stop
checkpoints at once (flush, write, flush), as does an idle advance (kafka/idle.py).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from dataclasses import dataclass
from typing import Generic

from confluent_kafka import Consumer, TopicPartition

from pipeline.core.checkpoint import Checkpoint
from pipeline.kafka.acks import TrackedProducer
from pipeline.kafka.checkpoints import CheckpointStore
from pipeline.kafka.partition_state import OwnedPartition, StateT
from pipeline.observability import StageMetrics
from pipeline.selfmetrics import stage_self_metrics
from pipeline.settings import StageSettings


@dataclass(slots=True)
class _Taken:
    generation: int  # outputs of this generation and before must be acknowledged first
    topic: str
    partition: int
    value: bytes  # encoded when taken: the state it describes moves on meanwhile
    offsets: list[TopicPartition]  # what to commit once the checkpoint is written


@dataclass(slots=True)
class _Written:
    offsets: list[TopicPartition]
    acked: bool = False

    def mark_acked(self) -> None:
        self.acked = True


class CheckpointSchedule:
    """Checkpoints taken, written and acknowledged, per input partition (module docstring)."""

    def __init__(self, producer: TrackedProducer, store: CheckpointStore) -> None:
        self._producer = producer
        self._store = store
        self._taken: dict[int, _Taken] = {}
        self._written: dict[int, list[_Written]] = {}

    def take(self, partition: int, checkpoint: Checkpoint, offsets: list[TopicPartition]) -> None:
        """A checkpoint of the partition as it is now, to write once its outputs are in."""
        generation = self._producer.acks.cut(partition)
        self._taken[partition] = _Taken(
            generation, checkpoint.topic, checkpoint.partition, checkpoint.encode(), offsets
        )

    def ready(self) -> list[TopicPartition]:
        """Offsets whose checkpoints Kafka acknowledged since the last call."""
        offsets: list[TopicPartition] = []
        for partition, written in list(self._written.items()):
            while written and written[0].acked:
                offsets.extend(written.pop(0).offsets)
            if not written:
                del self._written[partition]
        return offsets

    def write_taken(self) -> None:
        """Write the checkpoints taken at the last tick. An output, or a checkpoint written at
        the last tick, still unacknowledged by now is waited for (the flush raises if one was
        refused: nothing may be written or committed past it)."""
        acks = self._producer.acks
        if any(not acks.settled(p, t.generation) for p, t in self._taken.items()) or any(
            self._written.values()  # ready() took every acknowledged one: these are late
        ):
            self._producer.flush()
        for partition, taken in self._taken.items():
            written = _Written(taken.offsets)
            self._store.write_encoded(
                self._producer, taken.topic, taken.partition, taken.value, written.mark_acked
            )
            self._written.setdefault(partition, []).append(written)
        self._taken.clear()

    def discard(self, partitions: list[int]) -> None:
        """A newer checkpoint of these partitions is written another way: the ones taken would
        be older, and must not be written after it."""
        for p in partitions:
            self._taken.pop(p, None)

    def forget(self, partitions: list[int]) -> None:
        for p in partitions:
            self._taken.pop(p, None)
            self._written.pop(p, None)
            self._producer.acks.forget(p)


class CheckpointStep(Generic[StateT]):
    """The checkpoint step of `PartitionedStage` (kafka/stage.py, which provides what is
    declared here): its `checkpoint` and `committed` of the partition-handler protocol."""

    settings: StageSettings
    metrics: StageMetrics
    owned: dict[int, OwnedPartition[StateT]]
    producer: TrackedProducer
    checkpoints: CheckpointStore
    schedule: CheckpointSchedule
    side_topic: str | None
    _commit_started: float

    @property
    @abstractmethod
    def open_windows(self) -> int: ...

    @abstractmethod
    def _checkpoint_extra(self, partition: int, checkpoint: Checkpoint) -> None: ...

    @abstractmethod
    def _side_offset_of(self, checkpoint: Checkpoint) -> int: ...

    def _write_checkpoint(self, partition: int, owned: OwnedPartition[StateT]) -> Checkpoint:
        """Write the partition's checkpoint now (the caller flushed its outputs before)."""
        self.schedule.discard([partition])  # one taken earlier is older: never after this
        checkpoint = self._take_checkpoint(partition, owned)
        self.checkpoints.write(self.producer, checkpoint)
        return checkpoint

    def _take_checkpoint(self, partition: int, owned: OwnedPartition[StateT]) -> Checkpoint:
        checkpoint = owned.state.checkpoint()
        self._checkpoint_extra(partition, checkpoint)
        return checkpoint

    def _offsets_of(self, partition: int, checkpoint: Checkpoint) -> list[TopicPartition]:
        offsets = [TopicPartition(self.settings.source_topic, partition, checkpoint.offset)]
        if self.side_topic is not None:
            # Where the checkpoint resumes the side stream (lag monitoring only, like the
            # source's committed offset: the checkpoint is what a new owner trusts).
            side_offset = self._side_offset_of(checkpoint)
            offsets.append(TopicPartition(self.side_topic, partition, side_offset))
        return offsets

    def checkpoint(
        self, consumer: Consumer, partitions: list[int] | None, force: bool
    ) -> list[TopicPartition]:
        if partitions is None:
            partitions = list(self.owned)
        else:  # a revoke: only partitions this stage owns
            partitions = [p for p in partitions if p in self.owned]
            if not partitions:
                return []
        self._commit_started = time.perf_counter()
        # Every tick, committing or not: lags move while nothing is dirty, windows close idle.
        truth = stage_self_metrics(self.metrics.registry)
        marks = {p: o.state.watermark for p, o in self.owned.items()}
        truth.refresh(consumer, self.settings.source_topic, marks)
        watermarks = [w for w in marks.values() if w > 0]  # partitions without data have none
        if watermarks:
            self.metrics.watermark_lag.set(time.time() - min(watermarks) / 1000.0)
        self.metrics.open_windows.set(self.open_windows)
        todo = [p for p in partitions if p in self.owned and (force or self.owned[p].dirty)]
        if force:
            return self._checkpoint_now(todo)
        # Without waiting (above): commit what was checkpointed and acknowledged,
        # write what was taken last tick, take the partitions with new input now.
        ready = self.schedule.ready()
        self.schedule.write_taken()
        for p in todo:
            owned = self.owned[p]
            checkpoint = self._take_checkpoint(p, owned)
            self.schedule.take(p, checkpoint, self._offsets_of(p, checkpoint))
            owned.dirty = False
        return ready

    def _checkpoint_now(self, todo: list[int]) -> list[TopicPartition]:
        """Checkpoint `todo` before going on (a revoke, a stop): flush, write, flush."""
        if not todo:
            return []
        self.producer.flush()  # outputs first: a checkpoint must never get ahead of them
        offsets: list[TopicPartition] = []
        for p in todo:
            owned = self.owned[p]
            offsets += self._offsets_of(p, self._write_checkpoint(p, owned))
            owned.dirty = False
        self.producer.flush()
        return offsets

    def committed(self, offsets: list[TopicPartition], ok: bool) -> None:
        if ok:
            stage_self_metrics(self.metrics.registry).checkpointed()
        topic = self.settings.source_topic
        lag = 0
        for tp in offsets:
            owned = self.owned.get(tp.partition)
            if tp.topic == topic and owned is not None:
                lag += owned.state.next_offset - tp.offset
        self.metrics.commit_lag.set(lag)
        self.metrics.flush_duration.observe(time.perf_counter() - self._commit_started)
