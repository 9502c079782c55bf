"""What a `GroupConsumer` (kafka/consumer.py) drives: the two kinds of handler and their answers.

A `BatchHandler` (sinks, the alert bridge) takes records, finishes them in batches and reports
the offsets a batch finished; its output is idempotent, so a batch lost to a rebalance is simply
read again. A `PartitionHandler` (the windowed stages) keeps replayable state per input
partition: it says where each assigned partition starts (its checkpoint), processes one
partition's records at a time, writes checkpoints once the outputs they cover are acknowledged
and names the offsets to commit, and forgets a partition that is taken away. Neither consumes,
assigns or commits: that is the consumer's, in one loop for both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import Consumer, Message, TopicPartition
from prometheus_client import Gauge

from pipeline.kafka.commits import PartitionKey


@dataclass(frozen=True, slots=True)
class Done:
    """The batch is finished: commit `offsets` (per partition, the next offset to read)."""

    offsets: Mapping[PartitionKey, int]


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """The batch cannot be flushed now; keep it and try again after `seconds` (None: after the
    consumer's own back-off, which grows with every failure in a row)."""

    seconds: float | None = None


class BatchHandler(Protocol):
    """What a `GroupConsumer` drives for batch consumers. Called from its thread only."""

    def room(self) -> int:
        """How many records `add` may take now (at least 1)."""
        ...

    def add(self, messages: list[Message]) -> None:
        """Records consumed in partition order, without consume errors."""
        ...

    def pending(self) -> bool:
        """Whether a batch waits to be flushed (and committed)."""
        ...

    def due(self) -> bool:
        """Whether to flush the batch now."""
        ...

    def flush(self) -> Done | RetryAfter: ...

    def drop(self, partitions: set[PartitionKey]) -> None:
        """Forget what the batch holds of these partitions: a rebalance took them away."""
        ...

    def tick(self) -> None:
        """Called once a loop while the handler is not waiting to retry (timers, producer poll)."""
        ...


#: Committed offsets of the group for some partitions (those with none are absent).
CommittedLookup = Callable[[list[PartitionKey]], dict[PartitionKey, int]]


class PartitionHandler(Protocol):
    """What a `GroupConsumer` drives for stages with replayable per-partition state. Called from
    its thread only. The `Consumer` some calls receive is for lookups (partition ends,
    positions) and for pausing the handler's own partitions; never to consume or commit."""

    def room(self) -> int:
        """How many records one consume may return now (at least 1)."""
        ...

    def assign(
        self, partitions: list[PartitionKey], committed: CommittedLookup
    ) -> list[tuple[PartitionKey, int | None]]:
        """Take over `partitions` (restored from their checkpoints): the partitions to read, in
        order, each with the offset to start from (None: the group's committed offset). Raises
        to refuse them (e.g. committed offsets without checkpoints)."""
        ...

    def process(
        self,
        consumer: Consumer,
        batches: Mapping[PartitionKey, list[Message]],
        consumed: int,
        received_at: float,
    ) -> None:
        """One consume's records by partition, each in offset order (`consumed`: how many
        records and events the consume returned; received_at: time.time() of the consume)."""
        ...

    def tick(self, consumer: Consumer) -> None:
        """Once a loop turn: serve delivery reports, advance idle partitions' clocks (asking
        the broker for a partition's end with `broker_end` before moving one)."""
        ...

    def checkpoint(
        self, consumer: Consumer, partitions: list[int] | None, force: bool
    ) -> list[TopicPartition]:
        """Write the checkpoints of `partitions` (None: all owned; only changed ones unless
        `force`) once every output they cover is acknowledged; the offsets to commit (empty:
        nothing to commit)."""
        ...

    def committed(self, offsets: list[TopicPartition], ok: bool) -> None:
        """The commit of what `checkpoint` returned happened (`ok`) or failed (logged)."""
        ...

    def drop(self, partitions: list[PartitionKey], lost: bool) -> None:
        """Forget these partitions' state: revoked (after a last forced checkpoint) or lost
        (someone else may own them already)."""
        ...


class GroupSettings(Protocol):
    """The settings a group member reads (every consumer process's settings have them)."""

    group_id: str
    session_timeout_ms: int
    create_topics: bool
    topic_partitions: int

    def client_config(self) -> dict[str, str]: ...


class ConsumerMetrics(Protocol):
    """The gauges a batch group member keeps (each process names them in its own family)."""

    assigned: Gauge
    paused: Gauge
    commit_lag: Gauge
