"""The series budget in a running worker: overflow rollups, the overflow counter, forgetting."""

from __future__ import annotations

import time

import orjson
import pytest

from pipeline.core.cardinality import OVERFLOW_LABEL
from pipeline.kafka.admin import TopicSpec, ensure_topics
from tests.support.kafka_helpers import produce_all

from .harness import wait_for, worker_settings, worker_thread

pytestmark = pytest.mark.slow  # every test here uses the broker

BASE_MS = int(time.time() * 1000) - 120_000


def test_worker_sends_series_over_budget_to_overflow_and_forgets_them(
    kafka_bootstrap: str, unique_name: str
) -> None:
    settings = worker_settings(
        kafka_bootstrap,
        unique_name,
        max_series_per_metric=5,
        series_idle_timeout="1s",
        topic_partitions=1,
    )
    ensure_topics(kafka_bootstrap, [TopicSpec(settings.input_topic, 1)])
    samples = [
        {
            "service": "shop",
            "region": "eu",
            "name": "requests",
            "type": "timer",
            "labels": {"request_id": f"r{i}"},
            "value": float(i),
            "ts": BASE_MS + i,  # one window
        }
        for i in range(40)
    ]
    produce_all(kafka_bootstrap, settings.input_topic, [(b"shop|eu", orjson.dumps(samples))])
    with worker_thread(settings) as worker:
        outputs = wait_for(settings, 1, len(samples), timeout=90)
        deadline = time.monotonic() + 30
        while len(worker.series) and time.monotonic() < deadline:
            time.sleep(0.5)  # windows closed by the idle rule; then the idle sweep
        held = len(worker.series)
        overflowed = worker.metrics.series_overflow.labels("metric")._value.get()
    bodies = list(outputs.rollups.values())
    own = [b for b in bodies if OVERFLOW_LABEL not in b["series"]["labels"]]
    (overflow,) = [b for b in bodies if OVERFLOW_LABEL in b["series"]["labels"]]
    assert sorted(b["series"]["labels"]["request_id"] for b in own) == [f"r{i}" for i in range(5)]
    assert overflow["count"] == 35 and overflow["sum"] == sum(range(5, 40))
    assert overflowed == 35
    assert outputs.samples_in_rollups == len(samples)
    assert held == 0, "idle series were not forgotten"
