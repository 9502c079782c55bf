"""`metrics-pipeline topics create|describe|check`, verifying workers, and the one-line failures
(unknown librdkafka key, closed port, missing topic) — against the session's real broker."""

from __future__ import annotations

import socket
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.kafka.admin import TopicSpec, ensure_present, ensure_topics, partition_count

runner = CliRunner()


@pytest.fixture(autouse=True)
def verify_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    """The production default (tests/conftest.py turns creation on for every other test)."""
    monkeypatch.delenv("METRICS_PIPELINE_CREATE_TOPICS", raising=False)


def settings_file(tmp_path: Path, name: str, extra: str = "") -> Path:
    """The worker's settings file; `topics` reads it too (and ignores what it does not need)."""
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        f"input_topic: raw-{name}\ngroup_id: g-{name}\nrollup_topic_prefix: rollups-{name}.\n"
        f"deadletter_topic: dl-{name}\ncheckpoint_topic: cp-{name}\n"
        f"topic_partitions: 3\ntopic_replication_factor: 1\n"
        "create_topics: false\nhttp_port: 0\n" + extra
    )
    return path


@pytest.mark.slow
def test_create_then_check_the_whole_topology(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    config = settings_file(
        tmp_path,
        unique_name,
        "topic_retention:\n  rollups.1h: 90d\ntopic_partitions_by_role:\n  raw: 4\n",
    )
    args = ["-c", str(config), "--bootstrap-servers", kafka_bootstrap]
    missing = runner.invoke(app, ["topics", "check", *args])
    assert missing.exit_code == 2
    assert f"raw-{unique_name}: missing" in missing.output
    assert "metrics-pipeline topics create" in missing.output

    created = runner.invoke(app, ["topics", "create", *args])
    assert created.exit_code == 0, created.output
    assert runner.invoke(app, ["topics", "check", *args]).exit_code == 0

    described = runner.invoke(app, ["topics", "describe", "--json", *args])
    rows = {row["role"]: row for row in map(orjson.loads, described.output.splitlines())}
    assert len(rows) == 9
    assert rows["raw"]["partitions"] == rows["repartition"]["partitions"] == 4
    assert rows["repartition"]["topic"] == f"raw-{unique_name}.g-{unique_name}.repartition"
    assert rows["rollups.10s"]["partitions"] == 3
    assert rows["checkpoints"]["config"]["cleanup.policy"] == "compact"
    assert rows["rollups.1h"]["config"]["retention.ms"] == str(90 * 86_400_000)
    assert rows["deadletter"]["config"]["retention.ms"] == str(7 * 86_400_000)


@pytest.mark.slow
def test_kafka_config_alone_reaches_the_admin_client(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "METRICS_PIPELINE_KAFKA_CONFIG",
        orjson.dumps({"bootstrap.servers": kafka_bootstrap}).decode(),
    )
    result = runner.invoke(
        app, ["topics", "create", "-c", str(settings_file(tmp_path, unique_name))]
    )
    assert result.exit_code == 0, result.output
    assert partition_count(kafka_bootstrap, f"raw-{unique_name}") == 3


@pytest.mark.slow
def test_worker_names_missing_topics_and_the_command(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    config = settings_file(tmp_path, unique_name)
    result = runner.invoke(
        app, ["worker", "-c", str(config), "--bootstrap-servers", kafka_bootstrap]
    )
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line == (
        f"error: topic does not exist: 'raw-{unique_name}'; create the topics with "
        "`metrics-pipeline topics create` (same settings), or set create_topics: true"
    )


@pytest.mark.slow
def test_unknown_librdkafka_key_fails_in_one_line(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    config = settings_file(tmp_path, unique_name, "kafka_config:\n  socket.timeout.msec: 5000\n")
    result = runner.invoke(
        app, ["worker", "-c", str(config), "--bootstrap-servers", kafka_bootstrap]
    )
    assert result.exit_code == 2
    assert result.output.strip() == (
        'error: invalid Kafka client setting: No such configuration property: "socket.timeout.msec"'
    )


def test_closed_port_fails_naming_the_address(unique_name: str, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    config = settings_file(tmp_path, unique_name)
    result = runner.invoke(app, ["worker", "-c", str(config), "--bootstrap-servers", address])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    (error,) = errors
    assert error.startswith(f"error: cannot reach Kafka at {address} within 10 s: Connect to ")
    assert error.endswith("Connection refused (after 0ms in state CONNECT)")
    # librdkafka's retries are logged at most once per complaint, not once a second.
    assert sum("Connection refused" in line for line in result.output.splitlines()) <= 3


@pytest.mark.slow
def test_a_tier_created_first_with_another_count_is_taken_as_it_is(
    kafka_bootstrap: str, unique_name: str
) -> None:
    """Two processes racing to create one rollup topic: whichever wins, the other carries on."""
    topic = f"rollups-{unique_name}.10s"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, 4)])
    counts = ensure_present(kafka_bootstrap, [TopicSpec(topic, 8)], create=True)
    assert counts == {topic: 4}


@pytest.mark.slow
def test_tls_against_a_plaintext_listener_fails_fast_in_one_line(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    """A client set up for SASL over TLS meets a broker that speaks neither: it must stop with a
    message naming the address and what went wrong, not retry forever."""
    config = settings_file(
        tmp_path,
        unique_name,
        "kafka_config:\n  security.protocol: SASL_SSL\n  sasl.mechanism: PLAIN\n"
        "  sasl.username: u\n  sasl.password: p\n",
    )
    result = runner.invoke(
        app, ["worker", "-c", str(config), "--bootstrap-servers", kafka_bootstrap]
    )
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith(f"error: cannot reach Kafka at {kafka_bootstrap} within 10 s: ")
    assert errors[0].endswith(
        "(security.protocol=SASL_SSL, sasl.mechanism=PLAIN: does the listener speak it, "
        "and are the CA and credentials right?)"
    )
