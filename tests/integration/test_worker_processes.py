"""`metrics-pipeline worker --processes N`: child workers in one group behind one endpoint, on
the real broker — the same rollups as one process, a killed child restarted without loss."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from load.worker_run import process_tree
from pipeline.demo.summary import OutputSummary
from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.loadgen.build import generate
from pipeline.loadgen.produce import produce
from pipeline.loadgen.spec import WorkloadSpec
from pipeline.loopback import free_port
from pipeline.settings import WorkerSettings
from tests.support.workloads import mixed_spec

from .harness import (
    expected_rollups,
    read_outputs,
    rollups_by_window,
    settings_env,
    wait_for,
    worker_settings,
    worker_thread,
)

PARTITIONS = 4
_P = "metrics_pipeline_"


def spec(**overrides: Any) -> WorkloadSpec:
    return mixed_spec(
        **{"seed": 7, "services": 5, "regions": 2, "duration_s": 120.0, "samples": 40_000}
        | overrides
    )


def supervisor(settings: WorkerSettings, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = settings_env(settings)
    env["METRICS_PIPELINE_HTTP_PORT"] = str(port)
    env["METRICS_PIPELINE_HTTP_HOST"] = "127.0.0.1"
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker", "--processes", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""


def metrics(port: int) -> dict[str, float]:
    """Unlabelled samples of the supervisor's merged /metrics ({} while it does not answer)."""
    status, text = get(port, "/metrics")
    if status != 200:
        return {}
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.labels
    }


def until(
    proc: subprocess.Popen[bytes],
    log: Path,
    check: Callable[[], bool],
    what: str,
    timeout: float = 90.0,
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, f"supervisor exited: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def outputs_with(
    proc: subprocess.Popen[bytes], log: Path, settings: WorkerSettings, total: int
) -> OutputSummary:
    """The outputs once they account for `total` samples."""
    until(
        proc,
        log,
        lambda: read_outputs(settings).samples_accounted >= total,
        f"{total:,} samples in the outputs",
        timeout=180,
    )
    return read_outputs(settings)


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    children = process_tree(proc.pid)[1:]
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(90)
    assert code == 0, f"SIGTERM must drain every child and exit 0: {log.read_text()[-3000:]}"
    for pid in children:  # reaped by the supervisor: no /proc entry left
        assert not os.path.exists(f"/proc/{pid}"), f"child {pid} outlived its supervisor"


@pytest.mark.slow
def test_two_processes_emit_the_same_rollups_as_one(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    workload = generate(spec())
    total = workload.manifest.samples_total
    one = worker_settings(kafka_bootstrap, unique_name + "-one")
    two = worker_settings(kafka_bootstrap, unique_name + "-two", input_topic=one.input_topic)
    ensure_topics(kafka_bootstrap, [TopicSpec(one.input_topic, PARTITIONS)])
    produce(kafka_bootstrap, one.input_topic, workload.messages())
    with worker_thread(one):
        single = wait_for(one, PARTITIONS, total)

    port, log = free_port(), tmp_path / "supervisor.log"
    proc = supervisor(two, port, log)
    try:
        pair = outputs_with(proc, log, two, total)
        # Both children are group members: the merged gauges add up to the whole topic.
        until(
            proc,
            log,
            lambda: (
                metrics(port).get(_P + "assigned_partitions") == PARTITIONS
                and metrics(port).get(_P + "worker_processes_running") == 2
            ),
            "both children to own the partitions",
        )
        merged = metrics(port)
        assert merged[_P + "samples_aggregated_total"] >= total
        assert merged[_P + "worker_process_restarts_total"] == 0
        assert get(port, "/healthz")[0] == 200
        until(proc, log, lambda: get(port, "/readyz")[0] == 200, "/readyz")
        assert len(process_tree(proc.pid)) == 3  # the supervisor and its two workers
        stop(proc, log)
    finally:
        if proc.poll() is None:  # the test failed: leave no process behind
            proc.kill()
            proc.wait()

    assert single.samples_accounted == total
    assert single.rollups == pair.rollups  # same keys, every field equal


@pytest.mark.slow
def test_a_killed_child_is_restarted_and_nothing_is_lost(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    workload = generate(spec(seed=9))
    # The feed pauses until the first rollups appear; a partition idle for longer than
    # idle_timeout would close its windows early (by design) and make later samples late.
    settings = worker_settings(
        kafka_bootstrap, unique_name, commit_interval="500ms", idle_timeout="15s"
    )
    ensure_topics(kafka_bootstrap, [TopicSpec(settings.input_topic, PARTITIONS)])
    chunks = list(workload.chunks(chunk_samples=5_000))
    port, log = free_port(), tmp_path / "supervisor.log"
    proc = supervisor(settings, port, log)
    try:
        for i, chunk in enumerate(chunks):
            produce(kafka_bootstrap, settings.input_topic, chunk)
            if i == len(chunks) // 2:  # mid-stream, once the children have emitted something
                until(proc, log, lambda: len(read_outputs(settings).rollups) > 0, "rollups")
                until(proc, log, lambda: len(process_tree(proc.pid)) == 3, "both children")
                victim = process_tree(proc.pid)[1]
                os.kill(victim, signal.SIGKILL)  # the rest of the stream flows meanwhile
        until(
            proc,
            log,
            lambda: (
                metrics(port).get(_P + "worker_process_restarts_total") == 1
                and metrics(port).get(_P + "worker_processes_running") == 2
            ),
            "the killed child to be started again",
        )
        assert victim not in process_tree(proc.pid)
        until(proc, log, lambda: get(port, "/readyz")[0] == 200, "ready after the restart")
        outputs = outputs_with(proc, log, settings, workload.manifest.samples_total)
        assert metrics(port)[_P + "worker_process_restarts_total"] == 1
        stop(proc, log)
    finally:
        if proc.poll() is None:  # the test failed: leave no process behind
            proc.kill()
            proc.wait()

    assert outputs.deadletter_samples() == {}, "nothing in this workload is late or invalid"
    expected = expected_rollups(workload.truth)
    got = rollups_by_window(outputs)
    assert set(got) == set(expected)
    assert {k: v["count"] for k, v in got.items()} == {k: e.count for k, e in expected.items()}
    for key, exp in expected.items():
        assert got[key]["sum"] == pytest.approx(exp.sum, rel=1e-9, abs=1e-9)
    # read_outputs already asserted that every duplicate key carries identical bytes.
    assert outputs.samples_accounted == workload.manifest.samples_total
