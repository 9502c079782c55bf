"""The alert bridge's own metrics (Prometheus text on /metrics), named for what an operator asks."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from pipeline.metric_declarations import MetricDeclarations


class BridgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        m = MetricDeclarations(self.registry, "metrics_pipeline_alert_bridge_")
        self.events_in = m.counter("events_in", "Anomaly events consumed, by state.", by=["state"])
        self.alerts_sent = m.counter(
            "alerts_sent",
            "Alerts for new events acknowledged by Alertmanager, by state (firing, resolved).",
            by=["state"],
        )
        self.resends = m.counter("resends", "Firing alerts sent again so they do not expire.")
        self.send_failures = m.counter(
            "send_failures",
            "Sends that failed after their retries (Alertmanager down, 5xx, 429, timeout).",
        )
        self.deadletter = m.counter(
            "deadletter",
            "Events dead-lettered: unreadable (malformed_json, invalid_anomaly) or refused by "
            "Alertmanager (alert_rejected).",
            by=["reason"],
        )
        self.duplicates = m.counter(
            "duplicate_events",
            "Firing events of an episode already active or lately resolved (re-emissions).",
        )
        self.template_errors = m.counter(
            "template_errors",
            "Events whose dashboard link could not be rendered (sent without it).",
        )
        self.active_episodes = m.gauge(
            "active_episodes", "Episodes firing, re-sent every resend_interval."
        )
        self.alertmanager_up = m.gauge(
            "alertmanager_up", "1 if the latest send to Alertmanager succeeded."
        )
        self.paused = m.gauge("paused", "1 while consumption is paused because Alertmanager fails.")
        self.assigned = m.gauge("assigned_partitions", "Anomaly partitions owned.")
        self.commit_lag = m.gauge(
            "commit_lag_messages",
            "Records not yet committed (high watermark − committed): unsent events and the "
            "history kept for active episodes.",
        )
        self.send_duration = m.histogram(
            "send_duration_seconds",
            "Time of one send (all its requests and retries), successful or not.",
            (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
