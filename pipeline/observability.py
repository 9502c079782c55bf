"""Self-metrics, structured logs and the /metrics, /healthz, /readyz endpoints of a process."""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from pipeline.core.detect.events import AnomalyRecord
from pipeline.core.keyed import KeyedOutput
from pipeline.metric_declarations import MetricDeclarations


def configure_logging(level: str = "info", fmt: str = "console") -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
    )


class StageMetrics(ABC):
    """What every windowed stage (rollup worker, tiers, detector) moves, named for what an
    operator asks. A subclass names the stage's output (`output`: "rollup", "anomaly_event"),
    counts what it emits in its own metric and adds the stage's own, so a process exports only
    metrics it can move."""

    def __init__(self, registry: CollectorRegistry | None, output: str) -> None:
        self.registry = registry or CollectorRegistry()
        m = MetricDeclarations(self.registry, "metrics_pipeline_")
        noun = output.replace("_", " ")
        self.messages = m.counter("messages_consumed", "Kafka records consumed.")
        self.deadletter = m.counter(
            "deadletter", "Samples dead-lettered, by reason.", by=["reason"]
        )
        self.replay_gaps = m.counter(
            "replay_gaps",
            "Replays that found input deleted by retention (their windows are incomplete).",
        )
        self.delivered = m.counter(
            f"{output}s_delivered", f"{noun.capitalize()}s acknowledged by Kafka."
        )
        self.first_input_time = m.gauge(
            "first_input_timestamp_seconds",
            "Unix time the first input record was consumed (benchmarks time from it).",
        )
        self.last_delivery_time = m.gauge(
            f"last_{output}_delivered_timestamp_seconds",
            f"Unix time the latest {noun} was acknowledged by Kafka.",
        )
        self.emission_delay = m.histogram(
            "emission_delay_seconds",
            f"From consuming the record that closed a window to Kafka acknowledging its {noun}.",
            (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.open_windows = m.gauge("open_windows", "Open (series, window) pairs.")
        self.assigned = m.gauge("assigned_partitions", "Input partitions owned.")
        self.watermark_lag = m.gauge(
            "watermark_lag_seconds", "Wall clock minus the lowest partition watermark."
        )
        self.commit_lag = m.gauge(
            "commit_lag_messages", "Messages consumed but not yet committed (held by open windows)."
        )
        self.flush_duration = m.histogram(
            "flush_duration_seconds",
            "Time to flush outputs, write checkpoints and commit.",
            (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.kafka_reachable = m.gauge(
            "kafka_reachable",
            "1 while Kafka answers; 0 from a client error saying it is unreachable (all "
            "brokers down, transport, authentication or TLS failure) until a delivery, fetch "
            "or metadata request succeeds again. /readyz says why.",
        )
        self.kafka_reachable.set(1)
        self.produce_errors = m.counter(
            "produce_errors", "Kafka delivery failures (fatal for the batch)."
        )

    @abstractmethod
    def count_emitted(self, outputs: Sequence[KeyedOutput], resolution: str) -> None:
        """Count outputs just produced; resolution: the stage's, as in its topic ("10s")."""


class RollupStageMetrics(StageMetrics):
    """A stage whose output is rollups (the rollup worker, a tier)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry, "rollup")
        m = MetricDeclarations(self.registry, "metrics_pipeline_")
        self.rollups = m.counter(
            "rollups_emitted", "Rollups produced, by resolution.", by=["resolution"]
        )

    def count_emitted(self, outputs: Sequence[KeyedOutput], resolution: str) -> None:
        self.rollups.labels(resolution).inc(len(outputs))


class WorkerMetrics(RollupStageMetrics):
    """The rollup worker's: samples in, forwarding, the series table, watermark alignment."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        m = MetricDeclarations(self.registry, "metrics_pipeline_")
        self.samples = m.counter(
            "samples_in", "Samples read (a message that cannot be read counts 1)."
        )
        self.aggregated = m.counter("samples_aggregated", "Samples added to a window.")
        self.late = m.counter("late_samples", "Samples whose window had closed.")
        self.replayed = m.counter(
            "replayed_samples",
            "Samples skipped on replay because their rollup was already emitted.",
        )
        self.forwarded = m.counter(
            "forwarded_samples", "Samples re-keyed to the partition that owns their series."
        )
        self.duplicate_forwards = m.counter(
            "duplicate_forwards", "Forwarded records seen twice and skipped."
        )
        self.watermarks_handed_over = m.counter(
            "watermarks_handed_over",
            "Watermarks of a partition this process owns given in-process to a partition it "
            "also owns, which had read all the sender sent it (no wait for the record).",
        )
        self.active_series = m.gauge("active_series", "Series known to this process.")
        self.series_overflow = m.counter(
            "series_overflow",
            "Samples aggregated into an overflow series because their series was over the "
            "cardinality budget, by the limit it hit (worker or metric).",
            by=["limit"],
        )
        self.series_forgotten = m.counter(
            "series_forgotten",
            "Series dropped from memory: idle, or refused by the cardinality budget.",
        )
        self.paused_partitions = m.gauge(
            "alignment_paused_partitions",
            "Input partitions paused because their clock ran ahead of the slowest partition's.",
        )


class TierMetrics(RollupStageMetrics):
    """A tier worker's metrics: the stage's own, plus what happened to each child rollup."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        m = MetricDeclarations(self.registry, "metrics_pipeline_tier_")
        self.children = m.counter(
            "children",
            "Child rollups read, by outcome: merged, duplicate (already in its open window), "
            "reemitted (its closed window had merged it), replayed (window emitted before a "
            "restart), late, invalid.",
            by=["outcome"],
        )


class DetectMetrics(StageMetrics):
    """The detector's: its output is anomaly events, counted by state."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry, "anomaly_event")
        m = MetricDeclarations(self.registry, "metrics_pipeline_")
        self.events = m.counter(
            "anomaly_events_emitted",
            "Anomaly events produced, by state (firing, resolved).",
            by=["state"],
        )

    def count_emitted(self, outputs: Sequence[KeyedOutput], resolution: str) -> None:
        # Only the detector emits through these metrics, and it emits only AnomalyRecords.
        states = Counter(cast(AnomalyRecord, event).state for event in outputs)
        for state, n in states.items():
            self.events.labels(state).inc(n)


class Health:
    """Liveness: the main loop turned recently. Readiness: it also owns work or waits for it,
    and nothing it depends on (Kafka, its outputs) is known to be failing."""

    def __init__(self, stall_seconds: float = 60.0) -> None:
        self._beat = time.monotonic()
        self._ready = False
        self._stall = stall_seconds
        # source → why it is failing (a callable, so a duration in it is current when read)
        self._problems: dict[str, Callable[[], str]] = {}

    def beat(self) -> None:
        self._beat = time.monotonic()

    def set_ready(self, ready: bool) -> None:
        self._ready = ready

    def set_problem(self, source: str, reason: Callable[[], str]) -> None:
        """Not ready until `clear_problem(source)`; reason() says why (shown on /readyz)."""
        self._problems[source] = reason

    def clear_problem(self, source: str) -> None:
        self._problems.pop(source, None)

    @property
    def alive(self) -> bool:
        return time.monotonic() - self._beat < self._stall

    @property
    def ready(self) -> bool:
        return self._ready and self.alive and not self._problems

    @property
    def reason(self) -> str | None:
        """Why the process is not ready (None when it is)."""
        reasons = [reason() for reason in list(self._problems.values())]
        if not self.alive:
            reasons.append(f"main loop stalled for more than {self._stall:.0f} s")
        if not self._ready:
            reasons.append("no input partitions assigned yet")
        return "; ".join(reasons) or None


def serve_http(
    host: str, port: int, registry: CollectorRegistry, health: Health
) -> ThreadingHTTPServer:
    """Start /metrics, /healthz and /readyz on a daemon thread; returns the server (to stop)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                ok = health.alive
                self._send(200 if ok else 503, b"ok\n" if ok else b"stalled\n")
            elif self.path == "/readyz":
                ok = health.ready
                reason = None if ok else health.reason or "not ready"
                body = b"ready\n" if reason is None else f"not ready: {reason}\n".encode()
                self._send(200 if ok else 503, body)
            else:
                self._send(404, b"not found\n")

        def _send(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


class LabelledRegistries(Collector):
    """Several same-shaped registries (e.g. the steps of a tier chain in one process) as one,
    each sample labelled with its registry's name, so one /metrics serves them all."""

    def __init__(self, label: str, registries: Mapping[str, CollectorRegistry]) -> None:
        self._label = label
        self._registries = registries

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for value, registry in self._registries.items():
            for family in registry.collect():
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    labels = {**sample.labels, self._label: value}
                    merged.samples.append(sample._replace(labels=labels))
        yield from families.values()


class AllHealthy(Health):
    """Alive and ready when every part is."""

    def __init__(self, parts: list[Health]) -> None:
        super().__init__()
        self._parts = parts

    @property
    def alive(self) -> bool:
        return all(p.alive for p in self._parts)

    @property
    def ready(self) -> bool:
        return all(p.ready for p in self._parts)

    @property
    def reason(self) -> str | None:
        reasons = [r for r in (p.reason for p in self._parts if not p.ready) if r]
        return "; ".join(dict.fromkeys(reasons)) or None
