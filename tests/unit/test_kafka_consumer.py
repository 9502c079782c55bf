"""The consumer shell's error filter: consume errors are logged and left out, records kept."""

from __future__ import annotations

import structlog
from confluent_kafka import KafkaError, Message
from structlog.testing import capture_logs

from pipeline.kafka.consumer import readable


def test_errors_are_left_out_and_only_real_ones_logged() -> None:
    first = Message(topic="t", partition=0, offset=7, value=b"a")
    second = Message(topic="t", partition=1, offset=3, value=b"b")
    end = Message(topic="t", partition=0, error=KafkaError(KafkaError._PARTITION_EOF))
    broken = Message(topic="t", partition=1, error=KafkaError(KafkaError._TRANSPORT))
    with capture_logs() as logs:
        records = readable([first, end, second, broken], structlog.get_logger("test"))
    assert records == [first, second]
    assert [(e["event"], e["log_level"]) for e in logs] == [("consume error", "warning")]
    assert "Local: Broker transport failure" in logs[0]["error"]


def test_a_batch_without_errors_comes_back_whole() -> None:
    batch = [Message(topic="t", partition=0, offset=o, value=b"v") for o in range(3)]
    with capture_logs() as logs:
        assert readable(batch, structlog.get_logger("test")) == batch
    assert logs == []
