"""The sink runner's own metrics (Prometheus text on /metrics), named for what an operator asks.

Every series carries the label `sink` (e.g. "remote_write", "local") so one dashboard serves all.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SinkMetrics:
    def __init__(self, sink: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        p = "metrics_pipeline_sink_"
        labels = ["sink"]
        self.records_in = Counter(
            p + "records_in", "Rollup records consumed.", labels, registry=r
        ).labels(sink)
        self.stored = Counter(
            p + "records_stored", "Rollup records the store acknowledged.", labels, registry=r
        ).labels(sink)
        self._deadletter = Counter(
            p + "deadletter",
            "Records dead-lettered: unreadable (invalid_rollup) or refused by the store.",
            [*labels, "reason"],
            registry=r,
        )
        self.retries = Counter(
            p + "retries", "Batch writes retried after a retryable failure.", labels, registry=r
        ).labels(sink)
        self.write_failures = Counter(
            p + "write_failures",
            "Batch writes that failed with a retryable error (store down, 5xx, 429, timeout).",
            labels,
            registry=r,
        ).labels(sink)
        self.write_duration = Histogram(
            p + "write_duration_seconds",
            "Time of one batch write, successful or not.",
            labels,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        ).labels(sink)
        self.batch_size = Histogram(
            p + "batch_records",
            "Records per batch handed to the sink.",
            labels,
            buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 25000),
            registry=r,
        ).labels(sink)
        self.commit_lag = Gauge(
            p + "commit_lag_messages",
            "Records in the assigned partitions not yet committed (high watermark − committed).",
            labels,
            registry=r,
        ).labels(sink)
        self.assigned = Gauge(
            p + "assigned_partitions", "Rollup partitions owned.", labels, registry=r
        ).labels(sink)
        self.paused = Gauge(
            p + "paused",
            "1 while consumption is paused because the store is failing.",
            labels,
            registry=r,
        ).labels(sink)
        self.last_stored_time = Gauge(
            p + "last_stored_timestamp_seconds",
            "Unix time of the latest acknowledged write (benchmarks time to it).",
            labels,
            registry=r,
        ).labels(sink)
        self.first_input_time = Gauge(
            p + "first_input_timestamp_seconds",
            "Unix time the first record was consumed (benchmarks time from it).",
            labels,
            registry=r,
        ).labels(sink)
        self._sink = sink

    def deadlettered(self, reason: str, n: int = 1) -> None:
        self._deadletter.labels(self._sink, reason).inc(n)
