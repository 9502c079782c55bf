"""`metrics-pipeline load --partitioner`: records land where the imitated client would put them."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.loadgen.build import generate
from pipeline.loadgen.partitioning import PARTITIONERS, partition_of
from pipeline.loadgen.produce import produce
from pipeline.loadgen.spec import WorkloadSpec
from tests.support.kafka_helpers import read_all

pytestmark = pytest.mark.slow  # every test here uses the broker

PARTITIONS = 8
SPEC = WorkloadSpec(seed=5, services=10, regions=4, samples=1_500, duration_s=30.0)


@pytest.mark.parametrize("name", ["consistent_random", "murmur2_random", "fnv1a"])
def test_key_hashing_partitioners_match_their_clients(
    kafka_bootstrap: str, unique_name: str, name: str
) -> None:
    topic = f"raw-{unique_name}"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, PARTITIONS)])
    choice = PARTITIONERS[name]
    stats = produce(kafka_bootstrap, topic, generate(SPEC).messages(), partitioner=choice)
    records = read_all(kafka_bootstrap, topic)
    assert len(records) == stats.messages == SPEC.samples
    for record in records:
        assert record.key is not None
        assert record.partition == partition_of(choice, record.key, PARTITIONS), record.key
    assert len({r.partition for r in records}) > 1


@pytest.mark.parametrize("name", ["random", "null-key"])
def test_partitioners_that_ignore_keys(kafka_bootstrap: str, unique_name: str, name: str) -> None:
    topic = f"raw-{unique_name}"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, PARTITIONS)])
    produce(kafka_bootstrap, topic, generate(SPEC).messages(), partitioner=name)
    records = read_all(kafka_bootstrap, topic)
    assert len(records) == SPEC.samples
    keys = {r.key for r in records}
    assert keys == {None} if name == "null-key" else None not in keys
    if name == "random":  # one key's records end up on several partitions
        by_key: dict[bytes | None, set[int]] = {}
        for record in records:
            by_key.setdefault(record.key, set()).add(record.partition)
        assert max(len(parts) for parts in by_key.values()) > 1


def test_load_command_reads_env_and_config_and_reports_its_partitioner(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = f"raw-{unique_name}"
    config = tmp_path / "pipeline.yaml"
    # The worker's settings file: input_topic and topic_partitions become --topic/--partitions.
    config.write_text(
        f"input_topic: {topic}\ntopic_partitions: {PARTITIONS}\n"
        "kafka_config:\n  client.id: load-test\n"
    )
    monkeypatch.setenv("METRICS_PIPELINE_BOOTSTRAP_SERVERS", kafka_bootstrap)
    manifest = tmp_path / "manifest.json"
    args = ["load", "--config", str(config), "--samples", "400", "--services", "3",
            "--regions", "2", "--duration", "20", "--partitioner", "fnv1a",
            "--key-format", "instance", "--manifest", str(manifest)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    body = orjson.loads(manifest.read_text())
    assert (body["partitioner"], body["librdkafka_partitioner"], body["key_format"]) == (
        "fnv1a",
        "fnv1a_random",
        "instance",
    )
    records = read_all(kafka_bootstrap, topic)
    assert len(records) == body["messages"] == 400
    for record in records:
        assert record.key is not None and record.value is not None
        assert record.key == orjson.loads(record.value)["instance"].encode()
        assert record.partition == partition_of(PARTITIONERS["fnv1a"], record.key, PARTITIONS)

    bad = CliRunner().invoke(app, ["load", "--config", str(config), "--partitioner", "crc64"])
    assert bad.exit_code == 2 and "unknown partitioner" in bad.output
    config.write_text("kafka_config:\n  partitioner: murmur2\n")  # would contradict the manifest
    bad = CliRunner().invoke(app, ["load", "--config", str(config)])
    assert bad.exit_code == 2 and "--partitioner" in bad.output
