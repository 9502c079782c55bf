"""Kafka's default key partitioner (murmur2), bit-for-bit compatible with the Java client.

Workers use it to know which input partition owns a key (``service|region``) without asking the
broker, e.g. to route a checkpoint or to verify that a producer partitions the way we expect.
It matches the Java producer's default partitioner for non-null keys and librdkafka's
``murmur2`` / ``murmur2_random`` partitioners. The confluent-kafka *default* is
``consistent_random`` (CRC32), which does NOT agree with it: producers must set ``partitioner``.
"""

from __future__ import annotations

import struct
from typing import Final

_SEED: Final = 0x9747B28C
_M: Final = 0x5BD1E995
_R: Final = 24
_MASK32: Final = 0xFFFFFFFF
_WORDS = struct.Struct("<I")


def murmur2(data: bytes) -> int:
    """Return the 32-bit murmur2 hash of ``data`` as Java's ``Utils.murmur2`` returns it.

    The result is a *signed* 32-bit int (``-2**31 <= h < 2**31``), exactly what the Java client
    computes, so known vectors from Kafka's own tests can be compared directly.
    """
    length = len(data)
    # Python ints are unbounded: every multiplication is masked back to 32 bits to mimic Java's
    # int overflow, and Java's ``>>>`` (unsigned shift) is a plain shift on the masked value.
    h = (_SEED ^ length) & _MASK32
    tail_start = length - (length % 4)
    for (k,) in _WORDS.iter_unpack(data[:tail_start]):
        k = (k * _M) & _MASK32
        k ^= k >> _R
        k = (k * _M) & _MASK32
        h = ((h * _M) & _MASK32) ^ k

    tail = data[tail_start:]
    # Java's switch falls through from case 3 to case 1; the multiply happens once, only when
    # there is a tail at all.
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * _M) & _MASK32

    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def owner_partition(key: bytes, num_partitions: int) -> int:
    """Return the partition the Java client (and librdkafka ``murmur2``) sends ``key`` to.

    ``(murmur2(key) & 0x7fffffff) % num_partitions`` — the mask is Java's ``toPositive``, not
    ``abs``, so keys whose hash is ``-2**31`` land where the Java client puts them.
    Raises ``ValueError`` if ``num_partitions`` is not positive.
    """
    if num_partitions <= 0:
        raise ValueError(f"num_partitions must be positive, got {num_partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions


class OwnerPartitions:
    """``owner_partition`` for a fixed partition count, memoized per key.

    Meant for the hot path, where a few thousand distinct keys repeat millions of times: a hit is
    one dict lookup. The cache is bounded by ``max_entries``; when it fills up it is cleared
    (cheaper than LRU bookkeeping, and with the expected key counts it never fills). Not
    thread-safe for concurrent writers in the strict sense, but a race only recomputes a value.
    """

    __slots__ = ("_cache", "_max_entries", "num_partitions")

    def __init__(self, num_partitions: int, max_entries: int = 100_000) -> None:
        if num_partitions <= 0:
            raise ValueError(f"num_partitions must be positive, got {num_partitions}")
        if max_entries <= 0:
            raise ValueError(f"max_entries must be positive, got {max_entries}")
        self.num_partitions = num_partitions
        self._max_entries = max_entries
        self._cache: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        """Return the partition that owns ``key``."""
        partition = self._cache.get(key)
        if partition is None:
            partition = (murmur2(key) & 0x7FFFFFFF) % self.num_partitions
            if len(self._cache) >= self._max_entries:
                self._cache.clear()
            self._cache[key] = partition
        return partition

    def __len__(self) -> int:
        """Number of keys currently cached."""
        return len(self._cache)
