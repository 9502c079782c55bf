"""One remote-write endpoint over HTTP (httpx): auth, TLS, retries of a single request.

What a response means:
- 2xx: stored.
- 5xx, 429 (Retry-After honoured up to the back-off cap), 408, connection errors and timeouts:
  retried here `request_retries` times with capped, jittered back-off, then `RetryableSinkError`
  (the runner keeps the batch and tries again later).
- 401, 403, 404, 405, 407: the endpoint or its credentials are wrong, not the data. Also
  `RetryableSinkError`: dead-lettering every record because a token expired would lose data that
  a fixed configuration stores.
- any other 4xx (400 out-of-bounds or out-of-order samples, 413, 422 …): `Refused` with the
  server's message; the sink bisects the request to find the records it refuses.
- a 5xx whose message contains one of `refuse_on_messages` (default: Prometheus' sample
  errors): `Refused` too. Prometheus 2.42 answers 500 "too old sample" for data behind its
  out-of-order window; retrying it would stop the sink for good on one old rollup.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from pipeline.http_auth import basic_auth, bearer_header, tls_context
from pipeline.sinks.backoff import Backoff
from pipeline.sinks.base import RetryableSinkError
from pipeline.sinks.remote_write.encode import PROTOCOL_HEADERS
from pipeline.sinks.remote_write.settings import RemoteWriteSettings

RETRYABLE_STATUS = frozenset({408, 429})
CONFIGURATION_STATUS = frozenset({401, 403, 404, 405, 407})
MESSAGE_CHARS = 1_000


@dataclass(frozen=True, slots=True)
class Refused:
    """The server refused the request's content for good."""

    status: int
    message: str

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.message}"


class RemoteWriteClient:
    def __init__(self, settings: RemoteWriteSettings) -> None:
        self.url = settings.url
        self._settings = settings
        self._retries = settings.request_retries
        self._retry_initial = settings.seconds("request_retry_initial")
        self._retry_max = settings.seconds("request_retry_max")
        self._permanent = tuple(m.lower() for m in settings.refuse_on_messages)
        self._http = httpx.Client(
            auth=basic_auth(settings),
            verify=tls_context(settings),
            timeout=settings.seconds("timeout"),
            headers={**settings.headers, **PROTOCOL_HEADERS},
            limits=httpx.Limits(
                max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency
            ),
        )

    def auth_headers(self) -> dict[str, str]:
        """The Authorization header for the next requests (the token file is read each time)."""
        try:
            return bearer_header(self._settings)
        except OSError as exc:
            raise RetryableSinkError(f"cannot read bearer_token_file: {exc}") from exc

    def send(self, body: bytes, headers: dict[str, str]) -> Refused | None:
        """POST one compressed WriteRequest: None when stored, Refused when the server will
        never take it; raises RetryableSinkError when it cannot take it now."""
        backoff = Backoff(self._retry_initial, self._retry_max)
        attempt = 0
        while True:
            try:
                response = self._http.post(self.url, content=body, headers=headers)
            except httpx.TransportError as exc:  # connect/read/write/pool timeouts, refused
                problem = f"{type(exc).__name__}: {exc}"
                wait = None
            else:
                status = response.status_code
                if status < 300:
                    return None
                message = response.text.strip()[:MESSAGE_CHARS]
                if status < 500 and status not in RETRYABLE_STATUS:
                    if status in CONFIGURATION_STATUS:
                        raise RetryableSinkError(f"{self.url}: HTTP {status}: {message}")
                    return Refused(status, message)
                if any(m in message.lower() for m in self._permanent):
                    return Refused(status, message)
                problem = f"HTTP {status}: {message}"
                wait = _retry_after(response)
            if attempt >= self._retries:
                raise RetryableSinkError(f"{self.url}: {problem} (after {attempt + 1} attempts)")
            attempt += 1
            delay = backoff.next_delay()
            time.sleep(min(self._retry_max, wait) if wait is not None else delay)

    def close(self) -> None:
        self._http.close()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # absent, or an HTTP date: use our own back-off
