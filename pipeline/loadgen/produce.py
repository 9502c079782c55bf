"""Send generated messages to Kafka (the load generator's only Kafka code)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Producer

from pipeline.errors import PipelineError
from pipeline.kafka.clients import Connection, producer_config
from pipeline.loadgen.partitioning import PartitionerChoice, partitioner_choice
from pipeline.loadgen.spec import Message

__all__ = ["LOAD_PRODUCER", "ProduceError", "ProduceStats", "produce"]


class ProduceError(PipelineError):
    """Some messages were not delivered."""


@dataclass(frozen=True)
class ProduceStats:
    """messages and bytes (values only) delivered, wall time in seconds."""

    messages: int
    bytes: int
    seconds: float

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


#: What load generation changes in the pipeline's producer settings (kafka/clients.py:
#: producer_config); `produce` applies them, then its `partitioner` and `config`.
LOAD_PRODUCER: dict[str, Any] = {
    # The default, Java-compatible murmur2 puts every record on the partition that owns its
    # series (no forwarding), which is what the worker benchmarks measure;
    # `metrics-pipeline load --partitioner` imitates other clients.
    "partitioner": "murmur2_random",
    "batch.num.messages": 100_000,
    "batch.size": 1_048_576,
    "queue.buffering.max.messages": 500_000,
    # Room for the oversize test messages (> 1 MiB); a real broker also needs the topic's
    # max.message.bytes raised to let them in.
    "message.max.bytes": 4 * 1_048_576,
    # Delivery callbacks only for failures: one Python call per message less.
    "delivery.report.only.error": True,
}


def produce(
    bootstrap_servers: Connection,
    topic: str,
    messages: Iterable[Message],
    *,
    progress: Callable[[int], None] | None = None,
    progress_every: int = 100_000,
    config: Mapping[str, Any] | None = None,
    flush_timeout_s: float = 300.0,
    partitioner: PartitionerChoice | str = "murmur2_random",
) -> ProduceStats:
    """Produce `messages` in order with their keys and timestamps; wait until all are delivered.

    `progress(n)` is called after every `progress_every` messages handed to the client (n = count
    so far). `config` entries (librdkafka names) override LOAD_PRODUCER. `partitioner` is a
    `PARTITIONERS` name or choice; one that is not keyed drops every key. Raises ProduceError if
    any message failed or was still undelivered after `flush_timeout_s` seconds.
    """
    choice = partitioner_choice(partitioner) if isinstance(partitioner, str) else partitioner
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(err)

    conf = producer_config(
        bootstrap_servers, {**LOAD_PRODUCER, "partitioner": choice.librdkafka, **(config or {})}
    )
    conf["on_delivery"] = on_delivery
    producer = Producer(conf)
    send = producer.produce
    keyed = choice.keyed
    count = size = 0
    started = time.perf_counter()
    for key, value, timestamp_ms in messages:
        while True:
            try:
                send(topic, value, key if keyed else None, timestamp=timestamp_ms)
                break
            except BufferError:  # local queue full: let librdkafka send, then retry
                producer.poll(0.05)
        count += 1
        size += len(value)
        if count % 1_000 == 0:
            producer.poll(0)
        if progress is not None and count % progress_every == 0:
            progress(count)
    remaining = producer.flush(flush_timeout_s)
    seconds = time.perf_counter() - started
    if remaining:
        raise ProduceError(f"{remaining} of {count} messages undelivered after {flush_timeout_s} s")
    if errors:
        raise ProduceError(f"{len(errors)} of {count} messages failed; first error: {errors[0]}")
    if progress is not None and count % progress_every:
        progress(count)
    return ProduceStats(count, size, seconds)
