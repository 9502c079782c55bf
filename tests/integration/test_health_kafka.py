"""What a process says when Kafka cannot be reached: librdkafka's own error callbacks, no broker.

(The worker's /readyz during a real broker outage is in test_broker_restart.py.)
"""

from __future__ import annotations

import re
import socket

import pytest
from prometheus_client import CollectorRegistry, Counter

from pipeline.kafka.clients import DeliveryError, KafkaStatus, OutputProducer, producer_config
from pipeline.observability import Health


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_undelivered_output_names_the_cluster_and_the_cause() -> None:
    servers = f"127.0.0.1:{unused_port()}"  # nothing listens there
    health = Health()
    health.set_ready(True)
    producer = OutputProducer(
        producer_config(servers, {"log_level": "0"}), KafkaStatus(servers, health)
    )
    try:
        producer.produce("rollups", b"{}", b"key")
        with pytest.raises(DeliveryError) as failure:
            producer.flush(timeout=3.0)
    finally:
        producer.close()
    message = str(failure.value)
    assert re.fullmatch(
        rf"Kafka at {re.escape(servers)} unreachable for \d+ s: "
        r"(all brokers down|connection failed) \(.+\); "
        r"1 records still undelivered after 3 s",
        message,
    ), message
    assert not health.ready
    assert (health.reason or "").startswith(f"Kafka at {servers} unreachable for ")


def test_a_failed_delivery_is_counted_in_produce_errors() -> None:
    servers = f"127.0.0.1:{unused_port()}"  # nothing listens there
    failures = Counter("produce_errors", "test", registry=CollectorRegistry())
    extra = {"log_level": "0", "message.timeout.ms": 1000}
    producer = OutputProducer(
        producer_config(servers, extra), KafkaStatus(servers, Health(), failures=failures)
    )
    try:
        producer.produce("rollups", b"{}", b"key")
        producer.produce("rollups", b"{}", b"key")
        # librdkafka gives up on both at message.timeout.ms: two failed deliveries.
        with pytest.raises(DeliveryError, match="2 deliveries failed"):
            producer.flush(timeout=20.0)
    finally:
        producer.close()
    assert failures._value.get() == 2
