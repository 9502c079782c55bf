"""A demo-sized pipeline run as the chart would deploy it: every process a `metrics-pipeline`
subprocess with the command line and settings file the chart renders, scraped by a real
Prometheus that also receives the remote-write sink's rollups."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from load.tsdb import PrometheusServer
from pipeline.demo import DEMO_SPEC
from pipeline.demo.alerts import inject_incident
from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.loadgen.build import generate
from pipeline.loadgen.produce import produce
from pipeline.loopback import free_port
from pipeline.sinks.remote_write.naming import base_name
from tests.deploy.chart import render, settings_files, workloads

SCRAPE_INTERVAL = "2s"
CLI = str(Path(sys.executable).with_name("metrics-pipeline"))


class ScrapingPrometheus(PrometheusServer):
    """Prometheus with the remote-write receiver that also scrapes the given targets, each
    labelled with its `process` as the chart's ServiceMonitors do."""

    def __init__(self, data_dir: Path, targets: dict[str, int]) -> None:
        super().__init__(data_dir)
        self.targets = targets

    def command(self) -> list[str]:
        command = super().command()
        config = self.data_dir / "prometheus.yml"
        jobs = "".join(
            f"  - job_name: {process}\n"
            f"    static_configs:\n"
            f"      - targets: ['127.0.0.1:{port}']\n"
            f"        labels: {{process: {process}}}\n"
            for process, port in self.targets.items()
        )
        config.write_text(
            f"global:\n  scrape_interval: {SCRAPE_INTERVAL}\n"
            "storage:\n  tsdb:\n    out_of_order_time_window: 1h\n"
            f"scrape_configs:\n{jobs}"
        )
        return command


def chart_values(name: str, write_url: str, alertmanager_url: str) -> dict[str, Any]:
    """Every process on, topics and groups unique to the run, quick idle timeouts, and the
    demo's detector tuning (five minutes of event time) through `config`."""
    return {
        "kafka": {"bootstrapServers": "set-by-the-environment:9092"},
        "topics": {
            "raw": f"{name}.raw",
            "rollupPrefix": f"{name}.rollups.",
            "deadletter": f"{name}.deadletter",
            "checkpoints": f"{name}.checkpoints",
            "anomalies": f"{name}.anomalies",
            "partitions": 2,
            "rawPartitions": 2,
        },
        "logging": {"format": "console", "level": "warning"},
        "worker": {
            "replicas": 1,
            "groupId": f"{name}-rollup",
            "idleTimeout": "2s",
            "allowedLateness": "30s",
        },
        "tier": {"groupId": f"{name}-tier", "idleTimeoutSeconds": 2},
        "detect": {
            "groupId": f"{name}-detect",
            "resolution": "10s",
            "statistics": ["p99"],
            "model": "robust",
            "config": {"history": 15, "warmup": 12, "idle_timeout": "3s"},
        },
        "sinks": {
            "remoteWrite": {
                "enabled": True,
                "url": write_url,
                "groupId": f"{name}-rw",
                "topics": [f"{name}.rollups.{r}" for r in ("10s", "1m", "5m", "1h")],
            },
            "local": {"enabled": True, "groupId": f"{name}-local"},
        },
        "alertBridge": {
            "enabled": True,
            "alertmanagerUrl": alertmanager_url,
            "groupId": f"{name}-bridge",
            "config": {"resend_interval": "2s"},
        },
    }


@dataclass
class Process:
    name: str
    args: list[str]
    port: int
    popen: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None


def _prepare(values: dict[str, Any], root: Path) -> list[Process]:
    objects = render(values)
    config_dir = root / "config"
    config_dir.mkdir(parents=True)
    for file, text in settings_files(objects).items():
        text = text.replace("/var/lib/metrics-pipeline/store", str(root / "store"))
        (config_dir / file).write_text(text)
    processes = []
    for workload in workloads(objects):
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        args = [
            a.replace("/etc/metrics-pipeline/config", str(config_dir)) for a in container["args"]
        ]
        processes.append(Process(container["name"], args, free_port()))
    return processes


@contextmanager
def running(processes: list[Process], bootstrap: str, root: Path) -> Iterator[None]:
    """Start each process; stop them by pid (SIGTERM, then SIGKILL) on the way out."""
    try:
        for p in processes:
            env = {
                **os.environ,
                "METRICS_PIPELINE_BOOTSTRAP_SERVERS": bootstrap,
                # Loopback only on this machine; a pod binds 0.0.0.0 (the settings file).
                "METRICS_PIPELINE_HTTP_HOST": "127.0.0.1",
                "METRICS_PIPELINE_HTTP_PORT": str(p.port),
                "METRICS_PIPELINE_SESSION_TIMEOUT_MS": "6000",
            }
            p.log = open(root / f"{p.name}.log", "wb")  # noqa: SIM115 - closed below
            p.popen = subprocess.Popen(
                [CLI, *p.args], env=env, stdout=p.log, stderr=subprocess.STDOUT, cwd=root
            )
        yield
    finally:
        for p in processes:
            if p.popen is not None and p.popen.poll() is None:
                os.kill(p.popen.pid, signal.SIGTERM)
        for p in processes:
            if p.popen is not None:
                try:
                    p.popen.wait(30)
                except subprocess.TimeoutExpired:
                    os.kill(p.popen.pid, signal.SIGKILL)
                    p.popen.wait(10)
            if p.log is not None:
                p.log.close()


def produce_demo_load(bootstrap: str, topic: str, samples: int) -> str:
    """The demo's workload (late samples, malformed messages, one latency incident in its last
    50 s), smaller, with event times ending now; returns the incident's metric name as the
    remote-write sink names it (sanitized, base unit)."""
    now_ms = int(time.time() * 1000)
    spec = replace(
        DEMO_SPEC,
        samples=samples,
        services=4,
        regions=2,
        start_ms=now_ms - int(DEMO_SPEC.duration_s * 1000) - 5_000,
    )
    ensure_topics(bootstrap, [TopicSpec(topic, 2)])
    workload = generate(spec)
    # To the end of the event time: the episode is still firing when the run ends, so the
    # bridge's active-episodes gauge shows it (a backfill would otherwise fire and resolve it
    # between two scrapes).
    incident = inject_incident(workload, start_s=250.0, end_s=DEMO_SPEC.duration_s)
    produce(bootstrap, topic, workload.messages())
    series = incident.series
    return base_name(series.name, series.type, series.unit)


__all__ = ["Process", "ScrapingPrometheus", "chart_values", "produce_demo_load", "running"]


def prepare(values: dict[str, Any], root: Path) -> list[Process]:
    return _prepare(values, root)


def wait_until(check: Any, timeout: float, what: str, step: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
