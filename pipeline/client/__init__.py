"""Producer library for services: send raw metric samples to `metrics.raw`.

    from pipeline.client import MetricsProducer

    with MetricsProducer("kafka:9092", service="checkout", region="eu-west-1") as metrics:
        metrics.timer("http.server.duration", 12.5, unit="ms", labels={"route": "/pay"})
        metrics.gauge("queue.depth", 42)
        metrics.counter("http.requests", 1)

See docs/producing.md for batching, buffering, partitioning and the error behaviour.
"""

from pipeline.client.batches import Encoding
from pipeline.client.errors import BufferFullError, ClientClosedError, ProducerStats
from pipeline.client.producer import MetricsProducer
from pipeline.client.validation import InvalidSampleError

__all__ = [
    "BufferFullError",
    "ClientClosedError",
    "Encoding",
    "InvalidSampleError",
    "MetricsProducer",
    "ProducerStats",
]
