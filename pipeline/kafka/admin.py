"""Topic administration and partition ends that work on Kafka and on the Tansu test broker.

Two Tansu behaviours shape this module (measured on Tansu 0.6.0):

* A metadata request that *names* a topic auto-creates it (with Tansu's default partition count),
  so existence checks here always list all topics and look the name up.
* ListOffsets "latest" returns the first offset of the partition's last record batch + 1, not
  the end. ``high_watermarks`` therefore reads the end from a *fetch* response: it assigns a
  consumer at the logical end, consumes until every partition reports end-of-partition, then
  reads ``get_watermark_offsets(tp, cached=True)``, which librdkafka fills from fetch responses.
  Starting at the (wrong) "latest" offset costs at most one record batch per partition, and on a
  real Kafka the fetch simply starts at the true end.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, TypeVar

from confluent_kafka import (
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

# The documented import path for NewTopic; the package's own stubs forget to re-export it.
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    NewTopic,
)

from pipeline.errors import PipelineError
from pipeline.kafka.clients import Connection, admin_config, client_config
from pipeline.kafka.logs import forget_librdkafka_warning, last_librdkafka_warning

_ClientT = TypeVar("_ClientT")

#: Written explicitly at creation because Tansu reports only configs set at creation (no broker
#: defaults), and anything that reads configs back must see real values. 7 days, like Kafka.
DEFAULT_TOPIC_CONFIG: Final[Mapping[str, str]] = MappingProxyType(
    {"retention.ms": "604800000", "cleanup.policy": "delete"}
)


class KafkaAdminError(PipelineError):
    """A topic could not be created, inspected or measured (including timeouts)."""


class TopicMismatchError(KafkaAdminError):
    """A topic exists with a different partition count than required."""


class UnknownTopicError(KafkaAdminError):
    """The topic does not exist."""


class KafkaConfigError(KafkaAdminError):
    """librdkafka refused a client setting (an unknown key or an invalid value)."""


#: Named wherever a missing topic stops a process.
CREATE_TOPICS_HINT: Final = (
    "create the topics with `metrics-pipeline topics create` (same settings), "
    "or set create_topics: true"
)


@dataclass(frozen=True)
class TopicSpec:
    """What a topic must look like.

    ``config`` is merged over ``DEFAULT_TOPIC_CONFIG`` (so ``retention.ms`` and
    ``cleanup.policy`` are always set explicitly) and stored read-only. Note that Tansu does not
    compact, whatever ``cleanup.policy`` says.
    """

    name: str
    partitions: int
    replication_factor: int = 1
    config: Mapping[str, str] = field(default_factory=lambda: DEFAULT_TOPIC_CONFIG, hash=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("topic name must not be empty")
        if self.partitions < 1:
            raise ValueError(f"topic {self.name!r}: partitions must be >= 1, not {self.partitions}")
        if self.replication_factor < 1:
            raise ValueError(
                f"topic {self.name!r}: replication_factor must be >= 1, "
                f"not {self.replication_factor}"
            )
        merged = {**DEFAULT_TOPIC_CONFIG, **self.config}
        for key, value in merged.items():
            if not isinstance(value, str):
                raise TypeError(f"topic {self.name!r}: config {key!r} must be a str, not {value!r}")
        # Frozen dataclass: the normalized mapping has to be set behind the generated __setattr__.
        object.__setattr__(self, "config", MappingProxyType(merged))


# Consume errors after which waiting longer cannot help.
_GIVE_UP: Final = frozenset(
    {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
    }
)


def new_client(factory: Callable[[dict[str, Any]], _ClientT], config: dict[str, Any]) -> _ClientT:
    """Build a librdkafka client; a setting it refuses becomes one line naming it."""
    try:
        return factory(config)
    except KafkaException as exc:
        raise KafkaConfigError(f"invalid Kafka client setting: {_reason(exc)}") from None


def _admin(connection: Connection) -> AdminClient:
    return new_client(AdminClient, admin_config(connection))


def _reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)


def _bootstrap_of(connection: Connection | None) -> str:
    if isinstance(connection, str):
        return connection
    if connection is not None:
        return connection.get("bootstrap.servers", "?")
    return "the bootstrap servers"


def _security_hint(connection: Connection | None) -> str:
    """A TLS or SASL failure often looks like an unreachable broker: say what was attempted."""
    protocol = None if isinstance(connection, str | None) else connection.get("security.protocol")
    if protocol is None or protocol.lower() == "plaintext":
        return ""
    mechanism = connection.get("sasl.mechanism") if isinstance(connection, Mapping) else None
    attempted = f"security.protocol={protocol}" + (
        f", sasl.mechanism={mechanism}" if mechanism else ""
    )
    return f" ({attempted}: does the listener speak it, and are the CA and credentials right?)"


def _all_partition_counts(
    admin: AdminClient | Consumer, timeout: float, connection: Connection | None = None
) -> dict[str, int]:
    """Partition count per existing topic. Lists *all* topics: naming one would auto-create it."""
    forget_librdkafka_warning()
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        admin.poll(0)  # serve queued librdkafka log lines: the last one names the cause
        last = last_librdkafka_warning()
        # The traceback keeps this frame: without the client in it, the client (and its
        # reconnect attempts) ends now, not when the error is collected.
        del admin
        raise KafkaAdminError(
            f"cannot reach Kafka at {_bootstrap_of(connection)} within {timeout:.0f} s: "
            + (last or _reason(exc))
            + _security_hint(connection)
        ) from None
    return {
        name: len(topic.partitions)
        for name, topic in metadata.topics.items()
        if topic.error is None or topic.error.code() == KafkaError.NO_ERROR
    }


def ensure_topics(
    connection: Connection,
    specs: Sequence[TopicSpec],
    timeout: float = 15.0,
    exact: bool = True,
) -> dict[str, int]:
    """Create the topics in ``specs`` that do not exist yet; return once all are visible.

    Idempotent: a topic that already exists with the required partition count is accepted as it
    is (its config and replication are not compared). Raises ``TopicMismatchError`` if one exists
    with a different partition count — partitions cannot be changed here (Tansu does not support
    CreatePartitions, and on Kafka it would move keys between partitions) — and
    ``KafkaAdminError`` on any other failure or if ``timeout`` (seconds, overall) runs out.
    With ``exact=False`` a topic of another partition count is accepted (a concurrent creator
    won the race); the counts found are returned either way.
    """
    if not specs:
        return {}
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate topic names in specs: {names}")
    deadline = time.monotonic() + timeout
    admin = _admin(connection)

    existing = _all_partition_counts(admin, timeout, connection)
    if exact:
        _check_partitions(specs, existing)
    missing = [spec for spec in specs if spec.name not in existing]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(
                    spec.name,
                    num_partitions=spec.partitions,
                    replication_factor=spec.replication_factor,
                    config=dict(spec.config),
                )
                for spec in missing
            ],
            operation_timeout=max(1.0, timeout),
            request_timeout=max(1.0, timeout),
        )
        for name, future in futures.items():
            try:
                future.result(timeout=max(0.1, deadline - time.monotonic()))
            except KafkaException as exc:
                # Someone else created it between our listing and our request: fine, as long as
                # the partition count matches (checked below).
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise KafkaAdminError(f"cannot create topic {name!r}: {exc}") from exc
            except TimeoutError as exc:
                raise KafkaAdminError(f"timed out creating topic {name!r}") from exc

    # On a real cluster a new topic reaches every broker's metadata cache only eventually.
    while True:
        existing = _all_partition_counts(admin, max(0.1, deadline - time.monotonic()), connection)
        if exact:
            _check_partitions(specs, existing)
        invisible = [name for name in names if name not in existing]
        if not invisible:
            return {name: existing[name] for name in names}
        if time.monotonic() >= deadline:
            raise KafkaAdminError(f"topics not visible after {timeout:.1f} s: {invisible}")
        time.sleep(0.1)


def _check_partitions(specs: Sequence[TopicSpec], existing: Mapping[str, int]) -> None:
    for spec in specs:
        found = existing.get(spec.name)
        if found is not None and found != spec.partitions:
            raise TopicMismatchError(
                f"topic {spec.name!r} exists with {found} partitions, "
                f"but {spec.partitions} are required; delete it or use another name"
            )


def partition_counts(connection: Connection, timeout: float = 10.0) -> dict[str, int]:
    """Partition count of every existing topic."""
    return _all_partition_counts(_admin(connection), timeout, connection)


def partition_count(connection: Connection, topic: str, timeout: float = 10.0) -> int:
    """Number of partitions of ``topic``; ``UnknownTopicError`` if it does not exist.

    Never auto-creates the topic (it lists all topics instead of asking for this one).
    """
    counts = partition_counts(connection, timeout)
    if topic not in counts:
        raise UnknownTopicError(f"topic {topic!r} does not exist")
    return counts[topic]


def ensure_present(
    connection: Connection, specs: Sequence[TopicSpec], create: bool
) -> dict[str, int]:
    """Partition count of each topic; missing ones are created as their specs say when `create`
    (else UnknownTopicError naming them all and the command that creates them). An existing
    topic is taken as it is, whatever its partitions — also one a concurrent process created
    first with another count: each caller decides whether that count works for it."""
    existing = partition_counts(connection)
    missing = list({spec.name: spec for spec in specs if spec.name not in existing}.values())
    if missing and not create:
        names = ", ".join(repr(spec.name) for spec in missing)
        plural = "s do" if len(missing) > 1 else " does"
        raise UnknownTopicError(f"topic{plural} not exist: {names}; {CREATE_TOPICS_HINT}")
    if missing:
        existing = {**existing, **ensure_topics(connection, missing, exact=False)}
    return {spec.name: existing[spec.name] for spec in specs}


def watermark_consumer_config(connection: Connection) -> dict[str, Any]:
    """Consumer settings ``high_watermarks`` needs; use them to build a consumer to pass it.

    Partition EOF events are how we know a fetch response (which carries the high watermark) has
    arrived, including for empty partitions. ``read_uncommitted`` makes EOF coincide with the
    high watermark rather than the last stable offset. The group id is never joined or committed
    to (assign-mode only) but librdkafka requires one.
    """
    return {
        **client_config(connection),
        "group.id": f"metrics-pipeline-watermarks-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "isolation.level": "read_uncommitted",
        # If the broker's "latest" were ever beyond the end, re-read from the start rather than
        # loop on the same wrong offset; it still ends with EOF.
        "auto.offset.reset": "earliest",
        # Tansu holds an empty fetch for the full wait; keep it short so EOF arrives quickly.
        "fetch.wait.max.ms": 10,
    }


def high_watermarks(
    consumer_or_bootstrap: Consumer | Connection, topic: str, timeout: float = 10.0
) -> dict[int, int]:
    """Return ``{partition: end offset}`` of ``topic``, read from fetch responses.

    The end offset is the offset the next record will get (0 for an empty partition). Pass a
    bootstrap string to use a short-lived internal consumer (about 0.1 s on Tansu), or your own
    ``Consumer``: it must have been created with ``enable.partition.eof=True`` (see
    ``watermark_consumer_config``) and must not be subscribed to a group; its assignment is
    replaced and left empty afterwards. Raises ``UnknownTopicError`` if the topic does not exist
    and ``KafkaAdminError`` if some partition does not report its end within ``timeout``.
    """
    if not isinstance(consumer_or_bootstrap, Consumer):
        consumer = new_client(Consumer, watermark_consumer_config(consumer_or_bootstrap))
        try:
            return _fetch_high_watermarks(consumer, topic, timeout)
        finally:
            consumer.close()
    return _fetch_high_watermarks(consumer_or_bootstrap, topic, timeout)


def _fetch_high_watermarks(consumer: Consumer, topic: str, timeout: float) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    # Listing metadata first also primes librdkafka's leader cache: without it, the first fetch
    # of a fresh consumer starts about 0.5 s later.
    counts = _all_partition_counts(consumer, timeout)
    if topic not in counts:
        raise UnknownTopicError(f"topic {topic!r} does not exist")
    partitions = range(counts[topic])
    ends: dict[int, int] = {}
    seen_end: dict[int, int] = {}
    consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in partitions])
    try:
        while len(ends) < len(partitions):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = sorted(set(partitions) - ends.keys())
                raise KafkaAdminError(
                    f"no end-of-partition for {topic!r} partitions {missing} within "
                    f"{timeout:.1f} s (is enable.partition.eof set on the consumer?)"
                )
            for message in consumer.consume(num_messages=10_000, timeout=min(0.1, remaining)):
                error = message.error()
                partition = message.partition()
                if partition is None:
                    continue
                if error is None:
                    offset = message.offset()
                    if offset is not None:
                        seen_end[partition] = max(seen_end.get(partition, 0), offset + 1)
                elif error.code() == KafkaError._PARTITION_EOF:
                    # The EOF was triggered by the fetch response that carried this watermark.
                    _, high = consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), cached=True
                    )
                    ends[partition] = max(high, message.offset() or 0, seen_end.get(partition, 0))
                elif error.fatal() or error.code() in _GIVE_UP:
                    raise KafkaAdminError(f"fetching {topic!r}[{partition}] failed: {error}")
                # Anything else (a broker hiccup, a leader change) is retried by librdkafka;
                # the deadline bounds it.
    finally:
        consumer.unassign()
    return dict(sorted(ends.items()))
