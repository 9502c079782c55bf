"""The sink runner's own metrics (Prometheus text on /metrics), named for what an operator asks.

Every series carries the label `sink` (e.g. "remote_write", "local") so one dashboard serves all.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from pipeline.metric_declarations import MetricDeclarations


class SinkMetrics:
    def __init__(self, sink: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        m = MetricDeclarations(self.registry, "metrics_pipeline_sink_", {"sink": sink})
        self.records_in = m.counter("records_in", "Rollup records consumed.")
        self.stored = m.counter("records_stored", "Rollup records the store acknowledged.")
        self._deadletter = m.counter(
            "deadletter",
            "Records dead-lettered: unreadable (invalid_rollup) or refused by the store.",
            by=["reason"],
        )
        self.retries = m.counter("retries", "Batch writes retried after a retryable failure.")
        self.write_failures = m.counter(
            "write_failures",
            "Batch writes that failed with a retryable error (store down, 5xx, 429, timeout).",
        )
        self.write_duration = m.histogram(
            "write_duration_seconds",
            "Time of one batch write, successful or not.",
            (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.batch_size = m.histogram(
            "batch_records",
            "Records per batch handed to the sink.",
            (1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 25000),
        )
        self.commit_lag = m.gauge(
            "commit_lag_messages",
            "Records in the assigned partitions not yet committed (high watermark − committed).",
        )
        self.assigned = m.gauge("assigned_partitions", "Rollup partitions owned.")
        self.paused = m.gauge(
            "paused", "1 while consumption is paused because the store is failing."
        )
        self.last_stored_time = m.gauge(
            "last_stored_timestamp_seconds",
            "Unix time of the latest acknowledged write (benchmarks time to it).",
        )
        self.first_input_time = m.gauge(
            "first_input_timestamp_seconds",
            "Unix time the first record was consumed (benchmarks time from it).",
        )
        self._sink = sink

    def deadlettered(self, reason: str, n: int = 1) -> None:
        self._deadletter.labels(self._sink, reason).inc(n)
