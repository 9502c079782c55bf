"""Each rendered container's command line, environment and settings file go through the real
`metrics-pipeline` CLI and settings classes: they parse, the processes accept every key, and the
HTTP server binds 0.0.0.0 on the port the probes and Service use.

The process a command would start is replaced by one that records its settings and stops: the
test needs the parsed settings, not a Kafka connection."""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from tests.deploy.chart import of_kind, render, settings_files, workloads
from tests.deploy.values_matrix import EVERYTHING, MATRIX

MOUNT_ROOT = "/etc/metrics-pipeline/"
STORE = "/var/lib/metrics-pipeline/store"
SECRET_VALUE = "s3cret-from-a-Secret"


class Captured(Exception):
    def __init__(self, settings: Any) -> None:
        super().__init__("captured")
        self.settings = settings


@pytest.fixture
def captured_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build each command's processes with recorders in their place, then stop instead of
    serving them: the exception carries the settings each process was built with."""
    import pipeline.alerting
    import pipeline.kafka.detect_worker
    import pipeline.kafka.tier_worker
    import pipeline.kafka.worker
    import pipeline.runtime
    import pipeline.sinks.local
    import pipeline.sinks.remote_write
    import pipeline.sinks.runner

    built: list[Any] = []

    class Recorded:
        """Stands for a process (or a sink): keeps the settings it was built with."""

        def __init__(self, settings: Any, *args: Any, **kwargs: Any) -> None:
            built.append(settings)

    class NoSink:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def close(self) -> None:
            pass

    def serve(settings: Any, build: Any, **kwargs: Any) -> None:
        built.clear()
        build()
        raise Captured(built[0] if len(built) == 1 else list(built))

    monkeypatch.setattr(pipeline.kafka.worker, "RollupWorker", Recorded)
    monkeypatch.setattr(pipeline.kafka.tier_worker, "TierWorker", Recorded)
    monkeypatch.setattr(pipeline.kafka.detect_worker, "DetectWorker", Recorded)
    monkeypatch.setattr(pipeline.alerting, "AlertBridge", Recorded)
    monkeypatch.setattr(pipeline.sinks.runner, "SinkRunner", Recorded)
    monkeypatch.setattr(pipeline.sinks.remote_write, "RemoteWriteSink", NoSink)
    monkeypatch.setattr(pipeline.sinks.local, "LocalStoreSink", NoSink)
    monkeypatch.setattr(pipeline.runtime, "serve", serve)


def _local(path: str, root: Path) -> str:
    """A path under a pod's mounts, moved under the test's directory."""
    return path.replace(MOUNT_ROOT, f"{root}/").replace(STORE, f"{root}/store")


def _pod_environment(container: dict[str, Any], root: Path) -> dict[str, str]:
    """The container's env as Kubernetes resolves it: Secret keys read, $(VAR) expanded."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "valueFrom" in item:
            env[item["name"]] = SECRET_VALUE
        else:
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), item["value"])
            env[item["name"]] = _local(value, root)
    return env


def _lay_out_mounts(objects: list[dict[str, Any]], root: Path) -> None:
    """The settings ConfigMap and the files Secrets would put in the pods."""
    (root / "config").mkdir(parents=True)
    for name, text in settings_files(objects).items():
        (root / "config" / name).write_text(_local(text, root))
    for directory in ("kafka-tls", "http-tls", "http-token"):
        (root / directory).mkdir()
        for key in ("ca.crt", "tls.crt", "tls.key", "token"):
            (root / directory / key).write_text("from a Secret\n")


def _run(container: dict[str, Any], root: Path) -> Any:
    args = [_local(a, root) for a in container["args"]]
    result = CliRunner().invoke(app, args, env=_pod_environment(container, root))
    if not isinstance(result.exception, Captured):
        raise AssertionError(f"`metrics-pipeline {' '.join(args)}` failed:\n{result.output}")
    return result.exception.settings


