"""murmur2 / owner_partition agree with the Java client (vectors from Kafka's UtilsTest)."""

from __future__ import annotations

import pytest

from pipeline.kafka.partitioner import OwnerPartitions, murmur2, owner_partition

# org.apache.kafka.common.utils.UtilsTest#testMurmur2: input -> Java's signed 32-bit result.
JAVA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
    (bytes([12, 42, 56, 24, 109, 111]), 274204207),
]

# librdkafka's rdmurmur2 unit test (unsigned results of the same function).
LIBRDKAFKA_VECTORS = [
    (b"kafka", 0xD067CF64),
    (b"", 0x106E08D9),
]


@pytest.mark.parametrize(("data", "expected"), JAVA_VECTORS)
def test_murmur2_matches_java(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


@pytest.mark.parametrize(("data", "expected"), LIBRDKAFKA_VECTORS)
def test_murmur2_matches_librdkafka(data: bytes, expected: int) -> None:
    assert murmur2(data) & 0xFFFFFFFF == expected


def test_murmur2_result_is_signed_32_bit() -> None:
    results = [murmur2(f"service-{i}|region-{i % 4}".encode()) for i in range(2000)]
    assert all(-(2**31) <= h < 2**31 for h in results)
    assert any(h < 0 for h in results) and any(h > 0 for h in results)


@pytest.mark.parametrize("length", range(0, 9))
def test_every_tail_length_differs(length: int) -> None:
    # Each tail length (0..3 after whole words) goes through a different branch; a dropped
    # tail byte would make these collide with the shorter prefix.
    data = bytes(range(1, length + 1))
    assert murmur2(data) != murmur2(data[:-1]) or length == 0


def test_owner_partition_uses_to_positive_not_abs() -> None:
    # Java's toPositive masks the sign bit: -973932308 & 0x7fffffff == 1173551340.
    assert owner_partition(b"21", 2**31 - 1) == 1173551340 % (2**31 - 1)
    assert owner_partition(b"21", 8) == 1173551340 % 8
    for data, expected in JAVA_VECTORS:
        assert owner_partition(data, 12) == (expected & 0x7FFFFFFF) % 12


def test_owner_partition_in_range_and_spread() -> None:
    counts = [0] * 8
    for i in range(4000):
        counts[owner_partition(f"svc-{i}|eu".encode(), 8)] += 1
    assert all(300 < c < 700 for c in counts), counts


@pytest.mark.parametrize("bad", [0, -1])
def test_owner_partition_rejects_non_positive_count(bad: int) -> None:
    with pytest.raises(ValueError, match="num_partitions"):
        owner_partition(b"k", bad)
    with pytest.raises(ValueError, match="num_partitions"):
        OwnerPartitions(bad)


def test_owner_partitions_caches_and_agrees() -> None:
    owners = OwnerPartitions(8)
    keys = [f"svc-{i % 50}|r{i % 4}".encode() for i in range(1000)]
    assert [owners(k) for k in keys] == [owner_partition(k, 8) for k in keys]
    assert len(owners) == len(set(keys))
    assert owners.num_partitions == 8


def test_owner_partitions_cache_is_bounded() -> None:
    owners = OwnerPartitions(4, max_entries=10)
    for i in range(25):
        assert owners(b"%d" % i) == owner_partition(b"%d" % i, 4)
        assert len(owners) <= 10
