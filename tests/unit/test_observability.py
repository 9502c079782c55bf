"""/metrics, /healthz and /readyz served by `serve_http` on a loopback port."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
from confluent_kafka import Consumer, KafkaError
from prometheus_client import CollectorRegistry

from pipeline.core.detect.events import AnomalyRecord
from pipeline.core.rollup import Rollup
from pipeline.kafka.clients import KafkaStatus
from pipeline.observability import (
    AllHealthy,
    DetectMetrics,
    Health,
    TierMetrics,
    WorkerMetrics,
    serve_http,
)

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def get(port: int, path: str) -> tuple[int, str, str]:
    """(status, content type, body) of GET path; error statuses are returned, not raised."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers["Content-Type"], err.read().decode()


# One server for the module (each shutdown waits for serve_forever's 0.5 s poll).
@pytest.fixture(scope="module")
def metrics() -> WorkerMetrics:
    return WorkerMetrics(CollectorRegistry())


@pytest.fixture(scope="module")
def health() -> Health:
    return Health(stall_seconds=60.0)


@pytest.fixture(scope="module")
def server(metrics: WorkerMetrics, health: Health) -> Iterator[ThreadingHTTPServer]:
    srv = serve_http(HOST, free_port(), metrics.registry, health)
    yield srv
    srv.shutdown()
    srv.server_close()


def port_of(server: ThreadingHTTPServer) -> int:
    return int(server.server_address[1])


def test_metrics_endpoint(server: ThreadingHTTPServer, metrics: WorkerMetrics) -> None:
    metrics.deadletter.labels("non_finite_value").inc(3)
    metrics.samples.inc(10)
    metrics.rollups.labels("10s").inc()
    status, ctype, body = get(port_of(server), "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain")
    assert "# TYPE metrics_pipeline_deadletter_total counter" in body
    assert 'metrics_pipeline_deadletter_total{reason="non_finite_value"} 3.0' in body
    assert "metrics_pipeline_samples_in_total 10.0" in body
    assert 'metrics_pipeline_rollups_emitted_total{resolution="10s"} 1.0' in body
    for name in (
        "metrics_pipeline_late_samples_total",
        "metrics_pipeline_active_series",
        "metrics_pipeline_open_windows",
        "metrics_pipeline_watermark_lag_seconds",
        "metrics_pipeline_commit_lag_messages",
        "metrics_pipeline_flush_duration_seconds_bucket",
    ):
        assert name in body


def test_metrics_of_this_registry_only(server: ThreadingHTTPServer, metrics: WorkerMetrics) -> None:
    # A second registry (another process's metrics in the same test run) is not served.
    other = WorkerMetrics(CollectorRegistry())
    other.late.inc(99)
    metrics.late.inc(1)
    _, _, body = get(port_of(server), "/metrics")
    assert "metrics_pipeline_late_samples_total 1.0" in body
    assert "99.0" not in body


