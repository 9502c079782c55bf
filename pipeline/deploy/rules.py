"""The pipeline's own Prometheus alert rules.

Every series selects on the label `process` (worker, tier, detect, sink-remote-write,
sink-local, alert-bridge), which the chart's ServiceMonitors copy from their Service; a plain
scrape configuration adds it per job. Two rules use metrics the processes do not export yet
(`metrics_pipeline_consumer_lag_messages{topic,partition}` and
`metrics_pipeline_checkpoint_age_seconds`): they stay silent until those exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

STAGES = 'process=~"worker|tier"'


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    labels: dict[str, str] = field(default_factory=dict)

    def rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, **self.labels},
            "annotations": {"summary": self.summary, "description": self.description},
        }


ALERTS: tuple[Alert, ...] = (
    Alert(
        "MetricsPipelineDown",
        'up{process=~"worker|tier|detect|sink-remote-write|sink-local|alert-bridge"} == 0',
        "5m",
        "critical",
        "A metrics-pipeline {{ $labels.process }} pod cannot be scraped",
        "{{ $labels.instance }} has not answered /metrics for 5 minutes.",
    ),
    Alert(
        "MetricsPipelineConsumerLagGrowing",
        # The value is the lag (the left side), for the description.
        "metrics_pipeline_consumer_lag_messages > 10000"
        " and deriv(metrics_pipeline_consumer_lag_messages[15m]) > 0",
        "15m",
        "warning",
        "{{ $labels.process }} falls behind on {{ $labels.topic }}/{{ $labels.partition }}",
        "Consumer lag is {{ $value | humanize }} messages and has grown for 15 minutes: "
        "add replicas (up to the partition count) or resources.",
    ),
    Alert(
        "MetricsPipelineWatermarkStalled",
        f"metrics_pipeline_watermark_lag_seconds{{{STAGES}}} > 300",
        "5m",
        "warning",
        "{{ $labels.process }} windows stopped closing",
        "The lowest partition watermark of {{ $labels.instance }} is "
        "{{ $value | humanizeDuration }} behind the wall clock: no input, a stuck partition, "
        "or a producer with a bad clock.",
    ),
    Alert(
        "MetricsPipelineNoRollupsDelivered",
        f"time() - metrics_pipeline_last_rollup_delivered_timestamp_seconds{{{STAGES}}} > 600"
        f" and metrics_pipeline_last_rollup_delivered_timestamp_seconds{{{STAGES}}} > 0",
        "5m",
        "warning",
        "{{ $labels.process }} has delivered no rollup for 10 minutes",
        "{{ $labels.instance }} last had a rollup acknowledged by Kafka "
        "{{ $value | humanizeDuration }} ago.",
    ),
    Alert(
        "MetricsPipelineDeadLetterRateHigh",
        # Samples for the worker; records (child rollups) for the tier, which reads no samples.
        "sum by (namespace, process) (rate(metrics_pipeline_deadletter_total[5m]))"
        " / (sum by (namespace, process) (rate(metrics_pipeline_samples_in_total[5m]))"
        " or sum by (namespace, process) (rate(metrics_pipeline_messages_consumed_total[5m])))"
        " > 0.01",
        "10m",
        "warning",
        "More than 1% of {{ $labels.process }} input is dead-lettered",
        "{{ $value | humanizePercentage }} of its input goes to the dead-letter topic: see "
        "metrics_pipeline_deadletter_total by reason for the producer to fix.",
    ),
    Alert(
        "MetricsPipelineProduceErrors",
        "increase(metrics_pipeline_produce_errors_total[10m]) > 0",
        "0m",
        "warning",
        "{{ $labels.process }} could not deliver to Kafka",
        "{{ $labels.instance }} saw Kafka delivery failures, which fail the batch: see its log "
        "and restarts.",
    ),
    Alert(
        "MetricsPipelineSinkPaused",
        "metrics_pipeline_sink_paused == 1",
        "5m",
        "critical",
        "The {{ $labels.sink }} sink has been paused for 5 minutes",
        "{{ $labels.instance }} keeps one batch and retries: the store is down or refusing "
        "writes. Nothing is lost, but rollups pile up in Kafka.",
    ),
    Alert(
        "MetricsPipelineSinkWriteFailures",
        "rate(metrics_pipeline_sink_write_failures_total[5m]) > 0",
        "10m",
        "warning",
        "The {{ $labels.sink }} sink keeps failing writes",
        "{{ $value | humanize }} failed batch writes per second on {{ $labels.instance }}.",
    ),
    Alert(
        "MetricsPipelineSinkDeadLetters",
        "sum by (namespace, sink) (rate(metrics_pipeline_sink_deadletter_total[5m]))"
        " / sum by (namespace, sink) (rate(metrics_pipeline_sink_records_in_total[5m])) > 0.01",
        "10m",
        "warning",
        "The {{ $labels.sink }} store refuses more than 1% of rollups",
        "{{ $value | humanizePercentage }} of rollups are dead-lettered by the store.",
    ),
    Alert(
        "MetricsPipelineNoCheckpoint",
        "metrics_pipeline_checkpoint_age_seconds > 600",
        "5m",
        "warning",
        "{{ $labels.process }} has written no checkpoint for 10 minutes",
        "A restart of {{ $labels.instance }} would replay "
        "{{ $value | humanizeDuration }} of input.",
    ),
    Alert(
        "MetricsPipelineDetectorLagging",
        'metrics_pipeline_watermark_lag_seconds{process="detect"} > 900',
        "10m",
        "warning",
        "The anomaly detector is behind",
        "The detector scores windows {{ $value | humanizeDuration }} behind the wall clock: "
        "anomalies are reported late.",
    ),
    Alert(
        "MetricsPipelineAlertmanagerUnreachable",
        "metrics_pipeline_alert_bridge_paused == 1"
        " or metrics_pipeline_alert_bridge_alertmanager_up == 0",
        "5m",
        "critical",
        "The alert bridge cannot reach Alertmanager",
        "Anomaly alerts are held back (nothing is lost) while {{ $labels.instance }} retries.",
    ),
)


def rule_groups() -> dict[str, Any]:
    return {"groups": [{"name": "metrics-pipeline", "rules": [a.rule() for a in ALERTS]}]}


def rules_yaml() -> str:
    header = (
        "# Generated by `python -m pipeline.deploy` from pipeline/deploy/rules.py: edit there.\n"
    )
    return header + yaml.safe_dump(rule_groups(), sort_keys=False, width=100)
