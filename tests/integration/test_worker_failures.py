"""Crash, restart, rebalance and mis-keyed input: the delivery guarantees (docs/guarantees.md)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.loadgen.build import generate
from pipeline.loadgen.produce import produce
from pipeline.loadgen.spec import WorkloadSpec
from tests.support.workloads import mixed_spec

from .harness import (
    expected_rollups,
    read_outputs,
    rollups_by_window,
    wait_for,
    worker_process,
    worker_settings,
    worker_thread,
)

PARTITIONS = 4


def spec(**overrides: Any) -> WorkloadSpec:
    return mixed_spec(
        **{
            "seed": 5,
            "services": 5,
            "regions": 2,
            "duration_s": 120.0,
            "samples": 60_000,
            **overrides,
        }
    )


@pytest.mark.slow
def test_kill_9_mid_stream_then_restart_loses_nothing(
    kafka_bootstrap: str, unique_name: str, tmp_path: Any
) -> None:
    workload = generate(spec())
    # The feed pauses below until the first rollups appear; a partition idle for longer than
    # idle_timeout would close its windows early (by design) and make later samples late.
    settings = worker_settings(
        kafka_bootstrap, unique_name, commit_interval="500ms", idle_timeout="20s"
    )
    ensure_topics(kafka_bootstrap, [TopicSpec(settings.input_topic, PARTITIONS)])
    chunks = list(workload.chunks(chunk_samples=5_000))
    log = str(tmp_path / "worker.log")

    first = worker_process(settings, log)
    killed_with_output = 0
    try:
        # Feed the stream while the worker runs; kill it once it has emitted part of it.
        for i, chunk in enumerate(chunks):
            produce(kafka_bootstrap, settings.input_topic, chunk)
            if i == len(chunks) // 2:
                deadline = time.monotonic() + 12
                while time.monotonic() < deadline:
                    killed_with_output = len(read_outputs(settings, PARTITIONS).rollups)
                    if killed_with_output:
                        break
                    time.sleep(0.5)
                os.kill(first.pid, signal.SIGKILL)
                first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert killed_with_output > 0, "the worker emitted nothing before it was killed"

    second = worker_process(settings, log)
    try:
        outputs = wait_for(settings, PARTITIONS, workload.manifest.samples_total, timeout=180)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0, "SIGTERM must drain and exit cleanly"

    assert outputs.deadletter_samples() == {}, "nothing in this workload is late or invalid"
    expected = expected_rollups(workload.truth)
    got = rollups_by_window(outputs)
    assert set(got) == set(expected)  # every (series, window) emitted
    assert {k: v["count"] for k, v in got.items()} == {k: e.count for k, e in expected.items()}
    for key, exp in expected.items():
        assert got[key]["sum"] == pytest.approx(exp.sum, rel=1e-9, abs=1e-9)
    # read_outputs already asserted that every duplicate key carries identical bytes.
    assert outputs.samples_accounted == workload.manifest.samples_total


@pytest.mark.slow
def test_two_workers_in_one_group_equal_one(kafka_bootstrap: str, unique_name: str) -> None:
    workload = generate(spec(samples=40_000))
    total = workload.manifest.samples_total
    one = worker_settings(kafka_bootstrap, unique_name + "-one")
    two = worker_settings(
        kafka_bootstrap,
        unique_name + "-two",
        input_topic=one.input_topic,
    )
    ensure_topics(kafka_bootstrap, [TopicSpec(one.input_topic, PARTITIONS)])
    produce(kafka_bootstrap, one.input_topic, workload.messages())

    with worker_thread(one):
        single = wait_for(one, PARTITIONS, total)
    with worker_thread(two), worker_thread(two):
        pair = wait_for(two, PARTITIONS, total)

    assert single.samples_accounted == total
    assert {k: v for k, v in single.rollups.items()} == pair.rollups


@pytest.mark.slow
def test_mis_keyed_samples_land_in_their_series_window(
    kafka_bootstrap: str, unique_name: str
) -> None:
    workload = generate(spec(samples=20_000, mismatched_key_fraction=0.05, cumulative_counters=0))
    manifest = workload.manifest
    assert manifest.mismatched_key_samples > 0
    # Forwarded samples reach their owner after it has read ahead; at backfill speed they
    # would be late for a 5 s lateness, so give the whole stream room.
    settings = worker_settings(kafka_bootstrap, unique_name, allowed_lateness="10m")
    ensure_topics(kafka_bootstrap, [TopicSpec(settings.input_topic, PARTITIONS)])
    produce(kafka_bootstrap, settings.input_topic, workload.messages())
    with worker_thread(settings) as worker:
        outputs = wait_for(settings, PARTITIONS, manifest.samples_total)
        forwarded = worker.metrics.forwarded._value.get()
    assert forwarded > 0
    got = rollups_by_window(outputs)
    expected = expected_rollups(workload.truth)
    # One rollup per (series, window) with every sample of it: no partial twin elsewhere.
    assert {k: v["count"] for k, v in got.items()} == {k: e.count for k, e in expected.items()}
