"""Settings of `metrics-pipeline sink remote-write` (env METRICS_PIPELINE_…, e.g.
METRICS_PIPELINE_URL, METRICS_PIPELINE_BEARER_TOKEN_FILE, METRICS_PIPELINE_CONCURRENCY)."""

from __future__ import annotations

from pydantic import Field, field_validator

from pipeline.http_client import HttpAuthSettings
from pipeline.setting_types import Duration, duration
from pipeline.sinks.remote_write.encode import PROTOCOL_HEADERS
from pipeline.sinks.remote_write.naming import Scheme
from pipeline.sinks.settings import SinkSettings


class RemoteWriteSettings(SinkSettings, HttpAuthSettings):
    """Where and how to POST remote-write requests, on top of the runner's settings."""

    group_id: str = "metrics-pipeline-remote-write"
    url: str = Field(description="Remote-write endpoint, e.g. http://prometheus:9090/api/v1/write.")
    # (request_retries + 1) × timeout + back-off bounds one write; keep it under the 60 s after
    # which /healthz reports a stalled loop.
    timeout: Duration = Field(
        duration("10s"), description="Per HTTP request (connect, send, wait, read)."
    )
    concurrency: int = Field(4, ge=1, le=64, description="Parallel requests (shards by series).")
    # Each request costs the sink a fixed amount of HTTP work: 10,000 samples (vmagent's default
    # block size; ~1 MB before snappy) halved the sink's CPU per sample against 2,000, and
    # 20,000 (~2.4 MB before snappy, far below the receivers' limits: VictoriaMetrics 32 MB,
    # Mimir 100 MB) sends a shard of a 5,000-rollup batch in one request instead of a full and a
    # small one: the HTTP threads' CPU drops by a third (docs/remote-write.md#speed).
    max_samples_per_request: int = Field(20_000, ge=1)
    request_retries: int = Field(
        3, ge=0, description="Retries of one request on 5xx/429/timeouts before the batch fails."
    )
    request_retry_initial: Duration = duration("100ms")
    request_retry_max: Duration = duration("5s")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers.")
    naming: Scheme = Field(
        "aggregation",
        description="Series names: 'aggregation' (<metric>_<unit>:<interval>_<output>, base units) "
        "or 'flat' (the earlier <metric>_count/_sum/... with a resolution label, raw units).",
    )
    send_metadata: bool = Field(True, description="Send metric metadata (type, help, unit).")
    metadata_interval: Duration = Field(
        duration("10m"), description="Resend every family's metadata this often (TSDBs forget it)."
    )
    refuse_on_messages: list[str] = Field(
        default_factory=lambda: [
            "too old sample",
            "out of bounds",
            "out of order sample",
            "duplicate sample for timestamp",
        ],
        description="A 5xx whose body contains one of these is a refusal, not an outage: "
        "Prometheus 2.42 answers 500 'too old sample' for samples behind its out-of-order window.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("url must be an http:// or https:// remote-write endpoint")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        fixed = {h.lower() for h in PROTOCOL_HEADERS} | {"authorization"}
        clash = sorted(h for h in value if h.lower() in fixed)
        if clash:
            raise ValueError(f"headers may not set {clash} (protocol or auth settings do)")
        return value
