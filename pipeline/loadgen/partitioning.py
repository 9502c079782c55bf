"""How the load generator keys and partitions records, imitating the producers services really run.

The worker is correct whatever partitioner a producer uses (a sample that lands on a partition
not owning its series is forwarded); the choice only decides how much is forwarded. Each choice
is a librdkafka `partitioner` value, so the bytes hashed and the partition picked are exactly what
that client library would do — no re-implementation on the hot path:

- `consistent_random`: librdkafka's default (CRC32 of the key) — confluent-kafka for Python, Go
  and .NET, and C services that leave `partitioner` alone;
- `murmur2_random`: Java's and kafkajs' default (murmur2, Java-compatible): no detour;
- `random`: a random partition per record, whatever the key;
- `fnv1a`: sarama's default `NewHashPartitioner` (FNV-1a 32-bit); librdkafka's `fnv1a_random`
  computes it the same way (its own unit test checks Go's `hash/fnv` vectors);
- `null-key`: records without a key (librdkafka spreads them, sticky per batch).

`partition_of` predicts the partition for the key-hashing choices, in plain Python, so tests can
check that the broker received what a real client would have sent.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, Literal

from pipeline.errors import ConfigError
from pipeline.kafka.partitioner import owner_partition
from pipeline.loadgen.spec import Message

__all__ = [
    "KEY_FORMATS",
    "PARTITIONERS",
    "KeyFormat",
    "PartitionerChoice",
    "fnv1a_32",
    "partition_of",
    "partitioner_choice",
    "rekeyed",
    "sarama_hash_partition",
]

KeyFormat = Literal["service-region", "instance", "constant"]
#: service-region: the contract ("<service>|<region>"); instance: the sample's reporting process
#: (a service keyed by host name); constant: one key for everything (one hot partition).
KEY_FORMATS: Final[tuple[KeyFormat, ...]] = ("service-region", "instance", "constant")
CONSTANT_KEY: Final = b"metrics"


@dataclass(frozen=True)
class PartitionerChoice:
    """One `--partitioner` value: its librdkafka setting and whether records keep their key."""

    name: str
    librdkafka: str
    keyed: bool
    imitates: str


PARTITIONERS: Final[dict[str, PartitionerChoice]] = {
    c.name: c
    for c in (
        PartitionerChoice(
            "consistent_random",
            "consistent_random",
            True,
            "librdkafka default (confluent-kafka Python/Go/.NET, C)",
        ),
        PartitionerChoice("murmur2_random", "murmur2_random", True, "Java client, kafkajs"),
        PartitionerChoice("random", "random", True, "a random partition per record"),
        PartitionerChoice("fnv1a", "fnv1a_random", True, "sarama NewHashPartitioner"),
        PartitionerChoice("null-key", "consistent_random", False, "producers sending no key"),
    )
}


def partitioner_choice(name: str) -> PartitionerChoice:
    """The choice called `name`; ConfigError naming the valid ones otherwise."""
    try:
        return PARTITIONERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown partitioner {name!r}; one of {', '.join(PARTITIONERS)}"
        ) from None


_FNV_OFFSET: Final = 0x811C9DC5
_FNV_PRIME: Final = 0x01000193


def fnv1a_32(data: bytes) -> int:
    """FNV-1a 32-bit hash of `data` (unsigned), as Go's `hash/fnv.New32a` computes it."""
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def sarama_hash_partition(key: bytes, num_partitions: int) -> int:
    """The partition sarama's default `NewHashPartitioner` picks for `key`.

    sarama converts the hash to int32, takes Go's remainder (which keeps the dividend's sign) and
    negates a negative result — not Java's `& 0x7fffffff`, so even a murmur2 hasher plugged into
    this partitioner would disagree with Java for half of the keys.
    """
    signed = fnv1a_32(key)
    if signed >= 2**31:
        signed -= 2**32
    return abs(signed) % num_partitions


def partition_of(choice: PartitionerChoice, key: bytes | None, num_partitions: int) -> int | None:
    """The partition `choice` sends a record with `key` to; None when it is not a function of
    the key (`random`, null keys, and `consistent_random` for an empty key)."""
    if key is None or choice.name in ("random", "null-key"):
        return None
    if choice.name == "murmur2_random":
        return owner_partition(key, num_partitions)
    if choice.name == "fnv1a":
        return sarama_hash_partition(key, num_partitions)
    if not key:  # librdkafka's consistent_random spreads empty keys like null ones
        return None
    return zlib.crc32(key) % num_partitions


_INSTANCE_FIELD: Final = b'"instance":"'


def _instance_key(key: bytes, value: bytes) -> bytes:
    """The first sample's `instance` (instance names hold no quote or backslash in generated
    workloads); the message's own key when it has none, e.g. a deliberately malformed one."""
    start = value.find(_INSTANCE_FIELD)
    if start < 0:
        return key
    start += len(_INSTANCE_FIELD)
    end = value.find(b'"', start)
    return value[start:end] if end > start else key


def rekeyed(messages: Iterable[Message], key_format: KeyFormat) -> Iterator[Message]:
    """`messages` with their keys replaced according to `key_format` (values and order kept).

    `instance` reads the instance from the value: single and columnar messages hold one
    instance; an array batch is keyed by its first sample's. This is a plain byte search, not a
    JSON parse, so the generator stays fast enough to saturate a local broker.
    """
    if key_format == "service-region":
        yield from messages
    elif key_format == "constant":
        for _key, value, timestamp_ms in messages:
            yield Message(CONSTANT_KEY, value, timestamp_ms)
    elif key_format == "instance":
        for key, value, timestamp_ms in messages:
            yield Message(_instance_key(key, value), value, timestamp_ms)
    else:
        raise ConfigError(f"unknown key format {key_format!r}; one of {', '.join(KEY_FORMATS)}")
