"""/metrics, /healthz and /readyz served by `serve_http` on a loopback port."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry

from pipeline.observability import Health, WorkerMetrics, serve_http

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
        assert get(port, "/readyz")[::2] == (503, "not ready\n")  # not ready until told
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