def exported(registry: CollectorRegistry) -> dict[str, float]:
    """Sample name with its labels → value, of every sample the registry serves."""
    return {
        s.name + "".join(f"{k}={v}" for k, v in sorted(s.labels.items())): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_each_stage_exports_only_what_it_can_move() -> None:
    detect, tier, worker = DetectMetrics(), TierMetrics(), WorkerMetrics()
    events = [
        AnomalyRecord(f"e{i}@{state}", "svc|eu", {"state": state})
        for i, state in enumerate(["firing", "firing", "resolved"])
    ]
    detect.count_emitted(events, "1m")
    tier.count_emitted([Rollup("k", "svc|eu", {"count": 5})], "1m")
    got = {name: exported(m.registry) for name, m in [("detect", detect), ("tier", tier)]}
    p = "metrics_pipeline_"
    assert got["detect"][p + "anomaly_events_emitted_totalstate=firing"] == 2
    assert got["detect"][p + "anomaly_events_emitted_totalstate=resolved"] == 1
    assert got["tier"][p + "rollups_emitted_totalresolution=1m"] == 1
    assert p + "anomaly_events_delivered_total" in got["detect"]
    assert p + "last_anomaly_event_delivered_timestamp_seconds" in got["detect"]
    assert p + "rollups_delivered_total" in got["tier"]
    worker_only = {n for n in exported(worker.registry) if "samples" in n}
    assert {p + "samples_in_total", p + "late_samples_total"} <= worker_only
    for stage, names in got.items():
        assert not {n for n in names if "samples" in n}, stage  # they read no samples
    assert not [n for n in got["detect"] if "rollup" in n]
    # What every stage moves is on all of them.
    for name in ("produce_errors_total", "emission_delay_seconds_count", "replay_gaps_total"):
        assert all(p + name in names for names in got.values())


def test_healthz(server: ThreadingHTTPServer) -> None:
    assert get(port_of(server), "/healthz")[::2] == (200, "ok\n")


def test_healthz_reports_a_stalled_loop(metrics: WorkerMetrics) -> None:
    stalled = Health(stall_seconds=0.0)  # every beat is already too old
    srv = serve_http(HOST, free_port(), metrics.registry, stalled)
    try:
        assert get(port_of(srv), "/healthz")[::2] == (503, "stalled\n")
        stalled.set_ready(True)
        assert get(port_of(srv), "/readyz")[0] == 503  # not ready while not alive
    finally:
        srv.shutdown()
        srv.server_close()


def test_readyz_follows_set_ready(server: ThreadingHTTPServer, health: Health) -> None:
    port = port_of(server)
    try:
        # not ready until told
        assert get(port, "/readyz")[::2] == (503, "not ready: no input partitions assigned yet\n")
        health.set_ready(True)
        assert get(port, "/readyz")[::2] == (200, "ready\n")
        health.set_ready(False)
        assert get(port, "/readyz")[0] == 503
    finally:
        health.set_ready(False)


def test_unknown_path_is_404(server: ThreadingHTTPServer) -> None:
    assert get(port_of(server), "/nope")[0] == 404


def test_shutdown_stops_serving(metrics: WorkerMetrics, health: Health) -> None:
    port = free_port()
    srv = serve_http(HOST, port, metrics.registry, health)
    assert get(port, "/healthz")[0] == 200
    srv.shutdown()
    srv.server_close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=2)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_readyz_says_kafka_is_unreachable_until_it_answers_again(
    server: ThreadingHTTPServer, health: Health, metrics: WorkerMetrics
) -> None:
    port, clock = port_of(server), Clock()
    status = KafkaStatus("127.0.0.1:9", health, metrics.kafka_reachable, clock=clock)
    health.set_ready(True)
    try:
        # A KafkaError as librdkafka's error_cb hands it over.
        status.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
        clock.now += 12
        code, _, body = get(port, "/readyz")
        assert code == 503
        assert body == (
            "not ready: Kafka at 127.0.0.1:9 unreachable for 12 s: "
            "all brokers down (1/1 brokers are down)\n"
        )
        assert "metrics_pipeline_kafka_reachable 0.0" in get(port, "/metrics")[2]
        assert get(port, "/healthz")[0] == 200  # alive: the loop still turns
        status.on_error(KafkaError(KafkaError._MSG_TIMED_OUT, "one request"))
        assert "all brokers down" in (health.reason or "")  # a request's error is not a cause
        status.reachable()  # e.g. a delivery report without error
        assert get(port, "/readyz")[::2] == (200, "ready\n")
        assert "metrics_pipeline_kafka_reachable 1.0" in get(port, "/metrics")[2]
    finally:
        health.set_ready(False)
        health.clear_problem("kafka")


def test_probe_keeps_kafka_unreachable_while_nothing_answers() -> None:
    health = Health()
    health.set_ready(True)
    status = KafkaStatus(f"{HOST}:{free_port()}", health)
    status.on_error(KafkaError(KafkaError._TRANSPORT, "Connection refused"))
    consumer = Consumer(
        {"bootstrap.servers": status.bootstrap_servers, "group.id": "probe", "log_level": 0}
    )
    try:
        status.after_consume(consumer, [])  # a metadata request to a port nobody listens on
    finally:
        consumer.close()
    assert status.down and not health.ready
    assert "connection failed (Connection refused)" in (health.reason or "")


def test_output_failures_and_parts_show_in_the_reason() -> None:
    one, two = Health(), Health()
    for h in (one, two):
        h.set_ready(True)
    status = KafkaStatus("k:9092", one)
    status.delivery_failed("rollups[3]: Broker: Message size too large")
    both = AllHealthy([one, two])
    assert not both.ready
    assert both.reason == "output not delivered: rollups[3]: Broker: Message size too large"
    status.reachable()  # a refused output stays a problem: nothing may be committed past it
    assert not one.ready
