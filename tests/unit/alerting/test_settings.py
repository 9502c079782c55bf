"""Alert bridge settings: defaults, precedence, and clear errors at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.alerting.settings import AlertBridgeSettings
from pipeline.common_settings import load_settings
from pipeline.errors import ConfigError


def test_defaults_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_PIPELINE_ALERTMANAGER_URL", "http://am:9093/")
    monkeypatch.setenv("METRICS_PIPELINE_EXTRA_LABELS", '{"team": "payments"}')
    s = load_settings(AlertBridgeSettings, resend_interval="30s")
    assert s.alertmanager_url == "http://am:9093"
    assert s.anomaly_topic == "metrics.anomalies" and s.alertname == "MetricAnomaly"
    assert s.extra_labels == {"team": "payments"}
    assert s.ttl_ms() == 120_000  # 4 × resend_interval
    assert (s.resend_interval, s.timeout, s.alert_ttl) == (30_000, 10_000, None)
    assert s.model_dump()["resend_interval"] == "30s"


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({}, "alertmanager_url"),
        ({"alertmanager_url": "am:9093"}, "http://"),
        ({"dashboard_url_template": "https://g/{nope}"}, "nope"),
        ({"dashboard_url_template": "https://g/{service.__class__}"}, "service.__class__"),
        ({"resend_interval": "1m", "alert_ttl": "30s"}, "alert_ttl"),
        ({"resend_interval": "soon"}, "not a duration"),
        ({"extra_labels": {"team-name": "x"}}, "team-name"),
        ({"basic_auth_username": "u"}, "basic auth"),
        ({"bearer_token": "t", "basic_auth_username": "u", "basic_auth_password": "p"}, "not both"),
        ({"tls_ca_file": "/nonexistent/ca.pem"}, "file not found"),
        ({"headers": {"Authorization": "x"}}, "headers"),
    ],
)
def test_bad_settings_name_the_problem(overrides: dict[str, object], says: str) -> None:
    if "alertmanager_url" not in overrides and says != "alertmanager_url":
        overrides = {"alertmanager_url": "http://am:9093", **overrides}
    with pytest.raises(ConfigError, match=None) as caught:
        load_settings(AlertBridgeSettings, **overrides)
    assert says in str(caught.value)


def test_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        "alertmanager_url: https://am.example:9093\n"
        "dashboard_url_template: https://grafana/d/x?var-service={service}\n"
        "bearer_token: s3cret\n"
    )
    s = load_settings(AlertBridgeSettings, path, alertname="Anomaly")
    assert s.alertname == "Anomaly" and s.bearer_token is not None
    assert "s3cret" not in repr(s)
