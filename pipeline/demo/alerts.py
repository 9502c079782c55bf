"""The demo's incident: an injected latency spike, detected, shown or sent to Alertmanager."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from pipeline.alerting.bridge import AlertBridge
from pipeline.alerting.settings import AlertBridgeSettings
from pipeline.core.durations import format_duration
from pipeline.demo.summary import read_outputs
from pipeline.kafka.detect_worker import DetectWorker
from pipeline.loadgen.build import Workload
from pipeline.loadgen.spec import SeriesId
from pipeline.settings import DetectSettings, WorkerSettings

SPIKE_FACTOR = 20.0


@dataclass(frozen=True)
class Incident:
    series: SeriesId
    start_ms: int
    end_ms: int


def inject_incident(work: Workload, start_s: float = 200.0, end_s: float = 240.0) -> Incident:
    """Multiply one unlabelled timer's values by SPIKE_FACTOR over [start_s, end_s) of the
    workload's event time (in the ground truth, so every count stays exact)."""
    truth = work.truth
    index = next(i for i, s in enumerate(truth.series) if s.type == "timer" and not s.labels)
    start = work.spec.start_ms + int(start_s * 1000)
    end = work.spec.start_ms + int(end_s * 1000)
    hit = (truth.series_key == index) & (truth.ts >= start) & (truth.ts < end)
    truth.value[hit] *= SPIKE_FACTOR
    return Incident(truth.series[index], start, end)


def detect_settings(worker: WorkerSettings) -> DetectSettings:
    """The detector on the 10 s tier, tuned to the demo's five minutes of event time: a short
    history and warm-up, p99 only, and the wider threshold such a short history needs (15
    windows of a few gauges pin their band to the scale floor). No CUSUM: it accumulates each
    window's deviation in sigmas of a band that 15 windows cannot calibrate, and fired on 17
    of the demo's steady series."""
    topics = worker.topic_names() | {"anomaly_topic": worker.group_id + ".anomalies"}
    return DetectSettings(
        bootstrap_servers=worker.bootstrap_servers,
        group_id=worker.group_id + "-detect",
        **topics,
        resolution=format_duration(worker.resolution),
        statistics=["p99"],
        model="robust",
        history=15,
        warmup=12,
        threshold=6.0,
        drift=False,
        idle_timeout="3s",
        session_timeout_ms=worker.session_timeout_ms,
        http_port=0,
        topic_partitions=worker.topic_partitions,
        create_topics=True,
    )


def detector_done(detector: DetectWorker, expected_windows_end: int) -> bool:
    """Every partition scored up to the end of the load, every event acknowledged."""
    states = [o.state for o in detector.owned.values()]
    return (
        bool(states)
        and all(s.emitted_wm >= expected_windows_end or s.next_offset == 0 for s in states)
        and detector.delivered == detector.emitted
    )


def alert_bridge(settings: DetectSettings, alertmanager_url: str) -> AlertBridge:
    """The bridge from the detector's anomaly topic to `alertmanager_url`."""
    return AlertBridge(
        AlertBridgeSettings(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=settings.group_id + "-alerts",
            **settings.topic_names(),
            alertmanager_url=alertmanager_url,
            session_timeout_ms=settings.session_timeout_ms,
            http_port=0,
            create_topics=True,
        )
    )


def bridge_caught_up(bridge: AlertBridge, detector: DetectWorker) -> bool:
    return bridge.totals.sent >= detector.emitted


def print_anomalies(console: Console, settings: DetectSettings, incident: Incident) -> int:
    """The anomaly topic as alerting sees it; returns how many episodes hit the incident."""
    events = read_outputs(settings.bootstrap_servers, settings.anomaly_topic, "__none__")
    bodies = sorted(events.rollups.values(), key=lambda b: (b["window_start"], b["state"]))
    s = incident.series
    console.print(
        f"[bold]incident[/bold] injected: {s.service}/{s.region}/{s.name} ×{SPIKE_FACTOR:g} from "
        f"{_hms(incident.start_ms)} to {_hms(incident.end_ms)} UTC"
    )
    table = Table(title=f"Anomaly events ({settings.anomaly_topic})")
    for column in ("state", "series", "statistic", "window", "observed", "expected", "upper",
                   "score", "severity", "episode"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("state", "series") else "right")
    hits = set()
    for b in bodies:
        series = b["series"]
        unit = series.get("unit", "")
        if (series["service"], series["region"], series["name"]) == (s.service, s.region, s.name):
            hits.add(b["episode_id"])
        observed = "-" if b["observed"] is None else f"{b['observed']:.1f}{unit}"
        table.add_row(
            b["state"],
            f"{series['service']}/{series['region']}/{series['name']}",
            b["statistic"],
            f"{_hms(b['window_start'])}+{b['resolution']}",
            observed,
            f"{b['expected']:.1f}{unit}",
            f"{b['upper']:.1f}{unit}",
            f"{b['score']:.2f}",
            b["severity"],
            b["episode_id"][:10],
        )
    console.print(table)
    return len(hits)


def wait_until(condition: Callable[[], bool], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.25)
    return False


def _hms(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%H:%M:%S}"
