"""Tier workers on the real broker: raw → 10 s → 1 m → 5 m, against the raw data, and kill -9."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import numpy as np
import pytest

from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.kafka.tier_worker import TierWorker
from pipeline.loadgen.build import Workload, generate
from pipeline.loadgen.produce import produce
from pipeline.settings import TierSettings, WorkerSettings
from tests.support.workloads import mixed_spec

from .harness import (
    expected_rollups,
    read_outputs,
    rollups_by_window,
    stage_thread,
    worker_process,
    worker_settings,
    worker_thread,
)

PARTITIONS = 4
QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999)


def workload() -> Workload:
    return generate(
        mixed_spec(
            seed=21,
            services=4,
            regions=2,
            duration_s=600.0,
            samples=60_000,
            late_fraction=0.0,
        )
    )


def tier_settings(base: WorkerSettings, frm: str, to: str, **overrides: Any) -> TierSettings:
    values: dict[str, Any] = {
        "bootstrap_servers": base.bootstrap_servers,
        "group_id": base.group_id + "-tier",
        "rollup_topic_prefix": base.rollup_topic_prefix,
        "deadletter_topic": base.deadletter_topic,
        "checkpoint_topic": base.checkpoint_topic,
        "input_resolution": frm,
        "resolution": to,
        "idle_timeout": "2s",
        "session_timeout_ms": 6000,
        "http_port": 0,
        "topic_partitions": PARTITIONS,
    }
    values.update(overrides)
    return TierSettings(**values)


def wait_for_count(settings: TierSettings, total: int, timeout: float = 120.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        counted = read_outputs(settings).samples_in_rollups
        if counted >= total or time.monotonic() > deadline:
            return counted
        time.sleep(1.0)


def assert_matches_raw(settings: TierSettings, work: Workload, resolution_ms: int) -> int:
    got = rollups_by_window(read_outputs(settings))
    expected = expected_rollups(work.truth, resolution_ms)
    assert got.keys() == expected.keys()
    for key, want in expected.items():
        body = got[key]
        assert body["resolution_ms"] == resolution_ms
        assert body["count"] == want.count
        assert body["min"] == want.min and body["max"] == want.max
        assert body["sum"] == pytest.approx(want.sum, rel=1e-9, abs=1e-9)
        if body["series"]["type"] == "counter":
            assert body["rate"] == pytest.approx(want.sum / (resolution_ms / 1000), rel=1e-9)
            continue
        # The 10 s children hold every value exactly, so the merged percentiles are exact.
        np.testing.assert_allclose(
            list(body["percentiles"].values()), np.quantile(want.values, QUANTILES), rtol=1e-9
        )
    return len(expected)


@pytest.mark.slow
def test_tier_chain_equals_the_raw_minutes_and_five_minutes(
    kafka_bootstrap: str, unique_name: str
) -> None:
    work = workload()
    base = worker_settings(kafka_bootstrap, unique_name)
    ensure_topics(kafka_bootstrap, [TopicSpec(base.input_topic, PARTITIONS)])
    produce(kafka_bootstrap, base.input_topic, work.messages())
    # A quiet stream flushes stage by stage: each waits longer than the stage below it.
    minute = tier_settings(base, "10s", "1m", idle_timeout="4s")
    five = tier_settings(base, "1m", "5m", idle_timeout="8s")
    with (
        worker_thread(base),
        stage_thread(TierWorker(minute)),
        stage_thread(TierWorker(five)) as five_worker,
    ):
        expected_total = sum(e.count for e in expected_rollups(work.truth).values())
        assert wait_for_count(five, expected_total) == expected_total
        assert not five_worker.failed
    assert assert_matches_raw(minute, work, 60_000) > 0
    assert assert_matches_raw(five, work, 300_000) > 0
    outputs = read_outputs(five)
    assert outputs.deadletter_samples() == {}  # nothing late or invalid on the way


@pytest.mark.slow
def test_tier_kill_9_and_restart_emits_the_same_rollups(
    kafka_bootstrap: str, unique_name: str, tmp_path: Any
) -> None:
    work = workload()
    # The feed pauses below while the tier starts: quiet partitions must not flush meanwhile.
    base = worker_settings(kafka_bootstrap, unique_name, idle_timeout="15s")
    ensure_topics(kafka_bootstrap, [TopicSpec(base.input_topic, PARTITIONS)])
    minute = tier_settings(base, "10s", "1m", commit_interval="300ms", idle_timeout="30s")
    expected_total = sum(e.count for e in expected_rollups(work.truth).values())
    chunks = list(work.chunks(chunk_samples=6_000))
    log = str(tmp_path / "tier.log")
    command = ("tier", "--from", "10s", "--to", "1m")
    with worker_thread(base):
        first = worker_process(minute, log, command)
        try:
            for i, chunk in enumerate(chunks):
                produce(kafka_bootstrap, base.input_topic, chunk)
                if i == len(chunks) // 2:
                    deadline = time.monotonic() + 30
                    while not read_outputs(minute).rollups and time.monotonic() < deadline:
                        time.sleep(0.5)
                    os.kill(first.pid, signal.SIGKILL)
                    first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        assert read_outputs(minute).rollups, "the tier emitted nothing before it was killed"
        second = worker_process(minute, log, command)
        try:
            counted = wait_for_count(minute, expected_total, timeout=180)
            assert counted == expected_total, read_outputs(base).deadletter_samples()
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
    # read_outputs asserts that every re-emitted key carried identical bytes.
    assert assert_matches_raw(minute, work, 60_000) > 0
