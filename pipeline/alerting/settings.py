"""Settings of `metrics-pipeline alert-bridge` (pipeline/common_settings.py precedence: flags >
METRICS_PIPELINE_* env > YAML > defaults), e.g. METRICS_PIPELINE_ALERTMANAGER_URL,
METRICS_PIPELINE_DASHBOARD_URL_TEMPLATE, METRICS_PIPELINE_BEARER_TOKEN_FILE."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from pipeline.alerting.labels import LABEL_NAME
from pipeline.alerting.template import check_template
from pipeline.common_settings import GroupMemberSettings
from pipeline.http_client import HttpAuthSettings
from pipeline.setting_types import Duration, OptionalDuration, duration


class AlertBridgeSettings(GroupMemberSettings, HttpAuthSettings):
    """A consumer-group member on the anomaly topic that keeps Alertmanager in step with it."""

    group_id: str = "metrics-pipeline-alert-bridge"
    alertmanager_url: str = Field(
        description="Alertmanager's base URL (alerts go to <url>/api/v2/alerts), "
        "e.g. http://alertmanager:9093."
    )
    alertname: str = Field("MetricAnomaly", description="The alertname label of every alert.")
    extra_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Static labels added to every alert (like Prometheus' external labels); "
        "the event's own labels win over them.",
    )
    dashboard_url_template: str | None = Field(
        None,
        description="Link put in the `dashboard` annotation and generatorURL, a str.format "
        "template over the event's fields, e.g. "
        "https://grafana/d/x?var-service={service}&var-region={region}&from={started_at}.",
    )
    resend_interval: Duration = Field(
        duration("1m"), description="Firing alerts are sent again this often so they do not expire."
    )
    alert_ttl: OptionalDuration = Field(
        None,
        description="endsAt of a firing alert = now + this; default 4 × resend_interval "
        "(Prometheus' rule). A stopped bridge's alerts resolve by themselves after it.",
    )
    timeout: Duration = Field(
        duration("10s"), description="Per HTTP request (connect, send, wait, read)."
    )
    request_retries: int = Field(
        2, ge=0, description="Retries of one POST on 5xx/429/timeouts before the batch waits."
    )
    request_retry_initial: Duration = duration("200ms")
    request_retry_max: Duration = duration("5s")
    retry_initial: Duration = Field(
        duration("500ms"), description="First wait after Alertmanager failed."
    )
    retry_max: Duration = Field(
        duration("30s"), description="Wait cap while Alertmanager stays down."
    )
    max_alerts_per_request: int = Field(500, ge=1, le=10_000)
    batch_records: int = Field(1_000, ge=1, description="Most anomaly events per batch.")
    resolved_memory: int = Field(
        100_000,
        ge=0,
        description="Recently resolved episode ids remembered, so a re-emitted firing event of a "
        "resolved episode does not fire it again.",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers.")

    @field_validator("alertmanager_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("alertmanager_url must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("alertname")
    @classmethod
    def _alertname(cls, value: str) -> str:
        if not value:
            raise ValueError("alertname must not be empty")
        return value

    @field_validator("extra_labels")
    @classmethod
    def _extra_labels(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(name for name in value if not LABEL_NAME.fullmatch(name))
        if bad:
            raise ValueError(f"invalid label names {bad} (use [a-zA-Z_][a-zA-Z0-9_]*)")
        return value

    @field_validator("dashboard_url_template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            check_template(value)
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        fixed = {"authorization", "content-type"}
        clash = sorted(h for h in value if h.lower() in fixed)
        if clash:
            raise ValueError(f"headers may not set {clash} (the client or auth settings do)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AlertBridgeSettings:
        if self.ttl_ms() <= self.resend_interval:
            raise ValueError("alert_ttl must be longer than resend_interval")
        return self

    def ttl_ms(self) -> int:
        """How far past now a firing alert's endsAt lies."""
        if self.alert_ttl is not None:
            return self.alert_ttl
        return 4 * self.resend_interval
