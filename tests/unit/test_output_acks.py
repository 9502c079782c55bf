"""Per-partition acknowledgement counting: a checkpoint may be written once every output of
its partition produced before it is acknowledged, whatever order the acknowledgements come in."""

from __future__ import annotations

from pipeline.kafka.acks import OutputAcks


def test_a_generation_settles_only_when_it_and_every_earlier_one_are_acknowledged() -> None:
    acks = OutputAcks()
    first = [acks.track(0) for _ in range(3)]
    older = acks.cut(0)
    later = acks.track(0)
    newer = acks.cut(0)
    assert not acks.settled(0, older)
    later()  # acknowledged out of order: the older generation still waits
    assert not acks.settled(0, older) and not acks.settled(0, newer)
    for acked in first:
        acked()
    assert acks.settled(0, older) and acks.settled(0, newer)


def test_partitions_are_counted_apart() -> None:
    acks = OutputAcks()
    pending = acks.track(1)
    assert acks.settled(0, acks.cut(0))  # nothing produced for partition 0
    one = acks.cut(1)
    assert not acks.settled(1, one)
    pending()
    assert acks.settled(1, one)


def test_a_forgotten_partition_starts_over() -> None:
    acks = OutputAcks()
    never = acks.track(2)  # its acknowledgement may still come after the partition is gone
    acks.forget(2)
    assert acks.settled(2, acks.cut(2))
    never()
    assert acks.settled(2, 0)
