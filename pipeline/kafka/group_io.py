"""The group consumer's small dealings with Kafka: topics checked, records sorted out of what a
consume returned, and the lookups a handler or the consumer makes (partition ends, committed
offsets)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from pipeline.kafka.admin import TopicSpec, ensure_present
from pipeline.kafka.clients import Connection
from pipeline.kafka.commits import PartitionKey
from pipeline.kafka.handlers import CommittedLookup


def prepare_topics(
    connection: Connection, topics: Sequence[str], partitions: int, create: bool
) -> dict[str, int]:
    """Check (or create, with `partitions`) the topics a process reads and writes; their
    partition counts. Inputs belong here too: a consumer often starts before the stage that
    writes its topic, and librdkafka would notice a topic created later only at its next
    metadata refresh (5 min)."""
    return ensure_present(connection, [TopicSpec(t, partitions) for t in topics], create)


def readable(messages: list[Message], log: Any) -> list[Message]:
    """The records among what `consume` returned. Consume errors are logged and left out;
    end-of-partition events silently (news, not trouble)."""
    records = [m for m in messages if m.error() is None]
    if len(records) != len(messages):
        for msg in messages:
            err = msg.error()
            if err is not None and err.code() != KafkaError._PARTITION_EOF:
                log.warning("consume error", error=str(err))
    return records


def by_partition(messages: list[Message], log: Any = None) -> dict[PartitionKey, list[Message]]:
    """The records among what `consume` returned, grouped by partition, each group in the order
    consumed (offset order). One pass: this runs once per record on the stages' hot path.
    Consume errors are left out (logged, as `readable` does, when `log` is given)."""
    batches: dict[PartitionKey, list[Message]] = defaultdict(list)
    for msg in messages:
        err = msg.error()
        if err is not None:
            if log is not None and err.code() != KafkaError._PARTITION_EOF:
                log.warning("consume error", error=str(err))
            continue
        topic, partition = msg.topic(), msg.partition()
        if topic is not None and partition is not None:
            batches[(topic, partition)].append(msg)
    return batches


def broker_end(consumer: Consumer, tp: TopicPartition, timeout: float = 2.0) -> int | None:
    """The partition's end as the broker says now (not the fetch cache); None if it cannot be
    asked."""
    try:
        _, high = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
    except KafkaException:
        return None
    return int(high)


def committed_lookup(consumer: Consumer) -> CommittedLookup:
    """The group's committed offsets for some partitions, asked of the broker when called."""

    def lookup(keys: list[PartitionKey]) -> dict[PartitionKey, int]:
        asked = [TopicPartition(topic, partition) for topic, partition in keys]
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in consumer.committed(asked, timeout=30)
            if tp.offset is not None
        }

    return lookup