@pytest.mark.parametrize("case", ["defaults", "everything", "tier-steps"])
@pytest.mark.usefixtures("captured_cli")
def test_every_container_command_parses(case: str, tmp_path: Path) -> None:
    objects = render(MATRIX[case])
    _lay_out_mounts(objects, tmp_path)
    for workload in workloads(objects):
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        settings = _run(container, tmp_path)
        each = settings if isinstance(settings, list) else [settings]
        (port,) = container["ports"]
        for s in each:
            assert s.http_host == "0.0.0.0", "a pod's probes and scrapes come from outside it"
            assert s.http_port == port["containerPort"]
            assert s.bootstrap_servers == (
                EVERYTHING["kafka"]["bootstrapServers"] if case == "everything" else "kafka:9092"
            )
            if case == "everything":
                assert s.kafka_config["sasl.password"] == SECRET_VALUE
                assert s.kafka_config["security.protocol"] == "SASL_SSL"
                assert s.kafka_config["client.rack"] == "eu-west-1a"
                assert Path(s.kafka_config["ssl.ca.location"]).is_file()
        assert (port["name"], container["livenessProbe"]["httpGet"]["port"]) == ("http", "http")


@pytest.mark.usefixtures("captured_cli")
def test_values_reach_the_processes(tmp_path: Path) -> None:
    objects = render(MATRIX["everything"])
    _lay_out_mounts(objects, tmp_path)
    seen: dict[str, Any] = {}
    for workload in workloads(objects):
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        seen[container["name"]] = _run(container, tmp_path)
    worker = seen["worker"]
    assert (worker.input_topic, worker.group_id, worker.late_policy, worker.max_labels) == (
        "metrics.raw",
        "metrics-pipeline-rollup",
        "count",
        24,
    )
    assert [s.consumer_group for s in seen["tier"]] == [
        "metrics-pipeline-tier-1m",
        "metrics-pipeline-tier-5m",
        "metrics-pipeline-tier-1h",
    ]
    assert seen["detect"].history == 30 and seen["detect"].resolution == 60_000
    rw = seen["sink-remote-write"]
    assert rw.url.startswith("http://vminsert") and rw.max_samples_per_request == 5000
    assert rw.basic_auth_password.get_secret_value() == SECRET_VALUE
    assert rw.tls_ca_file is not None and rw.tls_ca_file.is_file()
    assert seen["sink-local"].path == tmp_path / "store"
    bridge = seen["alert-bridge"]
    assert bridge.extra_labels == {"team": "sre"} and bridge.bearer_token_file.is_file()


@pytest.mark.usefixtures("captured_cli")
def test_topics_job_command_parses(tmp_path: Path) -> None:
    help_result = CliRunner().invoke(app, ["topics", "--help"])
    if help_result.exit_code != 0:
        pytest.skip("`metrics-pipeline topics` does not exist in this build yet")
    objects = render(MATRIX["everything"])
    (job,) = of_kind(objects, "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    args = [_local(a, tmp_path) for a in container["args"]] + ["--help"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output


@pytest.mark.usefixtures("captured_cli")
def test_every_process_and_the_topics_job_name_the_same_topics(tmp_path: Path) -> None:
    from pipeline.common_settings import load_settings
    from pipeline.kafka.topology import TopicPlan
    from pipeline.settings import TopologySettings

    values = {
        **EVERYTHING,
        "topics": {"raw": "prod.raw", "rollupPrefix": "prod.rollups.", "anomalies": "prod.anom"},
        "tier": {"chain": ["10s", "1m", "1h"]},
        "detect": {"resolution": "1h"},
    }
    objects = render(values)
    _lay_out_mounts(objects, tmp_path)
    seen = {}
    for workload in workloads(objects):
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        seen[container["name"]] = _run(container, tmp_path)
    tiers = ["prod.rollups.10s", "prod.rollups.1m", "prod.rollups.1h"]
    assert (seen["worker"].source_topic, seen["worker"].output_topic) == ("prod.raw", tiers[0])
    assert [(s.source_topic, s.output_topic) for s in seen["tier"]] == list(pairwise(tiers))
    assert (seen["detect"].source_topic, seen["detect"].output_topic) == (tiers[2], "prod.anom")
    assert seen["sink-local"].topics == tiers  # values leave them empty: every tier
    assert seen["alert-bridge"].anomaly_topic == "prod.anom"

    (hook_map,) = [
        m for m in of_kind(objects, "ConfigMap") if m["metadata"]["name"].endswith("-topics")
    ]
    common = tmp_path / "topics.yaml"
    common.write_text(_local(hook_map["data"]["common.yaml"], tmp_path))
    plan = TopicPlan(load_settings(TopologySettings, common))
    assert [t.spec.name for t in plan] == [
        "prod.raw",
        seen["worker"].topology.repartition(seen["worker"].group_id),
        *tiers,
        "metrics.deadletter",
        "metrics.checkpoints",
        "prod.anom",
    ]
