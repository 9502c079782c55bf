"""librdkafka client settings, a producer wrapper that makes delivery failures loud, and what
the clients' error callbacks say about Kafka's reachability (for /readyz and exit messages)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

from confluent_kafka import KafkaError, Message, Producer

from pipeline.errors import PipelineError
from pipeline.kafka.logs import librdkafka_logger
from pipeline.observability import Health

# Client errors that mean Kafka cannot be reached (as opposed to one request failing).
_UNREACHABLE: dict[int, str] = {
    KafkaError._ALL_BROKERS_DOWN: "all brokers down",
    KafkaError._TRANSPORT: "connection failed",
    KafkaError._AUTHENTICATION: "authentication failed",
    KafkaError._SSL: "TLS failure",
    KafkaError._RESOLVE: "broker address not resolved",
}
_PROBE_EVERY = 2.0  # seconds between metadata probes while Kafka is unreachable


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
    connection: Connection, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Every producer's settings (the stages', the load generator's, the tests'): the pipeline's
    defaults; the connection's settings win over them and `extra` over both."""
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
        # librdkafka backs off up to 10 s between reconnects by default: a broker back after a
        # short restart would wait that long for traffic to resume.
        "reconnect.backoff.max.ms": 1000,
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
        # A fetch round brings at most this much of each partition, so the partitions of a
        # backlog reach the local queue interleaved: none reads far ahead in event time of the
        # slowest one, whose watermark closes the windows. With 8 MiB a catch-up read one
        # partition's whole backlog before the next, held every window open until the last
        # partition caught up, then closed them all in one burst (seconds of emission delay).
        "max.partition.fetch.bytes": 262_144,
        "queued.min.messages": 200_000,
        # Tansu holds a fetch that includes an empty partition for the full wait.
        "fetch.wait.max.ms": 25,
        "reconnect.backoff.max.ms": 1000,
        **client_config(connection),
        "group.id": group_id,
        **(extra or {}),
    }


class _Gauge(Protocol):
    def set(self, value: float) -> None: ...


class _Counter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class _MetadataClient(Protocol):
    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...


class KafkaStatus:
    """Whether Kafka answers, from the clients' error callbacks (`on_error` is their error_cb)
    and from what succeeds: a delivery, a fetch, a metadata request.

    While Kafka is unreachable, or an output was refused, `health` is not ready and its reason
    names the cluster and the cause; `reachable_gauge` is 0."""

    def __init__(
        self,
        bootstrap_servers: str,
        health: Health | None = None,
        reachable_gauge: _Gauge | None = None,
        failures: _Counter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self._health = health
        self._gauge = reachable_gauge
        self._failures = failures
        self._clock = clock
        self.down_since: float | None = None
        self.cause = ""
        self._last_probe = 0.0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def describe(self) -> str:
        """ "Kafka at <servers> unreachable for <n> s: <cause>" (or that it answers)."""
        if self.down_since is None:
            return f"Kafka at {self.bootstrap_servers} answers"
        seconds = self._clock() - self.down_since
        return f"Kafka at {self.bootstrap_servers} unreachable for {seconds:.0f} s: {self.cause}"

    def on_error(self, err: KafkaError) -> None:
        """librdkafka's error_cb (runs inside poll/consume/flush of the client)."""
        what = _UNREACHABLE.get(err.code())
        if what is None and not err.fatal():
            return  # a single request's trouble: retried by the client
        self.cause = f"{what or 'fatal client error'} ({err.str()})"
        if self.down_since is None:
            self.down_since = self._clock()
            if self._gauge is not None:
                self._gauge.set(0)
            if self._health is not None:
                self._health.set_problem("kafka", self.describe)

    def delivery_failed(self, detail: str) -> None:
        if self._failures is not None:
            self._failures.inc()
        if self._health is not None:
            self._health.set_problem("output", lambda: f"output not delivered: {detail}")

    def reachable(self) -> None:
        """Something just succeeded against Kafka: it answers again."""
        if self.down_since is None:
            return
        self.down_since = None
        if self._gauge is not None:
            self._gauge.set(1)
        if self._health is not None:
            self._health.clear_problem("kafka")

    def after_consume(self, client: _MetadataClient, messages: list[Message]) -> None:
        """Records without an error prove the cluster answers; while it is unreachable and
        nothing arrives, ask it for metadata now and then (a short, bounded wait)."""
        if self.down_since is None:
            return
        if any(m.error() is None for m in messages):
            self.reachable()
            return
        now = self._clock()
        if now - self._last_probe < _PROBE_EVERY:
            return
        self._last_probe = now
        try:
            client.list_topics(timeout=1.0)
        except Exception:  # KafkaException while it is down: still unreachable
            return
        self.reachable()


class OutputProducer:
    """A Producer whose failed deliveries surface at `flush()` as a DeliveryError."""

    def __init__(self, config: dict[str, Any], status: KafkaStatus | None = None) -> None:
        self.status = status or KafkaStatus(str(config.get("bootstrap.servers", "?")))
        self._producer = Producer({**config, "error_cb": self.status.on_error})
        self._failures: list[str] = []

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.status.reachable()
            return
        failure = f"{msg.topic()}[{msg.partition()}]: {err}"
        self._failures.append(failure)
        self.status.delivery_failed(failure)

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        timestamp: int | None = None,
        on_delivered: Callable[[], None] | None = None,
        on_offset: Callable[[int], None] | None = None,
    ) -> None:
        """Queue a record. on_delivered runs (on a later poll/flush) once the broker acked it;
        on_offset too, with the offset the record got."""
        callback = self._on_delivery
        if on_delivered is not None or on_offset is not None:

            def callback(err: KafkaError | None, msg: Message) -> None:
                if err is None:
                    if on_delivered is not None:
                        on_delivered()
                    if on_offset is not None:
                        on_offset(cast(int, msg.offset()))
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
            why = f"{self.status.describe()}; " if self.status.down else ""
            raise DeliveryError(f"{why}{remaining} records still undelivered after {timeout:.0f} s")
        if self._failures:
            # Sticky: once an output is lost, nothing may be committed past it by this process.
            raise DeliveryError(
                f"{len(self._failures)} deliveries failed, first: {self._failures[0]}"
            )
