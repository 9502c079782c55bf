"""What the processes that call HTTP APIs (remote-write, Alertmanager) share: authentication,
TLS, and one POST with retries that tells "refused for good" from "unavailable now"."""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import BaseModel, Field, SecretStr, model_validator

from pipeline.sinks.backoff import Backoff

RETRYABLE_STATUS = frozenset({408, 429})
# Wrong URL or credentials: not the data's fault, so retried (a fixed configuration stores it).
CONFIGURATION_STATUS = frozenset({401, 403, 404, 405, 407})
MESSAGE_CHARS = 1_000


class HttpAuthSettings(BaseModel):
    """Basic auth or a bearer token (inline or from a file, re-read for every request so a
    rotated token is picked up), and TLS: a CA file, a client certificate, or no verification."""

    basic_auth_username: str | None = None
    basic_auth_password: SecretStr | None = None
    bearer_token: SecretStr | None = None
    bearer_token_file: Path | None = Field(
        None, description="Read before every request, so a rotated token is picked up."
    )
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _auth_and_tls(self) -> HttpAuthSettings:
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


def basic_auth_header(settings: HttpAuthSettings) -> dict[str, str]:
    """The Basic Authorization header, if basic auth is set (fixed: built once per client)."""
    if settings.basic_auth_username is None or settings.basic_auth_password is None:
        return {}
    secret = f"{settings.basic_auth_username}:{settings.basic_auth_password.get_secret_value()}"
    return {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}


def bearer_header(settings: HttpAuthSettings) -> dict[str, str]:
    """The Authorization header for the next request; raises OSError if the token file cannot
    be read (callers treat that as the server being unavailable: it may be rotated soon)."""
    if settings.bearer_token is not None:
        return {"Authorization": f"Bearer {settings.bearer_token.get_secret_value()}"}
    if settings.bearer_token_file is not None:
        token = settings.bearer_token_file.read_text().strip()
        return {"Authorization": f"Bearer {token}"}
    return {}


def tls_context(settings: HttpAuthSettings) -> ssl.SSLContext:
    cafile = None if settings.tls_ca_file is None else str(settings.tls_ca_file)
    context = ssl.create_default_context(cafile=cafile)
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        context.load_cert_chain(str(settings.tls_cert_file), str(settings.tls_key_file))
    if settings.tls_insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True, slots=True)
class Refused:
    """The server refused the request's content for good."""

    status: int
    message: str

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.message}"


class Unavailable(Exception):
    """The server cannot take the request now (down, 5xx, 429, timeouts, wrong credentials)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int  # after the first try
    initial: float  # seconds
    maximum: float


#: One attempt's answer: (HTTP status, the body's first MESSAGE_CHARS characters, the
#: Retry-After header in seconds or None).
Answer = tuple[int, str, float | None]


def post(
    http: httpx.Client,
    url: str,
    body: bytes,
    headers: Callable[[], dict[str, str]],
    policy: RetryPolicy,
    refuse_on_messages: tuple[str, ...] = (),
) -> Refused | None:
    """POST with httpx under `with_retries`."""

    def once() -> Answer:
        response = http.post(url, content=body, headers=headers())
        return response.status_code, response.text.strip()[:MESSAGE_CHARS], retry_after(response)

    return with_retries(url, once, policy, refuse_on_messages, (httpx.HTTPError,))


def with_retries(
    url: str,
    attempt_once: Callable[[], Answer],
    policy: RetryPolicy,
    refuse_on_messages: tuple[str, ...] = (),
    transport_errors: tuple[type[BaseException], ...] = (OSError,),
) -> Refused | None:
    """What every HTTP output does with an answer: None when stored, Refused when the server
    will never take it (other 4xx, or a 5xx whose body contains one of `refuse_on_messages`,
    lower case); retried with back-off (or the server's Retry-After) on 5xx, 408, 429 and
    `transport_errors` (refused, timeouts, broken answers); raises Unavailable once the retries
    are spent, or at once on a configuration status."""
    backoff = Backoff(policy.initial, policy.maximum)
    attempt = 0
    while True:
        try:
            status, message, wait = attempt_once()
        except transport_errors as exc:
            problem = f"{type(exc).__name__}: {exc}"
            wait = None
        else:
            if status < 300:
                return None
            if status in CONFIGURATION_STATUS:
                raise Unavailable(f"{url}: HTTP {status}: {message}")
            if status < 500 and status not in RETRYABLE_STATUS:
                return Refused(status, message)
            if any(m in message.lower() for m in refuse_on_messages):
                return Refused(status, message)
            problem = f"HTTP {status}: {message}"
        if attempt >= policy.retries:
            raise Unavailable(f"{url}: {problem} (after {attempt + 1} tries)")
        attempt += 1
        delay = backoff.next_delay()
        time.sleep(min(policy.maximum, wait) if wait is not None else delay)


def retry_after(response: httpx.Response) -> float | None:
    return retry_after_seconds(response.headers.get("Retry-After"))


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds; None when absent or an HTTP date (our own back-off)."""
    try:
        return max(0.0, float(value or ""))
    except ValueError:
        return None
