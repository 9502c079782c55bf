"""Read whole partitions to their current end, without joining a consumer group.

The end is where the broker reports end-of-partition after a fetch, which carries the true high
watermark (Tansu's ListOffsets "latest" is wrong).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from pipeline.errors import PipelineError
from pipeline.kafka.clients import Connection, client_config


class ReadError(PipelineError):
    """A topic could not be read to its end."""


def read_to_end(
    bootstrap_servers: Connection,
    topic: str,
    partitions: Iterable[int],
    extra_config: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Iterator[Message]:
    """Every record of the given partitions, from the beginning to the end as of now."""
    wanted = sorted(set(partitions))
    if not wanted:
        return
    consumer = Consumer(
        {
            **client_config(bootstrap_servers),
            "group.id": f"metrics-pipeline-reader-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,
            **(extra_config or {}),
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in wanted])
        remaining = set(wanted)
        deadline = time.monotonic() + timeout
        while remaining:
            if time.monotonic() > deadline:
                raise ReadError(
                    f"could not read {topic!r} partitions {sorted(remaining)} to their end "
                    f"within {timeout:.0f} s"
                )
            for msg in consumer.consume(num_messages=10_000, timeout=0.2):
                err = msg.error()
                if err is None:
                    yield msg
                elif err.code() == KafkaError._PARTITION_EOF:
                    remaining.discard(msg.partition())
                elif not (err.retriable() or err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
                    raise ReadError(f"reading {topic!r}: {err}")
    finally:
        consumer.close()
