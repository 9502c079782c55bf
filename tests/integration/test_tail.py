"""`metrics-pipeline tail`: rollups, anomalies and dead letters read back from a real topic."""

from __future__ import annotations

import orjson
import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.kafka.admin import TopicSpec, ensure_topics

pytestmark = pytest.mark.slow  # every test here uses the broker

runner = CliRunner()


def rollup(series: str, start: int) -> dict[str, object]:
    return {
        "series_key": series,
        "resolution": "10s",
        "window_start": start,
        "count": 2,
        "mean": 1.5,
        "percentiles": {"p99": 2.0},
        "rate": 0.2,
    }


def deadletter(reason: str, offset: int) -> dict[str, object]:
    return {
        "reason": reason,
        "stage": "worker",
        "topic": "metrics.raw",
        "partition": 0,
        "offset": offset,
        "samples": 1,
        "error": "detail",
    }


def produce(bootstrap: str, topic: str, values: list[dict[str, object]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i, value in enumerate(values):
        producer.produce(topic, orjson.dumps(value), key=str(i).encode(), partition=i % 2)
    assert producer.flush(30) == 0


def tail(bootstrap: str, *args: str) -> list[str]:
    result = runner.invoke(app, ["tail", *args, "--bootstrap-servers", bootstrap])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_tail_rollups_and_dead_letters(kafka_bootstrap: str, unique_name: str) -> None:
    rollups, dead = f"rollups-{unique_name}", f"dl-{unique_name}"
    ensure_topics(kafka_bootstrap, [TopicSpec(rollups, 2), TopicSpec(dead, 2)])
    sent = [rollup(f"svc|r{i % 3}|lat", 1_767_225_600_000 + 10_000 * i) for i in range(30)]
    produce(kafka_bootstrap, rollups, sent)
    produce(
        kafka_bootstrap,
        dead,
        [deadletter("late", 1), deadletter("malformed_json", 2), deadletter("late", 3)],
    )

    everything = tail(kafka_bootstrap, rollups, "--from-beginning", "--format", "json")
    assert sorted(map(orjson.loads, everything), key=str) == sorted(sent, key=str)

    last = tail(kafka_bootstrap, rollups, "--last", "2", "--format", "json")
    assert len(last) == 4  # two per partition
    expected_last = sent[-4:]
    assert sorted(map(orjson.loads, last), key=str) == sorted(expected_last, key=str)

    one_series = tail(
        kafka_bootstrap, rollups, "--from-beginning", "--series", "|r1|", "--format", "json"
    )
    assert len(one_series) == 10

    table = tail(kafka_bootstrap, dead, "--from-beginning", "--reason", "late")
    assert table[0].split()[:3] == ["p@offset", "reason", "stage"]
    assert [line.split()[1] for line in table[1:]] == ["late", "late"]


def test_tail_of_a_missing_topic_names_it(kafka_bootstrap: str, unique_name: str) -> None:
    result = runner.invoke(
        app, ["tail", f"absent-{unique_name}", "--bootstrap-servers", kafka_bootstrap]
    )
    assert result.exit_code == 2
    assert f"topic 'absent-{unique_name}' does not exist" in result.output
