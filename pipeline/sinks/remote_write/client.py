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

import httpx

from pipeline.http_client import (
    Refused,
    RetryPolicy,
    Unavailable,
    basic_auth,
    bearer_header,
    post,
    tls_context,
)
from pipeline.sinks.base import RetryableSinkError
from pipeline.sinks.remote_write.encode import PROTOCOL_HEADERS
from pipeline.sinks.remote_write.settings import RemoteWriteSettings


class RemoteWriteClient:
    def __init__(self, settings: RemoteWriteSettings) -> None:
        self.url = settings.url
        self._settings = settings
        self._policy = RetryPolicy(
            settings.request_retries,
            settings.request_retry_initial / 1000,
            settings.request_retry_max / 1000,
        )
        self._permanent = tuple(m.lower() for m in settings.refuse_on_messages)
        self._http = httpx.Client(
            auth=basic_auth(settings),
            verify=tls_context(settings),
            timeout=settings.timeout / 1000,
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
        try:
            return post(self._http, self.url, body, lambda: headers, self._policy, self._permanent)
        except Unavailable as exc:
            raise RetryableSinkError(str(exc)) from exc

    def close(self) -> None:
        self._http.close()
