"""Anomaly events on the real broker, an alert bridge in a thread, Alertmanager read back."""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.alerting import AlertBridge, AlertBridgeSettings
from tests.support.anomaly_events import record

from ..harness import stage_thread

PARTITIONS = 2


def bridge_settings(bootstrap: str, name: str, url: str, **overrides: Any) -> AlertBridgeSettings:
    values: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "alertmanager_url": url,
        "anomaly_topic": f"anomalies-{name}",
        "deadletter_topic": f"deadletter-{name}",
        "group_id": f"bridge-{name}",
        "topic_partitions": PARTITIONS,
        "resend_interval": "1s",
        "alert_ttl": "30s",
        "timeout": "2s",
        "request_retries": 1,
        "request_retry_initial": "50ms",
        "request_retry_max": "200ms",
        "retry_initial": "100ms",
        "retry_max": "1s",
        "session_timeout_ms": 6000,
        "http_port": 0,
        "batch_records": 50,
    }
    values.update(overrides)
    return AlertBridgeSettings(**values)


@contextmanager
def bridge_thread(settings: AlertBridgeSettings) -> Iterator[AlertBridge]:
    with stage_thread(AlertBridge(settings)) as bridge:
        yield bridge


def partition_of(event: dict[str, Any]) -> int:
    """The detector's routing: every event of a series on the partition of "service|region"."""
    series = event["series"]
    return zlib.crc32(f"{series['service']}|{series['region']}".encode()) % PARTITIONS


def produce_events(
    bootstrap: str, topic: str, events: list[dict[str, Any] | tuple[bytes, bytes, int]]
) -> list[tuple[int, int]]:
    """Produce events (or raw (key, value, partition) records) in order; (partition, offset)
    of each."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    where: list[tuple[int, int]] = [(-1, -1)] * len(events)

    def delivered(index: int) -> Callable[[Any, Any], None]:
        def callback(err: Any, msg: Any) -> None:
            assert err is None, err
            where[index] = (msg.partition(), msg.offset())

        return callback

    for index, event in enumerate(events):
        if isinstance(event, tuple):
            key, value, partition = event
        else:
            (key, value), partition = record(event), partition_of(event)
        producer.produce(topic, value, key, partition=partition, on_delivery=delivered(index))
    assert producer.flush(30) == 0
    return where


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def episode_ids(alerts: list[dict[str, Any]]) -> set[str]:
    return {a["annotations"]["episode_id"] for a in alerts}


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def epoch_ms(text: str) -> int:
    return round(parse_time(text).timestamp() * 1000)


def group_committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets as Kafka holds them (an OffsetFetch; joins nothing)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = consumer.committed(
            [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=15
        )
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found if tp.offset >= 0}


def pinned(where: dict[str, tuple[int, int]], active: set[str]) -> dict[int, int]:
    """Per partition, the offset of the oldest active episode's firing event."""
    out: dict[int, int] = {}
    for episode in active:
        partition, offset = where[episode]
        out[partition] = min(out.get(partition, offset), offset)
    return out


class WebhookReceiver:
    """Alertmanager's notifications (webhook_configs), collected on a loopback port."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def alerts(self, status: str) -> list[dict[str, Any]]:
        return [a for n in self.notifications for a in n["alerts"] if a["status"] == status]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
