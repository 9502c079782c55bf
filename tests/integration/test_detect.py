"""The detector worker on the real broker: episodes out, and the same episodes after kill -9."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from confluent_kafka import Producer

from pipeline.core.detect.detector import DetectConfig, PartitionDetector
from pipeline.kafka.admin import TopicSpec, UnknownTopicError, ensure_topics
from pipeline.kafka.detect_worker import DetectWorker
from pipeline.settings import DetectSettings
from tests.support.kafka_helpers import read_all
from tests.support.synthetic_rollups import MINUTE, START, rollup_body, stream

from .harness import stage_thread, worker_process

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "anomaly.schema.json").read_text())


def detect_settings(bootstrap: str, name: str, **overrides: Any) -> DetectSettings:
    values: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": f"detect-{name}",
        "rollup_topic_prefix": f"rollups-{name}.",
        "anomaly_topic": f"anomalies-{name}",
        "deadletter_topic": f"deadletter-{name}",
        "checkpoint_topic": f"checkpoints-{name}",
        "session_timeout_ms": 6000,
        "http_port": 0,
        "topic_partitions": 1,
        "idle_timeout": "10m",
        "commit_interval": "300ms",
    }
    values.update(overrides)
    return DetectSettings(**values)


def incident_records() -> list[bytes]:
    """Three services over 400 minutes: a p99 spike on b, c silent from minute 300."""
    spike = range(150, 170)
    records = stream(
        400,
        p99=lambda s, m, v: v * 5 if s == "b" and m in spike else v,
        silent=lambda s, m: s == "c" and m >= 300,
    )
    out = []
    for _, r in records:
        minute = (r.window_start - START) // MINUTE
        body = rollup_body(r.series.service, minute, r.percentiles["p99"], r.rate)
        out.append(orjson.dumps(body))
    return out


def expected_events(records: list[bytes], config: DetectConfig | None = None) -> dict[str, bytes]:
    """What the core detector emits for the same partition order (the worker must agree)."""
    from pipeline.core.rollup_wire import decode_rollup

    detector = PartitionDetector("x", 0, config or DetectConfig())
    decoded = [(i, decode_rollup(r, MINUTE)) for i, r in enumerate(records)]
    return {e.key: e.encode() for e in detector.process(decoded, len(decoded)).events}


def produce(bootstrap: str, topic: str, records: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for value in records:
        producer.produce(topic, value, b"svc|eu", partition=0)
    producer.flush(30)


def anomalies(bootstrap: str, topic: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for record in read_all(bootstrap, topic):
        assert record.key is not None and record.value is not None
        key = record.key.decode()
        assert out.get(key, record.value) == record.value, "re-emitted with other content"
        out[key] = record.value
    return out


def wait_for_events(
    bootstrap: str, topic: str, count: int, timeout: float = 90
) -> dict[str, bytes]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = anomalies(bootstrap, topic)
        except (AssertionError, UnknownTopicError):  # the worker has not created it yet
            got = {}
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


@pytest.mark.slow
def test_detector_worker_emits_the_episodes_and_dead_letters_garbage(
    kafka_bootstrap: str, unique_name: str
) -> None:
    settings = detect_settings(kafka_bootstrap, unique_name)
    ensure_topics(kafka_bootstrap, [TopicSpec(settings.source_topic, 1)])
    records = incident_records()
    expected = expected_events(records)
    assert {orjson.loads(v)["kind"] for v in expected.values()} == {"deviation", "absence"}
    produce(kafka_bootstrap, settings.source_topic, [*records[:500], b"{oops", *records[500:]])
    with stage_thread(DetectWorker(settings)) as detector:
        got = wait_for_events(kafka_bootstrap, settings.anomaly_topic, len(expected))
    assert got.keys() == expected.keys()
    for value in got.values():
        jsonschema.validate(orjson.loads(value), SCHEMA)
    dead = [
        orjson.loads(r.value or b"") for r in read_all(kafka_bootstrap, settings.deadletter_topic)
    ]
    assert [d["reason"] for d in dead] == ["malformed_json"]
    assert dead[0]["stage"] == "detect"
    # Its own metrics count its events (all delivered once the stage stopped), by state; it
    # exports none of the rollup or sample counters, which it could never move.
    samples = [s for f in detector.metrics.registry.collect() for s in f.samples]
    emitted = {
        s.labels["state"]: s.value
        for s in samples
        if s.name == "metrics_pipeline_anomaly_events_emitted_total"
    }
    states = Counter(orjson.loads(v)["state"] for v in expected.values())
    assert emitted == dict(states) and set(states) == {"firing", "resolved"}
    delivered = [
        s.value for s in samples if s.name == "metrics_pipeline_anomaly_events_delivered_total"
    ]
    assert delivered == [len(expected)]
    assert [s.value for s in samples if s.name == "metrics_pipeline_deadletter_total"] == [1]
    rollup_or_sample = (
        "metrics_pipeline_rollup",
        "metrics_pipeline_samples_",
        "metrics_pipeline_late",
    )
    assert not [s.name for s in samples if s.name.startswith(rollup_or_sample)]


@pytest.mark.slow
def test_detector_kill_9_mid_incident_then_restart_emits_the_same_episodes(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    settings = detect_settings(kafka_bootstrap, unique_name)
    ensure_topics(kafka_bootstrap, [TopicSpec(settings.source_topic, 1)])
    records = incident_records()
    expected = expected_events(records)
    log = str(tmp_path / "detect.log")
    first = worker_process(settings, log, ("detect",))
    try:
        # Up to minute 160: the spike on b has fired and is still going on.
        cut = next(
            i
            for i, r in enumerate(records)
            if orjson.loads(r)["window_start"] >= START + 160 * MINUTE
        )
        produce(kafka_bootstrap, settings.source_topic, records[:cut])
        fired = wait_for_events(kafka_bootstrap, settings.anomaly_topic, 1, timeout=60)
        assert {orjson.loads(v)["state"] for v in fired.values()} == {"firing"}
        time.sleep(1.0)  # let a checkpoint with the open episode be written
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    produce(kafka_bootstrap, settings.source_topic, records[cut:])
    second = worker_process(settings, log, ("detect",))
    try:
        got = wait_for_events(kafka_bootstrap, settings.anomaly_topic, len(expected), timeout=120)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    # Same keys (episode ids) and identical bytes: the resolution after the restart belongs to
    # the episode that fired before it.
    assert got == expected


@pytest.mark.slow
def test_the_detect_command_survives_a_series_silent_for_a_day_mid_deviation_and_restarts(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    """b's p99 deviates, then b stops for longer than `forget_windows` while a keeps the
    partition's clock moving: the command used to die in its next checkpoint (KeyError for the
    forgotten series' open deviation). Now the episode ends as `expired`, the command keeps
    checkpointing, stops cleanly, and a restart carries on to the same events as the core."""
    settings = detect_settings(
        kafka_bootstrap, unique_name, forget_windows=120, statistics=["p99", "rate"]
    )
    ensure_topics(kafka_bootstrap, [TopicSpec(settings.source_topic, 1)])
    rows = stream(
        400,
        services=("a", "b"),
        p99=lambda s, m, v: v * 5 if s == "b" and m >= 100 else v,
        silent=lambda s, m: s == "b" and 110 <= m < 380,
    )
    records = [
        orjson.dumps(
            rollup_body(r.series.service, (r.window_start - START) // MINUTE,
                        r.percentiles["p99"], r.rate)
        )
        for _, r in rows
    ]  # fmt: skip
    expected = expected_events(records, settings.detect())
    cut = next(
        i for i, r in enumerate(rows) if r[1].window_start >= START + 300 * MINUTE
    )  # past the forgetting (minute 110 + 120), b still silent
    before = expected_events(records[:cut], settings.detect())
    ended = [orjson.loads(v) for v in before.values() if orjson.loads(v)["state"] == "resolved"]
    assert {(e["kind"], e["ended_by"]) for e in ended} == {
        ("deviation", "expired"), ("absence", "expired"),
    }  # fmt: skip
    log = str(tmp_path / "detect.log")
    first = worker_process(settings, log, ("detect",))
    try:
        produce(kafka_bootstrap, settings.source_topic, records[:cut])
        got = wait_for_events(kafka_bootstrap, settings.anomaly_topic, len(before), timeout=90)
        assert got == before
        time.sleep(2.0)  # several checkpoint intervals after the series was forgotten
        assert first.poll() is None, Path(log).read_text()[-2000:]
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0, Path(log).read_text()[-2000:]
    produce(kafka_bootstrap, settings.source_topic, records[cut:])
    second = worker_process(settings, log, ("detect",))
    try:
        got = wait_for_events(kafka_bootstrap, settings.anomaly_topic, len(expected), timeout=90)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, Path(log).read_text()[-2000:]
    assert got == expected
    assert "KeyError" not in Path(log).read_text()
