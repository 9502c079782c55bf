"""Committing offsets that a process has finished with, and the lag that is left.

For the consumers whose outputs are idempotent (sinks, the alert bridge): a failed commit is
only logged, because what it would have covered is processed again after a restart or a
rebalance, and processing it twice is harmless.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from confluent_kafka import Consumer, KafkaException, TopicPartition

log = structlog.get_logger("commits")

PartitionKey = tuple[str, int]


def commit(
    consumer: Consumer, offsets: list[TopicPartition], committed: dict[PartitionKey, int]
) -> bool:
    """Commit synchronously and record what was committed in `committed`."""
    if not offsets:
        return False
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
    except KafkaException as exc:
        log.warning("offset commit failed", error=str(exc))
        return False
    for tp in offsets:
        committed[(tp.topic, tp.partition)] = tp.offset
    return True


def commit_lag(
    consumer: Consumer, committed: dict[PartitionKey, int], partitions: Iterable[PartitionKey]
) -> int:
    """Records between each partition's committed offset and its end (fetch high watermark)."""
    lag = 0
    for key in partitions:
        offset = committed.get(key)
        if offset is None:
            continue
        _, high = consumer.get_watermark_offsets(TopicPartition(*key), cached=True)
        if high is not None and high > offset:
            lag += high - offset
    return lag
