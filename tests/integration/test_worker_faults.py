"""Faults real parts can show: refused outputs, a timed-out broker, a lost checkpoint topic."""

from __future__ import annotations

import gc
import socket
import time
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from pipeline.errors import CheckpointError
from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.kafka.clients import DeliveryError, OutputProducer, producer_config
from pipeline.kafka.worker import RollupWorker
from pipeline.loadgen.build import generate
from pipeline.loadgen.produce import produce
from pipeline.loadgen.spec import WorkloadSpec

from .harness import expected_rollups, rollups_by_window, wait_for, worker_settings, worker_thread

PARTITIONS = 4


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_failed(worker: RollupWorker, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not worker.failed and time.monotonic() < deadline:
        time.sleep(0.2)


def _flush_error(producer: OutputProducer) -> str | None:
    try:
        producer.flush(10)
    except DeliveryError as exc:
        return str(exc)
    return None


def test_delivery_failures_stay_reported() -> None:
    # A broker that never answers: the record times out; every later flush must still fail,
    # so that nothing can be committed past the lost output.
    port = _closed_port()
    producer = OutputProducer(producer_config(f"127.0.0.1:{port}", {"message.timeout.ms": "300"}))
    producer.produce("t", b"v", b"k")
    first, second = _flush_error(producer), _flush_error(producer)
    # Drop the client now (no traceback keeps it alive), or it retries the dead port until exit.
    del producer
    gc.collect()
    assert first is not None and "failed" in first
    assert second is not None


@pytest.mark.slow
def test_refused_output_then_restart_loses_nothing(kafka_bootstrap: str, unique_name: str) -> None:
    spec = WorkloadSpec(seed=3, services=3, regions=2, duration_s=60.0, samples=12_000)
    workload = generate(spec)
    settings = worker_settings(kafka_bootstrap, unique_name)
    ensure_topics(kafka_bootstrap, [TopicSpec(settings.input_topic, PARTITIONS)])
    produce(kafka_bootstrap, settings.input_topic, workload.messages())

    # Rollups with digests are larger than 1,500 bytes: the producer refuses them.
    refusing = settings.model_copy(update={"kafka_config": {"message.max.bytes": "1500"}})
    with pytest.raises(Exception, match=r"(?i)size|large"), worker_thread(refusing) as worker:
        wait_until_failed(worker)

    with worker_thread(settings):
        outputs = wait_for(settings, PARTITIONS, workload.manifest.samples_total)
    got = rollups_by_window(outputs)
    expected = expected_rollups(workload.truth)
    assert {k: v["count"] for k, v in got.items()} == {k: e.count for k, e in expected.items()}


@pytest.mark.slow
def test_committed_offsets_without_checkpoints_stop_the_worker(
    kafka_bootstrap: str, unique_name: str
) -> None:
    settings = worker_settings(kafka_bootstrap, unique_name)
    ensure_topics(kafka_bootstrap, [TopicSpec(settings.input_topic, PARTITIONS)])
    config: dict[str, Any] = {
        "bootstrap.servers": kafka_bootstrap,
        "group.id": settings.group_id,
        "enable.auto.commit": False,
    }
    committer = Consumer(config)
    try:
        committer.commit(offsets=[TopicPartition(settings.input_topic, 0, 5)], asynchronous=False)
    finally:
        committer.close()
    with pytest.raises(CheckpointError, match="no checkpoint"), worker_thread(settings) as worker:
        wait_until_failed(worker)
