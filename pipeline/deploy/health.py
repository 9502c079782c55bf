"""The "metrics-pipeline health" dashboard: the processes' own /metrics, by the label `process`
(set by the chart's ServiceMonitors). Consumer lag per partition and checkpoint age are not
exported by the processes yet; their panels come when the metrics do. CPU and memory come from
the kubelet's cAdvisor metrics (the processes serve no process_* metrics)."""

from __future__ import annotations

import re
from dataclasses import replace

from grafana_foundation_sdk.builders import dashboard as gd

from pipeline.deploy.panels import DATASOURCE, Panel, Query, Row

R = "$__rate_interval"
CONTAINERS = 'container=~"worker|tier|detect|sink-remote-write|sink-local|alert-bridge"'
CADVISOR = "cAdvisor metrics of the kubelet: present on Kubernetes, not in a local run"
ONLY_ON_FAILURE = "a labelled counter appears with its first increment (a refusal)"

UID = "metrics-pipeline-health"
TITLE = "metrics-pipeline / health"
DESCRIPTION = (
    "Throughput, dead letters, lateness, watermarks, emission delay, flushes, sinks, the "
    "detector and the alert bridge of metrics-pipeline, from the processes' own /metrics."
)


def _sel(metric: str, match: str) -> str:
    return f"{metric}{{{match}}}" if match else metric


