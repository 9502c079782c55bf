"""librdkafka client settings and a producer wrapper that makes delivery failures loud."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from pipeline.errors import PipelineError
from pipeline.kafka.logs import librdkafka_logger


class DeliveryError(PipelineError):
    """Kafka did not accept an output record; the batch must not be committed."""


#: Where a client connects and how: a bare bootstrap address, or a process's whole client
#: configuration (CommonSettings.client_config(): bootstrap, kafka_config, secrets from files).
Connection = str | Mapping[str, str]


def client_config(connection: Connection) -> dict[str, Any]:
    """What every producer, consumer and admin client of the pipeline starts from: the
    connection's settings, with librdkafka's log lines routed through structlog (rate-limited)."""
    base: dict[str, Any] = (
        {"bootstrap.servers": connection} if isinstance(connection, str) else dict(connection)
    )
    base["logger"] = librdkafka_logger()
    # Idle connections are closed by brokers routinely; not worth a log line each time.
    base.setdefault("log.connection.close", False)
    return base


def admin_config(connection: Connection) -> dict[str, Any]:
    return client_config(connection)


def producer_config(
    connection: Connection, extra: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The pipeline's producer defaults; the connection's settings and `extra` win over them."""
    return {
        "acks": "all",
        # Idempotence keeps per-partition order across retries: forwarded input relies on it.
        "enable.idempotence": True,
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "batch.size": 1_000_000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "message.max.bytes": 8_388_608,
        **client_config(connection),
        **(extra or {}),
    }


def consumer_config(
    connection: Connection,
    group_id: str,
    session_timeout_ms: int,
    extra: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The pipeline's consumer defaults; the connection's settings and `extra` win over them."""
    return {
        # Offsets are committed by hand, only up to what open windows no longer need.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": max(500, session_timeout_ms // 5),
        # Longer than any blocking step (flushes, checkpoint reads): an evicted member must not
        # keep writing checkpoints for partitions that moved on.
        "max.poll.interval.ms": max(300_000, session_timeout_ms),
        "fetch.max.bytes": 52_428_800,
        "max.partition.fetch.bytes": 8_388_608,
        "queued.min.messages": 200_000,
        # Tansu holds a fetch that includes an empty partition for the full wait.
        "fetch.wait.max.ms": 25,
        **client_config(connection),
        "group.id": group_id,
        **(extra or {}),
    }


class OutputProducer:
    """A Producer whose failed deliveries surface at `flush()` as a DeliveryError."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._producer = Producer(config)
        self._failures: list[str] = []

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failures.append(f"{msg.topic()}[{msg.partition()}]: {err}")

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        timestamp: int | None = None,
        on_delivered: Callable[[], None] | None = None,
    ) -> None:
        """Queue a record. on_delivered runs (on a later poll/flush) once the broker acked it."""
        callback = self._on_delivery
        if on_delivered is not None:

            def callback(err: KafkaError | None, msg: Message) -> None:
                if err is None:
                    on_delivered()
                else:
                    self._on_delivery(err, msg)

        kwargs: dict[str, Any] = {"key": key, "on_delivery": callback}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        if timestamp is not None and timestamp > 0:
            kwargs["timestamp"] = timestamp
        while True:
            try:
                self._producer.produce(topic, value, **kwargs)
                return
            except BufferError:
                # Local queue full: serve delivery reports until there is room.
                self._producer.poll(0.05)

    def poll(self) -> None:
        self._producer.poll(0)

    def close(self) -> None:
        """Free the client (its connections and threads); the object is unusable afterwards.

        A dead worker is often kept alive by a traceback; its producer should not be."""
        del self._producer

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for every queued record; raise DeliveryError if any was refused or timed out."""
        remaining = self._producer.flush(timeout)
        if remaining:
            raise DeliveryError(f"{remaining} records still undelivered after {timeout:.0f} s")
        if self._failures:
            # Sticky: once an output is lost, nothing may be committed past it by this process.
            raise DeliveryError(
                f"{len(self._failures)} deliveries failed, first: {self._failures[0]}"
            )
