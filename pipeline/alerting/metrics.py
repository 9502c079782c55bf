"""The alert bridge's own metrics (Prometheus text on /metrics), named for what an operator asks."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class BridgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        p = "metrics_pipeline_alert_bridge_"
        self.events_in = Counter(
            p + "events_in", "Anomaly events consumed, by state.", ["state"], registry=r
        )
        self.alerts_sent = Counter(
            p + "alerts_sent",
            "Alerts for new events acknowledged by Alertmanager, by state (firing, resolved).",
            ["state"],
            registry=r,
        )
        self.resends = Counter(
            p + "resends", "Firing alerts sent again so they do not expire.", registry=r
        )
        self.send_failures = Counter(
            p + "send_failures",
            "Sends that failed after their retries (Alertmanager down, 5xx, 429, timeout).",
            registry=r,
        )
        self.deadletter = Counter(
            p + "deadletter",
            "Events dead-lettered: unreadable (malformed_json, invalid_anomaly) or refused by "
            "Alertmanager (alert_rejected).",
            ["reason"],
            registry=r,
        )
        self.duplicates = Counter(
            p + "duplicate_events",
            "Firing events of an episode already active or lately resolved (re-emissions).",
            registry=r,
        )
        self.template_errors = Counter(
            p + "template_errors",
            "Events whose dashboard link could not be rendered (sent without it).",
            registry=r,
        )
        self.active_episodes = Gauge(
            p + "active_episodes", "Episodes firing, re-sent every resend_interval.", registry=r
        )
        self.alertmanager_up = Gauge(
            p + "alertmanager_up", "1 if the latest send to Alertmanager succeeded.", registry=r
        )
        self.paused = Gauge(
            p + "paused", "1 while consumption is paused because Alertmanager fails.", registry=r
        )
        self.assigned = Gauge(p + "assigned_partitions", "Anomaly partitions owned.", registry=r)
        self.commit_lag = Gauge(
            p + "commit_lag_messages",
            "Records not yet committed (high watermark − committed): unsent events and the "
            "history kept for active episodes.",
            registry=r,
        )
        self.send_duration = Histogram(
            p + "send_duration_seconds",
            "Time of one send (all its requests and retries), successful or not.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
