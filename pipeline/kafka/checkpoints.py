"""Checkpoint records on a keyed topic: one record per input partition per commit.

Checkpoint partition = input partition modulo the checkpoint topic's partition count; the key
names the consumer group, input topic and partition, so several stages can share one topic. On
assignment the new owner reads its checkpoint partition to the end (found with partition-EOF
events, which carry the fetch high watermark — Tansu's ListOffsets "latest" is unreliable) and
keeps the last record for its key. With `cleanup.policy=compact` on a real Kafka the topic stays
small; Tansu does not compact, so there it grows with the number of commits.
"""

from __future__ import annotations

from collections.abc import Container, Iterable

from pipeline.core.checkpoint import Checkpoint
from pipeline.errors import CheckpointError
from pipeline.kafka.clients import Connection, OutputProducer
from pipeline.kafka.commits import PartitionKey
from pipeline.kafka.reader import ReadError, read_to_end


def checkpoint_key(group_id: str, topic: str, partition: int) -> bytes:
    return f"{group_id}|{topic}|{partition}".encode()


class CheckpointStore:
    def __init__(
        self,
        bootstrap_servers: Connection,
        topic: str,
        group_id: str,
        partitions: int,
        extra_config: dict[str, str] | None = None,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self.topic = topic
        self.group_id = group_id
        self.partitions = partitions
        self._extra = extra_config or {}

    def _partition_of(self, input_partition: int) -> int:
        return input_partition % self.partitions

    def write(self, producer: OutputProducer, checkpoint: Checkpoint) -> None:
        """Queue a checkpoint record; the caller flushes (which raises if it was refused)
        before committing offsets."""
        producer.produce(
            self.topic,
            checkpoint.encode(),
            checkpoint_key(self.group_id, checkpoint.topic, checkpoint.partition),
            partition=self._partition_of(checkpoint.partition),
        )

    def read_latest(
        self, input_topic: str, input_partitions: Iterable[int], timeout: float = 30.0
    ) -> dict[int, Checkpoint]:
        """The newest checkpoint per input partition (partitions without one are absent)."""
        wanted = {checkpoint_key(self.group_id, input_topic, p): p for p in input_partitions}
        if not wanted:
            return {}
        to_read = {self._partition_of(p) for p in wanted.values()}
        latest: dict[int, Checkpoint] = {}
        try:
            for msg in read_to_end(self._bootstrap, self.topic, to_read, self._extra, timeout):
                partition = wanted.get(msg.key() or b"")
                if partition is not None:
                    latest[partition] = Checkpoint.decode(msg.value() or b"")
        except ReadError as exc:
            raise CheckpointError(f"reading checkpoints: {exc}") from exc
        return latest


def refuse_without_checkpoints(
    topic: str,
    committed: dict[PartitionKey, int],
    stored: Container[int],
    group_id: str,
    checkpoint_topic: str,
) -> None:
    """Checkpoints are written before every commit, so a committed offset without one means
    the checkpoint topic was lost: resuming with empty state would re-emit windows with other
    content. Stop and say so instead (`committed`: the group's offsets of `topic`'s partitions
    without a checkpoint; `stored`: the partitions with one)."""
    orphaned = [p for (_, p), offset in committed.items() if offset >= 0 and p not in stored]
    if orphaned:
        raise CheckpointError(
            f"{topic} partitions {orphaned} have committed offsets for group {group_id!r} but "
            f"no checkpoint in {checkpoint_topic!r}; resuming would change emitted rollups. "
            "Restore the checkpoint topic, or start a new consumer group."
        )
