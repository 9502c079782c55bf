"""A windowed stage as a consumer-group member: the replay-safe loop shared by every stage.

The rollup worker (raw samples → base rollups) and the tier worker (rollups → coarser rollups)
differ only in what they do with a partition's records. Everything about time, ownership and
commits is here, and is the same for both (docs/architecture.md):

- each owned input partition has a state machine (`PartitionState`) restored from the partition's
  latest checkpoint, and is replayed from the checkpoint's offset;
- every `commit_interval`: flush outputs, write each partition's checkpoint, flush, commit;
- after an error nothing more is committed: the next owner replays from the last good checkpoint;
- the idle rule: a partition that received nothing for `idle_timeout` (and has nothing waiting)
  records an advance in its checkpoint, then emits the windows the advance closes.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from pipeline.core.checkpoint import Checkpoint
from pipeline.core.decode import Reject
from pipeline.core.durations import format_duration
from pipeline.core.rollup import Rollup
from pipeline.errors import CheckpointError, PipelineError
from pipeline.kafka.admin import TopicSpec, ensure_present
from pipeline.kafka.checkpoints import CheckpointStore
from pipeline.kafka.clients import (
    KafkaStatus,
    OutputProducer,
    consumer_config,
    producer_config,
)
from pipeline.kafka.deadletter import reject_records
from pipeline.kafka.partitioner import OwnerPartitions
from pipeline.observability import Health, StageMetrics
from pipeline.selfmetrics import stage_self_metrics
from pipeline.settings import StageSettings

log = structlog.get_logger("stage")


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

    def apply_idle_advance(self) -> list[Rollup]: ...


def broker_end(consumer: Consumer, tp: TopicPartition, timeout: float = 2.0) -> int | None:
    """The partition's end as the broker says now (not the fetch cache); None if it cannot be
    asked."""
    try:
        _, high = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
    except KafkaException:
        return None
    return int(high)


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


class PartitionedStage(ABC, Generic[StateT]):
    stage_name = "stage"  # names the stage in logs and dead letters

    def __init__(
        self,
        settings: StageSettings,
        metrics: StageMetrics | None = None,
        health: Health | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or StageMetrics()
        self.health = health or Health()
        self.owned: dict[int, OwnedPartition[StateT]] = {}
        self._first_input_seen = False
        self.emitted = 0  # rollups produced by this process
        self.samples_emitted = 0  # ... and the samples they hold
        self.delivered = 0  # ... and acknowledged by Kafka
        self._failed = False  # set when run() dies: from then on nothing is committed
        self._batch_messages = settings.batch_size
        self._commit_every = settings.commit_interval / 1000
        self._idle_after = settings.idle_timeout / 1000
        self._log = log.bind(stage=self.stage_name)

    # -- what a stage does ------------------------------------------------------------------

    @abstractmethod
    def _new_state(self, partition: int) -> StateT:
        """Fresh state for an input partition (restored from its checkpoint if there is one)."""

    @abstractmethod
    def _process_partition(
        self,
        partition: int,
        owned: OwnedPartition[StateT],
        batch: list[Message],
        received_at: float,
    ) -> None:
        """Consume one partition's records (in order) and produce what they close."""

    def _restore_extra(self, partition: int, checkpoint: Checkpoint | None) -> None:
        """Runtime state a stage keeps beside the window state (checkpoint.state)."""

    def _checkpoint_extra(self, partition: int, checkpoint: Checkpoint) -> None:
        """Add runtime state to a checkpoint about to be written (checkpoint.state)."""

    def _topics_ready(self, input_partitions: int) -> None:
        """Called once the input's partition count is known."""

    def _quiet(
        self, consumer: Consumer, partition: int, owned: OwnedPartition[StateT], now: float
    ) -> bool:
        """Whether the idle rule may advance the partition's clock now."""
        return now - owned.last_input_at >= self._idle_after

    def _after_idle_advance(self, partition: int, owned: OwnedPartition[StateT]) -> None:
        """Called once an idle advance moved a partition's clock and emitted what it closed."""

    def _side_topic(self, input_partitions: int) -> TopicSpec | None:
        """A second input co-partitioned with the source (same partition count, same owner per
        partition number), read into the same partition state; None: the stage has none."""
        return None

    def _process_side(
        self,
        partition: int,
        owned: OwnedPartition[StateT],
        batch: list[Message],
        received_at: float,
    ) -> None:
        """Consume one partition's records of the side topic (in order)."""
        raise NotImplementedError

    def _side_offset(self, state: StateT) -> int:
        """Next side-topic offset the state has not read yet (where to resume after restore)."""
        raise NotImplementedError

    def _side_offset_of(self, checkpoint: Checkpoint) -> int:
        """Side-topic offset a checkpoint resumes from."""
        raise NotImplementedError

    # -- set-up -----------------------------------------------------------------------------

    def _prepare_topics(self) -> None:
        s = self.settings
        (n,) = ensure_present(
            s.client_config(), [TopicSpec(s.source_topic, s.topic_partitions)], s.create_topics
        ).values()
        self.input_partitions = n
        outputs = [
            TopicSpec(s.rollup_topic, n),
            TopicSpec(s.deadletter_topic, n),
            TopicSpec(s.checkpoint_topic, n, config={"cleanup.policy": "compact"}),
        ]
        side = self._side_topic(n)
        if side is not None:
            outputs.append(side)
        counts = ensure_present(s.client_config(), outputs, s.create_topics)
        if side is not None and counts[side.name] != n:
            raise PipelineError(
                f"topic {side.name!r} has {counts[side.name]} partitions, but {s.source_topic!r} "
                f"has {n}: they must be equal (each partition pairs with one of the other)"
            )
        self.side_topic = None if side is None else side.name
        self.rollup_owner = OwnerPartitions(counts[s.rollup_topic])
        self.checkpoints = CheckpointStore(
            s.client_config(), s.checkpoint_topic, s.consumer_group, counts[s.checkpoint_topic]
        )
        self._topics_ready(n)

    # -- rebalance callbacks ----------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        topic = self.settings.source_topic
        side = [tp for tp in partitions if tp.topic == self.side_topic]
        partitions = [tp for tp in partitions if tp.topic == topic]
        numbers = [tp.partition for tp in partitions]
        stored = self.checkpoints.read_latest(topic, numbers)
        self._refuse_commits_without_checkpoints(consumer, partitions, stored)
        for tp in partitions:
            state = self._new_state(tp.partition)
            checkpoint = stored.get(tp.partition)
            if checkpoint is not None:
                state.restore(checkpoint)
                tp.offset = checkpoint.offset
            self._restore_extra(tp.partition, checkpoint)
            owned = OwnedPartition(state)
            owned.resume_from = -1 if checkpoint is None else checkpoint.offset
            self.owned[tp.partition] = owned
        for tp in side:
            paired = self.owned.get(tp.partition)
            if paired is None:
                # Only a non-range assignment strategy can split a pair: its records wait.
                self._log.error("side partition without its input partition", partition=tp)
                continue
            tp.offset = self._side_offset(paired.state)
        consumer.assign(partitions + side)
        self.metrics.assigned.set(len(self.owned))
        self.health.set_ready(True)
        self._log.info("assigned", partitions=numbers, resume={p: stored[p].offset for p in stored})

    def _refuse_commits_without_checkpoints(
        self, consumer: Consumer, partitions: list[TopicPartition], stored: dict[int, Any]
    ) -> None:
        """Checkpoints are written before every commit, so a committed offset without one means
        the checkpoint topic was lost: resuming with empty state would re-emit windows with
        other content. Stop and say so instead."""
        missing = [
            TopicPartition(tp.topic, tp.partition)
            for tp in partitions
            if tp.partition not in stored
        ]
        if not missing:
            return
        committed = consumer.committed(missing, timeout=30)
        orphaned = [tp.partition for tp in committed if tp.offset is not None and tp.offset >= 0]
        if orphaned:
            raise CheckpointError(
                f"{self.settings.source_topic} partitions {orphaned} have committed offsets for "
                f"group {self.settings.consumer_group!r} but no checkpoint in "
                f"{self.settings.checkpoint_topic!r}; resuming would change emitted rollups. "
                "Restore the checkpoint topic, or start a new consumer group."
            )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # A partition number once, whether its source or side partition (or both) is revoked.
        numbers = sorted({tp.partition for tp in partitions if tp.partition in self.owned})
        if numbers and not self._failed:
            self._commit(consumer, numbers, force=True)
        for p in numbers:
            del self.owned[p]
        self.metrics.assigned.set(len(self.owned))
        self._log.info("revoked", partitions=numbers)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Someone else may own them already: committing now could move their offsets.
        for tp in partitions:
            self.owned.pop(tp.partition, None)
        self.metrics.assigned.set(len(self.owned))
        self._log.warning("partitions lost", partitions=[tp.partition for tp in partitions])

    # -- main loop --------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        s = self.settings
        self._prepare_topics()
        m = self.metrics
        kafka = KafkaStatus(s.bootstrap_servers, self.health, m.kafka_reachable, m.produce_errors)
        self.producer = OutputProducer(producer_config(s.client_config()), kafka)
        consumer = Consumer(
            {
                **consumer_config(s.client_config(), s.consumer_group, s.session_timeout_ms),
                # Range gives partition N of the source and of the side topic to one member.
                "partition.assignment.strategy": "range",
                "error_cb": kafka.on_error,  # unreachable Kafka → not ready, with the reason
            }
        )
        self.consumer = consumer
        consumer.subscribe(
            [s.source_topic] + ([self.side_topic] if self.side_topic else []),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._log.info(
            "started", group=s.consumer_group, input=s.source_topic, output=s.rollup_topic
        )
        next_commit = time.monotonic() + self._commit_every
        try:
            while not stop.is_set():
                self.health.beat()
                messages = consumer.consume(self._batch_messages, timeout=0.1)
                kafka.after_consume(consumer, messages)
                if messages:
                    if not self._first_input_seen:
                        self._first_input_seen = True
                        self.metrics.first_input_time.set(time.time())
                    self._handle(messages, time.time())
                self.producer.poll()  # serve delivery reports promptly, input or not
                self._close_idle(consumer)
                if time.monotonic() >= next_commit:
                    self._commit(consumer, list(self.owned))
                    next_commit = time.monotonic() + self._commit_every
            self._commit(consumer, list(self.owned), force=True)
        except BaseException:
            # Outputs may be lost or half-made: the revoke that close() triggers must not
            # checkpoint past them. The next owner replays from the last good checkpoint.
            self._failed = True
            raise
        finally:
            consumer.close()
            try:
                if not self._failed:
                    self.producer.flush()
            finally:
                self.producer.close()
            self._log.info("stopped")

    def _handle(self, messages: list[Message], received_at: float) -> None:
        by_partition: dict[int, list[Message]] = defaultdict(list)
        side: dict[int, list[Message]] = defaultdict(list)
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    self._log.warning("consume error", error=str(err))
                continue
            partition = msg.partition()
            if partition is not None:
                if msg.topic() == self.side_topic:
                    side[partition].append(msg)
                else:
                    by_partition[partition].append(msg)
        self.metrics.messages.inc(len(messages))
        for partition, batch in side.items():
            owned = self.owned.get(partition)
            if owned is not None:
                first = self._side_offset(owned.state)
                batch = [m for m in batch if (m.offset() or 0) >= first]
                if batch:
                    owned.dirty = True
                    self._process_side(partition, owned, batch, received_at)
        for partition, batch in by_partition.items():
            owned = self.owned.get(partition)
            if owned is not None:
                batch = self._not_yet_processed(owned, batch)
                if batch:
                    self._note_replay_gap(partition, owned, batch)
                    owned.last_input_at = time.monotonic()
                    owned.received = True
                    owned.dirty = True
                    self._process_partition(partition, owned, batch, received_at)
        self.metrics.open_windows.set(self.open_windows)
        self.producer.poll()

    @staticmethod
    def _not_yet_processed(owned: OwnedPartition[StateT], batch: list[Message]) -> list[Message]:
        """Records re-delivered after a seek were processed already: drop them."""
        first = batch[0].offset()
        if first is not None and first < owned.state.next_offset:
            return [m for m in batch if (m.offset() or 0) >= owned.state.next_offset]
        return batch

    def _note_replay_gap(
        self, partition: int, owned: OwnedPartition[StateT], batch: list[Message]
    ) -> None:
        if owned.resume_from < 0:
            return
        first = batch[0].offset() or 0
        if first > owned.resume_from:
            # Retention deleted input the checkpoint still needed: windows will be short.
            self.metrics.replay_gaps.inc()
            self._log.error(
                "input needed for replay is gone",
                partition=partition,
                needed_from=owned.resume_from,
                first_available=first,
            )
        owned.resume_from = -1

    @property
    def failed(self) -> bool:
        """run() stopped on an error (nothing was committed after it)."""
        return self._failed

    @property
    def open_windows(self) -> int:
        return sum(o.state.open_windows for o in self.owned.values())

    def _emit(self, rollups: list[Rollup], closed_at: float | None = None) -> None:
        """Produce rollups; closed_at (time.time()) is when the input that closed them arrived."""
        topic = self.settings.rollup_topic
        closed_at = time.time() if closed_at is None else closed_at
        metrics = self.metrics

        def delivered() -> None:
            self.delivered += 1
            now = time.time()
            metrics.rollups_delivered.inc()
            metrics.last_delivery_time.set(now)
            metrics.emission_delay.observe(now - closed_at)

        for rollup in rollups:
            self.producer.produce(
                topic,
                rollup.encode(),
                rollup.key.encode(),
                partition=self.rollup_owner(rollup.routing_key.encode()),
                on_delivered=delivered,
            )
        self.emitted += len(rollups)
        self.samples_emitted += sum(r.count for r in rollups)
        if rollups:
            self.metrics.rollups.labels(format_duration(self.settings.resolution)).inc(len(rollups))

    def _dead_letter(self, partition: int, rejects: list[Reject]) -> None:
        """Produce dead letters for refused input of `partition`, counted by reason."""
        topic = self.settings.source_topic
        for key, value in reject_records(topic, partition, rejects, self.stage_name):
            self.producer.produce(self.settings.deadletter_topic, value, key)
        for r in rejects:
            self.metrics.deadletter.labels(r.reason.value).inc(r.samples)

    # -- idle partitions and commits --------------------------------------------------------

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

    def _write_checkpoint(self, partition: int, owned: OwnedPartition[StateT]) -> Checkpoint:
        checkpoint = owned.state.checkpoint()
        self._checkpoint_extra(partition, checkpoint)
        self.checkpoints.write(self.producer, checkpoint)
        return checkpoint

    def _commit(self, consumer: Consumer, partitions: list[int], force: bool = False) -> None:
        started = time.perf_counter()
        # Every tick, committing or not: lags move while nothing is dirty, windows close idle.
        truth = stage_self_metrics(self.metrics.registry)
        marks = {p: o.state.watermark for p, o in self.owned.items()}
        truth.refresh(consumer, self.settings.source_topic, marks)
        watermarks = [w for w in marks.values() if w > 0]  # partitions without data have none
        if watermarks:
            self.metrics.watermark_lag.set(time.time() - min(watermarks) / 1000.0)
        self.metrics.open_windows.set(self.open_windows)
        todo = [p for p in partitions if p in self.owned and (force or self.owned[p].dirty)]
        if not todo or self._failed:
            return
        self.producer.flush()  # outputs first: a checkpoint must never get ahead of them
        topic = self.settings.source_topic
        offsets: list[TopicPartition] = []
        for p in todo:
            checkpoint = self._write_checkpoint(p, self.owned[p])
            offsets.append(TopicPartition(topic, p, checkpoint.offset))
            if self.side_topic is not None:
                # Where the checkpoint resumes the side stream (lag monitoring only, like the
                # source's committed offset: the checkpoint is what a new owner trusts).
                side_offset = self._side_offset_of(checkpoint)
                offsets.append(TopicPartition(self.side_topic, p, side_offset))
        self.producer.flush()
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
            truth.checkpointed()
        except Exception as exc:
            self._log.warning("offset commit failed", error=str(exc))
        lag = 0
        for tp in offsets:
            if tp.topic != topic:
                continue
            owned = self.owned[tp.partition]
            owned.dirty = False
            lag += owned.state.next_offset - tp.offset
        self.metrics.commit_lag.set(lag)
        self.metrics.flush_duration.observe(time.perf_counter() - started)
