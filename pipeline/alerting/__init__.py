"""The alert bridge: anomaly episodes (metrics.anomalies) → alerts in Alertmanager (v2 API)."""

from pipeline.alerting.bridge import AlertBridge
from pipeline.alerting.client import AlertmanagerClient, AlertmanagerUnavailable
from pipeline.alerting.event import AnomalyEvent, InvalidEvent, decode_event
from pipeline.alerting.mapping import Alert, AlertMapper
from pipeline.alerting.settings import AlertBridgeSettings

__all__ = [
    "Alert",
    "AlertBridge",
    "AlertBridgeSettings",
    "AlertMapper",
    "AlertmanagerClient",
    "AlertmanagerUnavailable",
    "AnomalyEvent",
    "InvalidEvent",
    "decode_event",
]