def rate(metric: str, by: str = "", match: str = "") -> str:
    """Per-second rate of a counter, summed by `by` (everything when empty)."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({_sel(metric, match)}[{R}]))"


def quantile(q: str, histogram: str, by: str, match: str = "") -> str:
    buckets = _sel(histogram + "_bucket", match)
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({buckets}[{R}])))"


_ROWS: tuple[Row, ...] = (
    Row(
        "Throughput",
        (
            Panel(
                "Samples in / aggregated per second",
                "short",
                (
                    Query(
                        rate("metrics_pipeline_samples_in_total", "process", 'process="worker"'),
                        "read",
                    ),
                    Query(
                        rate(
                            "metrics_pipeline_samples_aggregated_total",
                            "process",
                            'process="worker"',
                        ),
                        "aggregated",
                    ),
                ),
            ),
            Panel(
                "Rollups out per second, by resolution",
                "short",
                (
                    Query(
                        rate(
                            "metrics_pipeline_rollups_emitted_total",
                            "process, resolution",
                            'process=~"worker|tier"',
                        ),
                        "{{process}} {{resolution}}",
                    ),
                ),
            ),
            Panel(
                "Dead letters per second, by reason",
                "short",
                (
                    Query(
                        rate("metrics_pipeline_deadletter_total", "process, reason"),
                        "{{process}} {{reason}}",
                    ),
                    Query(
                        rate("metrics_pipeline_sink_deadletter_total", "sink, reason"),
                        "sink {{sink}} {{reason}}",
                        expect="parse",
                        why=ONLY_ON_FAILURE,
                    ),
                    Query(
                        rate("metrics_pipeline_alert_bridge_deadletter_total", "reason"),
                        "alert-bridge {{reason}}",
                        expect="parse",
                        why=ONLY_ON_FAILURE,
                    ),
                ),
            ),
            Panel(
                "Late samples per second",
                "short",
                (
                    Query(
                        rate("metrics_pipeline_late_samples_total", "process", 'process="worker"'),
                        "late",
                    ),
                ),
                description="Samples whose window had closed (dead-lettered or counted, by "
                "late_policy).",
            ),
        ),
    ),
    Row(
        "Progress",
        (
            Panel(
                "Watermark lag (wall clock − lowest partition watermark)",
                "s",
                (
                    Query(
                        "max by (process, instance) (metrics_pipeline_watermark_lag_seconds)",
                        "{{process}} {{instance}}",
                    ),
                ),
            ),
            Panel(
                "Uncommitted messages (held by open windows or unsent batches)",
                "short",
                (
                    Query(
                        "sum by (process) (metrics_pipeline_commit_lag_messages)",
                        "{{process}}",
                    ),
                    Query(
                        "sum by (sink) (metrics_pipeline_sink_commit_lag_messages)",
                        "sink {{sink}}",
                    ),
                    Query(
                        "sum(metrics_pipeline_alert_bridge_commit_lag_messages)",
                        "alert-bridge",
                    ),
                ),
                description="Consumer lag per partition (high watermark − committed) is not "
                "exported yet; this is what each process holds uncommitted.",
            ),
            Panel(
                "Emission delay (window closed → rollup acknowledged)",
                "s",
                (
                    Query(
                        quantile(
                            "0.99",
                            "metrics_pipeline_emission_delay_seconds",
                            "process",
                            'process=~"worker|tier"',
                        ),
                        "p99 {{process}}",
                    ),
                    Query(
                        quantile(
                            "0.5",
                            "metrics_pipeline_emission_delay_seconds",
                            "process",
                            'process=~"worker|tier"',
                        ),
                        "p50 {{process}}",
                    ),
                ),
            ),
            Panel(
                "Flushes (checkpoint + commit) per second and p99 duration",
                "short",
                (
                    Query(
                        rate("metrics_pipeline_flush_duration_seconds_count", "process"),
                        "flushes/s {{process}}",
                    ),
                    Query(
                        quantile("0.99", "metrics_pipeline_flush_duration_seconds", "process"),
                        "p99 s {{process}}",
                    ),
                ),
                description="Each flush writes the checkpoints and commits. Checkpoint age is "
                "not exported yet.",
            ),
            Panel(
                "Tier children by outcome",
                "short",
                (
                    Query(
                        rate("metrics_pipeline_tier_children_total", "tier, outcome"),
                        "{{tier}} {{outcome}}",
                    ),
                ),
            ),
            Panel(
                "Active series, open windows, owned partitions",
                "short",
                (
                    Query(
                        "sum by (process) (metrics_pipeline_active_series)", "series {{process}}"
                    ),
                    Query(
                        "sum by (process) (metrics_pipeline_open_windows)", "windows {{process}}"
                    ),
                    Query(
                        "sum by (process) (metrics_pipeline_assigned_partitions)",
                        "partitions {{process}}",
                    ),
                    Query(
                        rate("metrics_pipeline_produce_errors_total", "process"),
                        "produce errors/s {{process}}",
                        expect="zero",
                    ),
                ),
            ),
        ),
    ),
    Row(
        "Sinks",
        (
            Panel(
                "Records stored per second",
                "short",
                (
                    Query(
                        rate("metrics_pipeline_sink_records_stored_total", "sink"),
                        "{{sink}}",
                    ),
                    Query(
                        rate("metrics_pipeline_sink_records_in_total", "sink"),
                        "{{sink}} consumed",
                    ),
                ),
            ),
            Panel(
                "Write failures, retries and paused",
                "short",
                (
                    Query(
                        rate("metrics_pipeline_sink_write_failures_total", "sink"),
                        "failures/s {{sink}}",
                        expect="zero",
                    ),
                    Query(
                        rate("metrics_pipeline_sink_retries_total", "sink"),
                        "retries/s {{sink}}",
                        expect="zero",
                    ),
                    Query(
                        "max by (sink) (metrics_pipeline_sink_paused)",
                        "paused {{sink}}",
                        expect="zero",
                    ),
                ),
            ),
            Panel(
                "Write duration p99",
                "s",
                (
                    Query(
                        quantile("0.99", "metrics_pipeline_sink_write_duration_seconds", "sink"),
                        "{{sink}}",
                    ),
                ),
            ),
        ),
    ),
    Row(
        "Detector and alert bridge",
        (
            Panel(
                "Detector: watermark lag and anomaly events",
                "short",
                (
                    Query(
                        'max(metrics_pipeline_watermark_lag_seconds{process="detect"})',
                        "watermark lag s",
                    ),
                    Query(
                        rate("metrics_pipeline_anomaly_events_emitted_total", "state"),
                        "events/s {{state}}",
                    ),
                ),
            ),
            Panel(
                "Alert bridge: episodes, Alertmanager, sends",
                "short",
                (
                    Query("sum(metrics_pipeline_alert_bridge_active_episodes)", "active episodes"),
                    Query("min(metrics_pipeline_alert_bridge_alertmanager_up)", "alertmanager up"),
                    Query("max(metrics_pipeline_alert_bridge_paused)", "paused", expect="zero"),
                    Query(
                        rate("metrics_pipeline_alert_bridge_alerts_sent_total", "state"),
                        "sent {{state}}/s",
                    ),
                    Query(
                        f"sum(rate(metrics_pipeline_alert_bridge_send_failures_total[{R}]))",
                        "send failures/s",
                        expect="zero",
                    ),
                ),
            ),
        ),
    ),
    Row(
        "Resources",
        (
            Panel(
                "Memory (working set)",
                "bytes",
                (
                    Query(
                        "sum by (container, pod) "
                        f"(container_memory_working_set_bytes{{{CONTAINERS}}})",
                        "{{pod}}",
                        expect="parse",
                        why=CADVISOR,
                    ),
                ),
            ),
            Panel(
                "CPU",
                "short",
                (
                    Query(
                        rate("container_cpu_usage_seconds_total", "container, pod", CONTAINERS),
                        "{{pod}}",
                        expect="parse",
                        why=CADVISOR,
                    ),
                ),
            ),
        ),
    ),
)


# Every selector also matches the dashboard's namespace variable: one Prometheus often scrapes
# several releases (series without the label, e.g. outside Kubernetes, match ".*" too).
_SELECTOR = re.compile(r"\b((?:metrics_pipeline|container)_\w+)(?:\{([^}]*)\})?")
NAMESPACE = 'namespace=~"$namespace"'


def _scoped(expr: str) -> str:
    def add(match: re.Match[str]) -> str:
        rest = f", {match[2]}" if match[2] else ""
        return f"{match[1]}{{{NAMESPACE}{rest}}}"

    return _SELECTOR.sub(add, expr)


ROWS: tuple[Row, ...] = tuple(
    replace(
        row,
        panels=tuple(
            replace(p, queries=tuple(replace(q, expr=_scoped(q.expr)) for q in p.queries))
            for p in row.panels
        ),
    )
    for row in _ROWS
)


def variables() -> list[gd.QueryVariable]:
    return [
        gd.QueryVariable("namespace")
        .label("Namespace")
        .datasource(DATASOURCE)
        .query("label_values(metrics_pipeline_assigned_partitions, namespace)")
        .multi(True)
        .include_all(True)
        .all_value(".*")
    ]
