"""What the producer client raises and reports."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import PipelineError

__all__ = ["BufferFullError", "ClientClosedError", "ProducerStats"]


class BufferFullError(PipelineError):
    """The client buffer holds `max_buffered_samples` samples (Kafka is down or too slow)."""


class ClientClosedError(PipelineError):
    """A sample was recorded after `close()`."""


@dataclass(frozen=True)
class ProducerStats:
    """Sample counts since the producer was created.

    accepted = buffered + in_flight + delivered + failed (dropped samples were never accepted).
    """

    accepted: int  # validated and buffered
    dropped: int  # refused because the buffer was full (on_full="drop")
    buffered: int  # waiting in this client
    in_flight: int  # handed to librdkafka, not yet acknowledged by Kafka
    delivered: int  # acknowledged by Kafka
    failed: int  # delivery failed (e.g. Kafka unreachable for message.timeout.ms)
    records: int  # Kafka records handed to librdkafka
