"""Settings of `metrics-pipeline sink remote-write` (env METRICS_PIPELINE_…, e.g.
METRICS_PIPELINE_URL, METRICS_PIPELINE_BEARER_TOKEN_FILE, METRICS_PIPELINE_CONCURRENCY)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from pipeline.sinks.remote_write.encode import PROTOCOL_HEADERS
from pipeline.sinks.settings import SinkSettings


class RemoteWriteSettings(SinkSettings):
    """Where and how to POST remote-write requests, on top of the runner's settings."""

    group_id: str = "metrics-pipeline-remote-write"
    url: str = Field(description="Remote-write endpoint, e.g. http://prometheus:9090/api/v1/write.")
    # (request_retries + 1) × timeout + back-off bounds one write; keep it under the 60 s after
    # which /healthz reports a stalled loop.
    timeout: str = Field("10s", description="Per HTTP request (connect, send, wait, read).")
    concurrency: int = Field(4, ge=1, le=64, description="Parallel requests (shards by series).")
    max_samples_per_request: int = Field(2_000, ge=1)
    request_retries: int = Field(
        3, ge=0, description="Retries of one request on 5xx/429/timeouts before the batch fails."
    )
    request_retry_initial: str = "100ms"
    request_retry_max: str = "5s"
    basic_auth_username: str | None = None
    basic_auth_password: SecretStr | None = None
    bearer_token: SecretStr | None = None
    bearer_token_file: Path | None = Field(
        None, description="Read before every batch, so a rotated token is picked up."
    )
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_insecure_skip_verify: bool = False
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers.")
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

    @field_validator("timeout", "request_retry_initial", "request_retry_max")
    @classmethod
    def _durations(cls, value: str) -> str:
        return cls._duration(value)

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

    @model_validator(mode="after")
    def _auth_and_tls(self) -> RemoteWriteSettings:
        bearer = self.bearer_token is not None or self.bearer_token_file is not None
        if self.bearer_token is not None and self.bearer_token_file is not None:
            raise ValueError("set bearer_token or bearer_token_file, not both")
        if bearer and self.basic_auth_username is not None:
            raise ValueError("set basic auth or a bearer token, not both")
        if (self.basic_auth_username is None) != (self.basic_auth_password is None):
            raise ValueError("basic auth needs basic_auth_username and basic_auth_password")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("a client certificate needs tls_cert_file and tls_key_file")
        for path in (
            self.bearer_token_file,
            self.tls_ca_file,
            self.tls_cert_file,
            self.tls_key_file,
        ):
            if path is not None and not path.is_file():
                raise ValueError(f"file not found: {path}")
        return self
