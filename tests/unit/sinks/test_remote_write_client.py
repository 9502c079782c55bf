"""How the client reads each HTTP answer, and what it sends (auth, headers, body).

The real TSDBs cannot be made to answer 429, 503 or 401 on demand, so these tests use a tiny
loopback HTTP server that answers a scripted sequence of statuses (a fake, for those faults
only); the real servers are exercised in tests/integration/sinks/.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from pipeline.common_settings import load_settings
from pipeline.errors import ConfigError
from pipeline.sinks.backoff import Backoff
from pipeline.sinks.base import RetryableSinkError
from pipeline.sinks.remote_write.client import Refused, RemoteWriteClient
from pipeline.sinks.remote_write.settings import RemoteWriteSettings
from tests.unit.scripted_http import Scripted


@pytest.fixture
def server(scripted_http: tuple[str, Scripted]) -> tuple[str, Scripted]:
    base, script = scripted_http
    return f"{base}/api/v1/write", script


def client(url: str, **overrides: Any) -> RemoteWriteClient:
    values: dict[str, Any] = {
        "url": url,
        "request_retries": 2,
        "request_retry_initial": "10ms",
        "request_retry_max": "20ms",
    }
    values.update(overrides)
    return RemoteWriteClient(RemoteWriteSettings(**values))


def test_success_sends_the_protocol_headers_and_extra_ones(server: tuple[str, Scripted]) -> None:
    url, script = server
    c = client(url, headers={"X-Scope-OrgID": "team-a"}, bearer_token="s3cret")
    assert c.send(b"payload", c.auth_headers()) is None
    headers, body = script.requests[0]
    assert body == b"payload"
    assert headers["Content-Encoding"] == "snappy"
    assert headers["Content-Type"] == "application/x-protobuf"
    assert headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert headers["X-Scope-OrgID"] == "team-a"
    assert headers["Authorization"] == "Bearer s3cret"


def test_bearer_token_file_is_read_for_every_batch(
    server: tuple[str, Scripted], tmp_path: Path
) -> None:
    url, _ = server
    token = tmp_path / "token"
    token.write_text("one\n")
    c = client(url, bearer_token_file=token)
    assert c.auth_headers() == {"Authorization": "Bearer one"}
    token.write_text("two")
    assert c.auth_headers() == {"Authorization": "Bearer two"}


def test_basic_auth(server: tuple[str, Scripted]) -> None:
    url, script = server
    c = client(url, basic_auth_username="u", basic_auth_password="p")
    assert c.send(b"x", c.auth_headers()) is None
    assert script.requests[0][0]["Authorization"] == "Basic dTpw"


def test_5xx_and_429_are_retried_then_succeed(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.answers = [(503, "busy", {}), (429, "slow down", {"Retry-After": "0"})]
    assert client(url).send(b"x", {}) is None
    assert len(script.requests) == 3


def test_retries_run_out_into_a_retryable_error(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.answers = [(500, "boom", {})] * 3
    with pytest.raises(RetryableSinkError, match="HTTP 500: boom"):
        client(url).send(b"x", {})
    assert len(script.requests) == 3


@pytest.mark.parametrize("status", [401, 403, 404])
def test_configuration_errors_keep_the_data(server: tuple[str, Scripted], status: int) -> None:
    url, script = server
    script.answers = [(status, "no", {})]
    with pytest.raises(RetryableSinkError):
        client(url).send(b"x", {})
    assert len(script.requests) == 1  # not retried in-request: the runner backs off


def test_other_4xx_is_a_refusal_with_the_servers_message(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.answers = [(400, "out of bounds\n", {})]
    assert client(url).send(b"x", {}) == Refused(400, "out of bounds")
    assert len(script.requests) == 1


def test_a_5xx_with_a_permanent_sample_error_is_a_refusal(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.answers = [(500, "too old sample", {})]
    assert client(url).send(b"x", {}) == Refused(500, "too old sample")


def test_connection_refused_is_retryable() -> None:
    with pytest.raises(RetryableSinkError, match="ConnectionRefusedError"):
        client("http://127.0.0.1:9/api/v1/write").send(b"x", {})


def test_settings_are_checked_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="url"):
        load_settings(RemoteWriteSettings)
    with pytest.raises(ConfigError, match="headers may not set"):
        load_settings(RemoteWriteSettings, url="http://x", headers={"content-encoding": "gzip"})
    with pytest.raises(ConfigError, match="not both"):
        load_settings(
            RemoteWriteSettings,
            url="http://x",
            bearer_token="t",
            basic_auth_username="u",
            basic_auth_password="p",
        )
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(RemoteWriteSettings, url="http://x", tls_ca_file=tmp_path / "missing.pem")
    monkeypatch.setenv("METRICS_PIPELINE_URL", "http://from-env/api/v1/write")
    monkeypatch.setenv("METRICS_PIPELINE_TOPICS", '["metrics.rollups.1m"]')
    from_env = load_settings(RemoteWriteSettings, concurrency=8)
    assert from_env.url == "http://from-env/api/v1/write"
    assert from_env.topics == ["metrics.rollups.1m"]
    assert from_env.concurrency == 8
    assert load_settings(RemoteWriteSettings, url="http://flag").url == "http://flag"


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(0.1, 1.0)
    delays = [backoff.next_delay() for _ in range(8)]
    for attempt, delay in enumerate(delays):
        ceiling = min(1.0, 0.1 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 0.1


def test_a_kept_alive_connection_the_server_closed_is_replaced_without_a_retry() -> None:
    """The server answers each request with keep-alive, then closes the connection anyway (as
    one does after its idle timeout or a restart): the next request goes out on a new
    connection, even with no retries allowed."""
    listener = socket.create_server(("127.0.0.1", 0))
    connections: list[int] = []

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(body) < length:
                    body += conn.recv(65536)
                connections.append(length)
                conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/api/v1/write"
    c = client(url, request_retries=0)
    try:
        assert c.send(b"first", {}) is None
        thread.join(0.5)  # the server has closed the first connection by now
        assert c.send(b"second!", {}) is None
        thread.join(5)
        assert connections == [5, 7]
    finally:
        c.close()
        listener.close()
