"""`metrics-pipeline sink remote-write` as a process: stores, serves /metrics, drains on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import orjson
import pytest

from load.tsdb import TsdbServer
from pipeline.loopback import free_port
from tests.support.kafka_helpers import read_all

from .helpers import (
    differences,
    expected_points,
    group_committed,
    real_rollups,
    recent_spec,
    topic_ends,
)


@pytest.mark.slow
def test_cli_stores_serves_metrics_and_stops_on_sigterm(
    kafka_bootstrap: str, unique_name: str, victoria_metrics: TsdbServer
) -> None:
    (topic,) = real_rollups(kafka_bootstrap, unique_name, recent_spec(seed=4, samples=4_000))
    group = f"sink-cli-{unique_name}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_PIPELINE_")} | {
        "METRICS_PIPELINE_SESSION_TIMEOUT_MS": "6000",
        "METRICS_PIPELINE_CREATE_TOPICS": "true",  # its dead-letter topic is new
        "METRICS_PIPELINE_DEADLETTER_TOPIC": f"deadletter-cli-{unique_name}",
        "METRICS_PIPELINE_BATCH_RECORDS": "100",
    }
    command = [
        sys.executable, "-m", "pipeline.cli", "sink", "remote-write",
        "--url", victoria_metrics.write_url, "--topics", topic, "--group-id", group,
        "--bootstrap-servers", kafka_bootstrap, "--http-port", str(port),
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ends = topic_ends(kafka_bootstrap, [topic])
    try:
        deadline = time.monotonic() + 90
        while group_committed(kafka_bootstrap, group, ends) != ends:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "the sink did not commit the whole topic"
            time.sleep(0.5)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        rollups = [orjson.loads(r.value or b"") for r in read_all(kafka_bootstrap, topic)]
        line = f'metrics_pipeline_sink_records_stored_total{{sink="remote_write"}} {len(rollups)}.0'
        assert line in metrics
    finally:
        os.kill(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 0, output
    assert "stopped" in output
    problems = differences(
        victoria_metrics.samples('{__name__=~".+"}'), expected_points(rollups), rel=1e-12
    )
    assert not problems, problems[:5]
