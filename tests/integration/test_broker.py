"""The embedded broker, topic administration and fetch-based partition ends, on a real broker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from pipeline.errors import PipelineError
from pipeline.kafka.admin import (
    DEFAULT_TOPIC_CONFIG,
    KafkaAdminError,
    TopicMismatchError,
    TopicSpec,
    UnknownTopicError,
    ensure_topics,
    high_watermarks,
    partition_count,
    watermark_consumer_config,
)
from pipeline.kafka.broker import BrokerError, EmbeddedBroker, PortInUseError
from pipeline.kafka.partitioner import owner_partition
from tests.support.kafka_helpers import consumer_config, produce_all, read_all


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


# -- the embedded broker itself (always Tansu, whatever broker the session uses) ------------------


@pytest.mark.slow
def test_embedded_broker_start_serves_metadata_and_stop_ends_process() -> None:
    broker = EmbeddedBroker()
    assert broker.pid is None
    with pytest.raises(BrokerError):
        _ = broker.bootstrap_servers
    with broker:
        pid = broker.pid
        assert pid is not None and _alive(pid)
        host, port = broker.bootstrap_servers.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) == broker.port
        metadata = AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(
            timeout=5
        )
        assert metadata.cluster_id == broker.cluster_id
        assert broker.start() is broker  # idempotent while running
        assert broker.pid == pid
        log_path = broker.log_path
        assert log_path is not None and log_path.exists()
    assert broker.pid is None and not broker.running
    assert _wait_gone(pid)
    assert not log_path.exists()  # a temporary log is removed by a clean stop
    broker.stop()  # idempotent


def test_embedded_broker_refuses_non_loopback_hosts() -> None:
    for host in ("0.0.0.0", "192.0.2.1", "example.com", "::"):
        with pytest.raises(BrokerError, match="loopback"):
            EmbeddedBroker(host=host)


@pytest.mark.slow
def test_embedded_broker_reports_a_taken_port() -> None:
    with EmbeddedBroker() as first:
        second = EmbeddedBroker(port=first.port)
        with pytest.raises(PortInUseError, match=str(first.port)):
            second.start()
        assert second.pid is None
        assert isinstance(PortInUseError("x"), PipelineError)


@pytest.mark.slow
def test_embedded_broker_keeps_log_on_request(tmp_path: os.PathLike[str]) -> None:
    log = os.path.join(tmp_path, "broker.log")
    with EmbeddedBroker(log_path=log) as broker:
        assert str(broker.log_path) == log
    with open(log, encoding="utf-8", errors="replace") as f:
        assert "listening on" in f.read()


@pytest.mark.slow
def test_run_embedded_broker_stops_on_sigterm() -> None:
    port = _free_loopback_port()
    code = (
        "from pipeline.kafka.broker_command import run_embedded_broker; "
        f"run_embedded_broker({port})"
    )
    runner = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert runner.stdout is not None
        banner = runner.stdout.readline()
        if f"127.0.0.1:{port}" not in banner:
            runner.kill()
            pytest.fail(f"no banner: {banner!r}; stderr: {runner.communicate()[1]}")
        match = re.search(r"pid (\d+)", banner)
        assert match is not None
        tansu_pid = int(match.group(1))
        topics = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=5)
        assert topics.brokers
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=15) == 0
        assert _wait_gone(tansu_pid)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def _free_loopback_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- against the session broker -------------------------------------------------------------------


@pytest.mark.slow
def test_produce_consume_round_trip_with_a_group(kafka_bootstrap: str, unique_name: str) -> None:
    topic = f"rt-{unique_name}"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, 3)])
    sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(30)]
    produce_all(kafka_bootstrap, topic, sent)

    consumer = Consumer(consumer_config(kafka_bootstrap, f"g-{unique_name}"))
    try:
        consumer.subscribe([topic])
        got: dict[bytes | None, bytes | None] = {}
        deadline = time.monotonic() + 30
        while len(got) < len(sent) and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=100, timeout=0.5):
                assert message.error() is None, message.error()
                got[message.key()] = message.value()
        assert got == dict(sent)
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()


@pytest.mark.slow
def test_read_all_returns_keys_values_and_headers(kafka_bootstrap: str, unique_name: str) -> None:
    topic = f"ra-{unique_name}"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, 2)])
    delivered = produce_all(kafka_bootstrap, topic, [(b"a", b"1"), (None, b"2"), (b"c", None)])
    records = read_all(kafka_bootstrap, topic)
    assert sorted((r.partition, r.offset) for r in records) == sorted(delivered)
    assert {(r.key, r.value) for r in records} == {(b"a", b"1"), (None, b"2"), (b"c", None)}
    assert all(r.headers == () for r in records)

    empty = f"ra-empty-{unique_name}"
    ensure_topics(kafka_bootstrap, [TopicSpec(empty, 2)])
    assert read_all(kafka_bootstrap, empty) == []


@pytest.mark.slow
def test_ensure_topics_is_idempotent_and_detects_partition_mismatch(
    kafka_bootstrap: str, unique_name: str
) -> None:
    specs = [
        TopicSpec(f"a-{unique_name}", 8),
        TopicSpec(f"b-{unique_name}", 1, config={"retention.ms": "60000"}),
    ]
    ensure_topics(kafka_bootstrap, specs)
    ensure_topics(kafka_bootstrap, specs)  # again: nothing to do, no error
    ensure_topics(kafka_bootstrap, [specs[0], TopicSpec(f"c-{unique_name}", 2)])
    assert partition_count(kafka_bootstrap, f"a-{unique_name}") == 8
    assert partition_count(kafka_bootstrap, f"c-{unique_name}") == 2

    with pytest.raises(TopicMismatchError, match="8 partitions"):
        ensure_topics(kafka_bootstrap, [TopicSpec(f"a-{unique_name}", 4)])

    # Configs were set explicitly at creation, so even Tansu reports them.
    resource = ConfigResource("topic", f"b-{unique_name}")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["retention.ms"].value == "60000"
    assert configs["cleanup.policy"].value == DEFAULT_TOPIC_CONFIG["cleanup.policy"]


def test_topic_spec_validates_and_merges_defaults() -> None:
    spec = TopicSpec("t", 3, config={"cleanup.policy": "compact"})
    assert dict(spec.config) == {**DEFAULT_TOPIC_CONFIG, "cleanup.policy": "compact"}
    assert hash(spec) == hash(TopicSpec("t", 3))  # config does not take part in hashing
    with pytest.raises(ValueError):
        TopicSpec("t", 0)
    with pytest.raises(ValueError):
        TopicSpec("", 1)
    with pytest.raises(TypeError):
        TopicSpec("t", 1, config={"retention.ms": 1})  # type: ignore[dict-item]


@pytest.mark.slow
def test_unknown_topic_is_reported_not_created(kafka_bootstrap: str, unique_name: str) -> None:
    topic = f"missing-{unique_name}"
    with pytest.raises(UnknownTopicError):
        partition_count(kafka_bootstrap, topic)
    with pytest.raises(UnknownTopicError):
        high_watermarks(kafka_bootstrap, topic)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    assert topic not in admin.list_topics(timeout=5).topics


@pytest.mark.slow
def test_high_watermarks_after_producing_to_8_partitions(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = f"hw-{unique_name}"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, 8)])
    assert high_watermarks(kafka_bootstrap, topic) == dict.fromkeys(range(8), 0)

    # Several flushes so that partitions hold several record batches: that is where Tansu's
    # ListOffsets "latest" goes wrong. Partition 7 stays empty.
    expected: Counter[int] = Counter()
    for round_ in range(4):
        batch = [(f"k{round_}-{i}".encode(), b"v") for i in range(350)]
        for partition, _ in produce_all(kafka_bootstrap, topic, batch):
            expected[partition] += 1
    ends = high_watermarks(kafka_bootstrap, topic)
    assert ends == {p: expected[p] for p in range(8)}
    assert sum(ends.values()) == 1400

    # The same through a caller-owned consumer, which is left unassigned afterwards.
    consumer = Consumer(watermark_consumer_config(kafka_bootstrap))
    try:
        assert high_watermarks(consumer, topic) == ends
        assert consumer.assignment() == []
        produce_all(kafka_bootstrap, topic, [(b"one-more", b"v")])
        again = high_watermarks(consumer, topic)  # reused consumer: not a stale cached value
        assert sum(again.values()) == 1401
    finally:
        consumer.close()


@pytest.mark.slow
def test_high_watermarks_times_out_without_partition_eof(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = f"noeof-{unique_name}"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, 1)])
    config = watermark_consumer_config(kafka_bootstrap)
    config["enable.partition.eof"] = False
    consumer = Consumer(config)
    try:
        with pytest.raises(KafkaAdminError, match=r"enable\.partition\.eof"):
            high_watermarks(consumer, topic, timeout=1.0)
    finally:
        consumer.close()


@pytest.mark.slow
def test_murmur2_random_producer_agrees_with_owner_partition(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = f"murmur-{unique_name}"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, 8)])
    keys = [f"svc-{i % 50}|region-{i % 4}".encode() for i in range(600)] + [b"", b"21", b"abc"]
    delivered = produce_all(kafka_bootstrap, topic, [(k, b"v") for k in keys])
    assert [p for p, _ in delivered] == [owner_partition(k, 8) for k in keys]

    # And what a consumer reads back agrees too (the broker kept the producer's choice).
    records = read_all(kafka_bootstrap, topic)
    assert len(records) == len(keys)
    assert all(r.key is not None and r.partition == owner_partition(r.key, 8) for r in records)
    assert len({r.partition for r in records}) == 8


def test_consumer_config_has_short_session_and_no_auto_commit() -> None:
    config = consumer_config("127.0.0.1:1", "g")
    assert config["session.timeout.ms"] == 6000
    assert config["auto.offset.reset"] == "earliest"
    assert config["enable.auto.commit"] is False
    assert consumer_config("b", "g", **{"enable.auto.commit": True})["enable.auto.commit"] is True
