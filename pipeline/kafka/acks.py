"""Which outputs of each input partition Kafka has acknowledged, so a checkpoint can be written
as soon as the outputs it covers are, without waiting for every record in flight.

A checkpoint says "input up to here is processed and its outputs are kept". Writing it after a
global `flush()` is simple but stops consumption for the whole round trip of every record
queued; here each produce made for an input partition is counted, by checkpoint generation, and
a checkpoint taken at a generation's end may be written once that generation and every earlier
one of its partition have no record left in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pipeline.kafka.clients import KafkaStatus, OutputProducer


class OutputAcks:
    """Records in flight per input partition and generation."""

    def __init__(self) -> None:
        self._generation: dict[int, int] = {}
        self._in_flight: dict[int, dict[int, int]] = {}  # partition → generation → records

    def track(self, partition: int) -> Callable[[], None]:
        """Count one record produced for `partition`; the callback for its acknowledgement."""
        generation = self._generation.get(partition, 0)
        counts = self._in_flight.setdefault(partition, {})
        counts[generation] = counts.get(generation, 0) + 1

        def acked() -> None:
            left = counts[generation] - 1
            if left:
                counts[generation] = left
            else:
                del counts[generation]

        return acked

    def cut(self, partition: int) -> int:
        """End the partition's current generation (records produced from now on belong to the
        next); the generation ended."""
        generation = self._generation.get(partition, 0)
        self._generation[partition] = generation + 1
        return generation

    def settled(self, partition: int, generation: int) -> bool:
        """Whether every record of `generation` and earlier of `partition` is acknowledged."""
        counts = self._in_flight.get(partition)
        return not counts or min(counts) > generation

    def forget(self, partition: int) -> None:
        """The partition is gone: records still in flight for it count nowhere."""
        self._generation.pop(partition, None)
        self._in_flight.pop(partition, None)


class TrackedProducer(OutputProducer):
    """An `OutputProducer` counting, in `acks`, the records produced while `producing_for` an
    input partition."""

    def __init__(self, config: dict[str, Any], status: KafkaStatus | None = None) -> None:
        super().__init__(config, status)
        self.acks = OutputAcks()
        self._for: int | None = None

    @contextmanager
    def producing_for(self, partition: int) -> Iterator[None]:
        self._for = partition
        try:
            yield
        finally:
            self._for = None

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
        if self._for is not None:
            acked = self.acks.track(self._for)
            on_delivered = acked if on_delivered is None else _both(on_delivered, acked)
        super().produce(topic, value, key, partition, headers, timestamp, on_delivered)


def _both(first: Callable[[], None], then: Callable[[], None]) -> Callable[[], None]:
    def both() -> None:
        first()
        then()

    return both
