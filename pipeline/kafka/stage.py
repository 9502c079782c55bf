"""A windowed stage: the `PartitionHandler` shared by every stage, driven by `GroupConsumer`.

The rollup worker (raw samples → base rollups), the tier worker (rollups → coarser rollups) and
the detector differ only in what they do with a partition's records. Everything about time,
ownership and checkpoints is here, and is the same for all; consuming, assigning and committing
are the group consumer's (kafka/consumer.py), the same loop the sinks run (docs/architecture.md):

- each owned input partition has a state machine (`PartitionState`) restored from the partition's
  latest checkpoint, and is replayed from the checkpoint's offset;
- every `commit_interval`: flush outputs, write each partition's checkpoint, flush, commit;
- after an error nothing more is committed: the next owner replays from the last good checkpoint;
- the idle rule (kafka/idle.py): a partition that received nothing for `idle_timeout` (and has
  nothing waiting) records an advance in its checkpoint, then emits the windows the advance
  closes.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Generic

import structlog
from confluent_kafka import Consumer, Message, TopicPartition

from pipeline.core.checkpoint import Checkpoint
from pipeline.core.decode import Reject
from pipeline.core.durations import format_duration
from pipeline.core.keyed import KeyedOutput
from pipeline.errors import PipelineError
from pipeline.kafka.admin import TopicSpec, ensure_present
from pipeline.kafka.checkpoints import CheckpointStore, refuse_without_checkpoints
from pipeline.kafka.clients import KafkaStatus, OutputProducer, producer_config
from pipeline.kafka.commits import PartitionKey
from pipeline.kafka.consumer import GroupConsumer
from pipeline.kafka.deadletter import reject_records
from pipeline.kafka.handlers import CommittedLookup
from pipeline.kafka.idle import IdleRule
from pipeline.kafka.partition_state import OwnedPartition, PartitionState, StateT
from pipeline.kafka.partitioner import OwnerPartitions
from pipeline.observability import Health, StageMetrics
from pipeline.selfmetrics import stage_self_metrics
from pipeline.settings import StageSettings

__all__ = ["OwnedPartition", "PartitionState", "PartitionedStage"]

log = structlog.get_logger("stage")


class PartitionedStage(IdleRule[StateT], ABC, Generic[StateT]):
    stage_name = "stage"  # names the stage in logs and dead letters

    def __init__(
        self,
        settings: StageSettings,
        metrics: StageMetrics,
        health: Health | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.health = health or Health()
        self.owned: dict[int, OwnedPartition[StateT]] = {}
        self._first_input_seen = False
        self.emitted = 0  # outputs (rollups, anomaly events) produced by this process
        self.samples_emitted = 0  # ... and the samples they hold
        self.delivered = 0  # ... and acknowledged by Kafka
        self.group: GroupConsumer | None = None
        self._batch_messages = settings.batch_size
        self._idle_after = settings.idle_timeout / 1000
        self._commit_started = 0.0
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

    # -- set-up and the run -----------------------------------------------------------------

    def _prepare_topics(self) -> None:
        s = self.settings
        (n,) = ensure_present(
            s.client_config(), [TopicSpec(s.source_topic, s.topic_partitions)], s.create_topics
        ).values()
        self.input_partitions = n
        outputs = [
            TopicSpec(s.output_topic, n),
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
        self.rollup_owner = OwnerPartitions(counts[s.output_topic])
        self.checkpoints = CheckpointStore(
            s.client_config(), s.checkpoint_topic, s.consumer_group, counts[s.checkpoint_topic]
        )
        self._topics_ready(n)

    def run(self, stop: threading.Event) -> None:
        s = self.settings
        self._prepare_topics()
        m = self.metrics
        kafka = KafkaStatus(s.bootstrap_servers, self.health, m.kafka_reachable, m.produce_errors)
        self.producer = OutputProducer(producer_config(s.client_config()), kafka)
        self.group = GroupConsumer.for_partitions(
            s,
            [s.source_topic] + ([self.side_topic] if self.side_topic else []),
            self,
            group_id=s.consumer_group,
            commit_every=s.commit_interval / 1000,
            health=self.health,
            status=kafka,
            # Range gives partition N of the source and of the side topic to one member.
            consumer_extra={"partition.assignment.strategy": "range"},
            name=self.stage_name,
        )
        self._log.info(
            "started", group=s.consumer_group, input=s.source_topic, output=s.output_topic
        )
        try:
            self.group.run(stop)
        finally:
            try:
                if not self.failed:
                    self.producer.flush()
            finally:
                self.producer.close()
            self._log.info("stopped")

    @property
    def failed(self) -> bool:
        """run() stopped on an error (nothing was committed after it)."""
        return self.group is not None and self.group.failed

    @property
    def open_windows(self) -> int:
        return sum(o.state.open_windows for o in self.owned.values())

    # -- the partition handler (kafka/handlers.py:PartitionHandler) -------------------------

    def room(self) -> int:
        return self._batch_messages

    def assign(
        self, partitions: list[PartitionKey], committed: CommittedLookup
    ) -> list[tuple[PartitionKey, int | None]]:
        topic = self.settings.source_topic
        numbers = [p for t, p in partitions if t == topic]
        stored = self.checkpoints.read_latest(topic, numbers)
        missing = [(topic, p) for p in numbers if p not in stored]
        if missing:
            refuse_without_checkpoints(
                topic,
                committed(missing),
                stored,
                self.settings.consumer_group,
                self.settings.checkpoint_topic,
            )
        starts: list[tuple[PartitionKey, int | None]] = []
        for p in numbers:
            state = self._new_state(p)
            checkpoint = stored.get(p)
            if checkpoint is not None:
                state.restore(checkpoint)
            self._restore_extra(p, checkpoint)
            owned = OwnedPartition(state)
            owned.resume_from = -1 if checkpoint is None else checkpoint.offset
            self.owned[p] = owned
            starts.append(((topic, p), None if checkpoint is None else checkpoint.offset))
        for t, p in partitions:
            if t != self.side_topic:
                continue
            paired = self.owned.get(p)
            if paired is None:
                # Only a non-range assignment strategy can split a pair: its records wait.
                self._log.error("side partition without its input partition", partition=(t, p))
                starts.append(((t, p), None))
            else:
                starts.append(((t, p), self._side_offset(paired.state)))
        self.metrics.assigned.set(len(self.owned))
        self._log.info("assigned", partitions=numbers, resume={p: stored[p].offset for p in stored})
        return starts

    def drop(self, partitions: list[PartitionKey], lost: bool) -> None:
        # A partition number once, whether its source or side partition (or both) goes.
        numbers = sorted({p for _, p in partitions if p in self.owned})
        for p in numbers:
            del self.owned[p]
        self.metrics.assigned.set(len(self.owned))
        if lost:
            self._log.warning("partitions lost", partitions=[p for _, p in partitions])
        else:
            self._log.info("revoked", partitions=numbers)

    def process(
        self,
        consumer: Consumer,
        batches: Mapping[PartitionKey, list[Message]],
        consumed: int,
        received_at: float,
    ) -> None:
        if not self._first_input_seen:
            self._first_input_seen = True
            self.metrics.first_input_time.set(time.time())
        self.metrics.messages.inc(consumed)
        # The side topic first: what other partitions forwarded and their watermarks.
        for (topic, partition), batch in batches.items():
            owned = self.owned.get(partition)
            if topic == self.side_topic and owned is not None:
                first = self._side_offset(owned.state)
                batch = [m for m in batch if (m.offset() or 0) >= first]
                if batch:
                    owned.dirty = True
                    self._process_side(partition, owned, batch, received_at)
        for (topic, partition), batch in batches.items():
            owned = self.owned.get(partition)
            if topic != self.side_topic and owned is not None:
                batch = owned.not_yet_processed(batch)
                if batch:
                    needed_from = owned.replay_gap(batch)
                    if needed_from is not None:
                        # Retention deleted input the checkpoint still needed: windows will be
                        # short.
                        self.metrics.replay_gaps.inc()
                        self._log.error(
                            "input needed for replay is gone",
                            partition=partition,
                            needed_from=needed_from,
                            first_available=batch[0].offset() or 0,
                        )
                    owned.last_input_at = time.monotonic()
                    owned.received = True
                    owned.dirty = True
                    self._process_partition(partition, owned, batch, received_at)
        self.metrics.open_windows.set(self.open_windows)
        self.producer.poll()

    def tick(self, consumer: Consumer) -> None:
        self.producer.poll()  # serve delivery reports promptly, input or not
        self._close_idle(consumer)

    # -- outputs ----------------------------------------------------------------------------

    def _emit(self, outputs: Sequence[KeyedOutput], closed_at: float | None = None) -> None:
        """Produce outputs; closed_at (time.time()) is when the input that closed them arrived."""
        topic = self.settings.output_topic
        closed_at = time.time() if closed_at is None else closed_at
        metrics = self.metrics

        def delivered() -> None:
            self.delivered += 1
            now = time.time()
            metrics.delivered.inc()
            metrics.last_delivery_time.set(now)
            metrics.emission_delay.observe(now - closed_at)

        for output in outputs:
            self.producer.produce(
                topic,
                output.encode(),
                output.key.encode(),
                partition=self.rollup_owner(output.routing_key.encode()),
                on_delivered=delivered,
            )
        self.emitted += len(outputs)
        self.samples_emitted += sum(r.count for r in outputs)
        if outputs:
            self.metrics.count_emitted(outputs, format_duration(self.settings.resolution))

    def _dead_letter(self, partition: int, rejects: list[Reject]) -> None:
        """Produce dead letters for refused input of `partition`, counted by reason."""
        topic = self.settings.source_topic
        for key, value in reject_records(topic, partition, rejects, self.stage_name):
            self.producer.produce(self.settings.deadletter_topic, value, key)
        for r in rejects:
            self.metrics.deadletter.labels(r.reason.value).inc(r.samples)

    # -- checkpoints ------------------------------------------------------------------------

    def _write_checkpoint(self, partition: int, owned: OwnedPartition[StateT]) -> Checkpoint:
        checkpoint = owned.state.checkpoint()
        self._checkpoint_extra(partition, checkpoint)
        self.checkpoints.write(self.producer, checkpoint)
        return checkpoint

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
        if not todo:
            return []
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
        return offsets

    def committed(self, offsets: list[TopicPartition], ok: bool) -> None:
        if ok:
            stage_self_metrics(self.metrics.registry).checkpointed()
        topic = self.settings.source_topic
        lag = 0
        for tp in offsets:
            if tp.topic != topic:
                continue
            owned = self.owned[tp.partition]
            owned.dirty = False
            lag += owned.state.next_offset - tp.offset
        self.metrics.commit_lag.set(lag)
        self.metrics.flush_duration.observe(time.perf_counter() - self._commit_started)
