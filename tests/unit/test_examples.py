"""examples/*.yaml load through the settings classes that read them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.alerting import AlertBridgeSettings
from pipeline.common_settings import CommonSettings, load_settings
from pipeline.kafka.topology import TopicPlan
from pipeline.settings import DetectSettings, TierSettings, TopologySettings, WorkerSettings
from pipeline.sinks.remote_write import RemoteWriteSettings
from pipeline.sinks.settings import LocalSinkSettings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("METRICS_PIPELINE_"):
            monkeypatch.delenv(name)


def test_config_yaml_serves_the_worker_and_the_topology() -> None:
    worker = load_settings(WorkerSettings, EXAMPLES / "config.yaml")
    assert worker.create_topics is False
    assert worker.kafka_config["socket.timeout.ms"] == "30000"
    topology = {
        t.role: t.spec for t in TopicPlan(load_settings(TopologySettings, EXAMPLES / "config.yaml"))
    }
    assert topology["raw"].partitions == topology["repartition"].partitions == 16
    assert topology["rollups.1h"].config["retention.ms"] == "-1"
    assert topology["checkpoints"].config["cleanup.policy"] == "compact"
    assert {s.replication_factor for s in topology.values()} == {3}


@pytest.mark.parametrize(
    "cls",
    [
        CommonSettings,
        WorkerSettings,
        TierSettings,
        DetectSettings,
        LocalSinkSettings,
        TopologySettings,
    ],
)
def test_sasl_ssl_yaml_serves_every_command(cls: type[CommonSettings]) -> None:
    settings = load_settings(cls, EXAMPLES / "sasl-ssl.yaml")
    assert settings.kafka_config["security.protocol"] == "SASL_SSL"
    assert settings.kafka_config["enable.ssl.certificate.verification"] == "true"
    assert settings.kafka_config_files == {"sasl.password": Path("/var/run/secrets/kafka/password")}


def test_sasl_ssl_yaml_serves_remote_write_and_the_alert_bridge() -> None:
    bridge = load_settings(
        AlertBridgeSettings, EXAMPLES / "sasl-ssl.yaml", alertmanager_url="http://am:9093"
    )
    assert bridge.kafka_config["sasl.mechanism"] == "SCRAM-SHA-512"
    settings = load_settings(
        RemoteWriteSettings, EXAMPLES / "sasl-ssl.yaml", url="http://tsdb/api/v1/write"
    )
    assert settings.bootstrap_servers == "kafka.example.internal:9093"
