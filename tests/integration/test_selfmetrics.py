"""Self-metrics tell the truth: read from /metrics of a worker fed by the test."""

from __future__ import annotations

import time
import urllib.request

import orjson
import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.observability import serve_http
from pipeline.selfmetrics import add_process_collectors, package_version

from .harness import worker_settings, worker_thread

pytestmark = pytest.mark.slow  # every test here uses the broker

# Event time two days behind the wall clock, as in a replay of old data.
EVENT_START_MS = (int(time.time() * 1000) - 2 * 86_400_000) // 60_000 * 60_000


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_follow_what_the_worker_did(kafka_bootstrap: str, unique_name: str) -> None:
    settings = worker_settings(kafka_bootstrap, unique_name, topic_partitions=2, max_age="30d")
    ensure_topics(kafka_bootstrap, [TopicSpec(settings.input_topic, 2)])
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    sent = 200
    for i in range(sent):  # all on partition 0
        sample = {
            "service": "svc",
            "region": "eu",
            "name": "latency",
            "type": "timer",
            "value": float(i),
            "ts": EVENT_START_MS + i * 100,
        }
        producer.produce(settings.input_topic, orjson.dumps(sample), key=b"svc|eu", partition=0)
    assert producer.flush(30) == 0

    started = time.time()
    with worker_thread(settings) as worker:
        registry = worker.metrics.registry
        add_process_collectors(registry)
        server = serve_http("127.0.0.1", 0, registry, worker.health)
        port = server.server_address[1]
        try:
            deadline = time.monotonic() + 120
            while True:
                m = scrape(port)
                emitted = m.get(
                    ("metrics_pipeline_rollups_emitted_total", (("resolution", "10s"),)), 0
                )
                # Every sample aggregated and every window flushed by the idle timeout.
                if emitted >= 2 and m[("metrics_pipeline_open_windows", ())] == 0:
                    break
                shown = {k: v for k, v in m.items() if k[0].startswith("metrics_pipeline")}
                assert time.monotonic() < deadline, f"worker did not flush its windows: {shown}"
                time.sleep(0.5)
        finally:
            server.shutdown()

    topic = settings.input_topic
    # The lag against event time is counted from the partition that has data.
    lag = m[("metrics_pipeline_watermark_lag_seconds", ())]
    behind = time.time() - EVENT_START_MS / 1000
    assert 0.9 * behind < lag <= behind
    per_partition = {
        dict(labels)["partition"]: value
        for (name, labels), value in m.items()
        if name == "metrics_pipeline_partition_watermark_lag_seconds"
    }
    # Partition 1 got no samples; its watermark (if any) is the one partition 0 forwards to it.
    assert "0" in per_partition
    assert lag == pytest.approx(max(per_partition.values()), rel=1e-6)  # the same tick
    # Everything read: no consumer lag on either partition.
    for p in ("0", "1"):
        assert (
            m[("metrics_pipeline_consumer_lag_messages", (("partition", p), ("topic", topic)))] == 0
        )
    # The last checkpoint was written while the test ran.
    assert 0 <= m[("metrics_pipeline_checkpoint_age_seconds", ())] < time.time() - started
    assert m[("metrics_pipeline_build_info", (("version", package_version()),))] == 1
    assert m[("process_cpu_seconds_total", ())] > 0
    assert m[("process_resident_memory_bytes", ())] > 0
    assert any(name == "python_info" for name, _ in m)
    assert any(name == "python_gc_collections_total" for name, _ in m)
