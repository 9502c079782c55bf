"""Alertmanager's v2 API over HTTP (httpx): POST /api/v2/alerts with auth, TLS and retries.

What a response means:
- 200: every alert of the request is stored.
- 5xx, 429 (Retry-After honoured up to the back-off cap), 408, connection errors and timeouts:
  retried `request_retries` times with capped, jittered back-off, then `AlertmanagerUnavailable`
  (the bridge keeps the alerts, stops consuming and tries again later).
- 401, 403, 404, 405, 407: the URL or the credentials are wrong, not the alerts; also
  `AlertmanagerUnavailable`, so a fixed configuration delivers everything that waited.
- 400 (and any other 4xx): Alertmanager refused some alert for good (invalid label, endsAt
  before startsAt ...). It stores the valid alerts of the request and names the bad ones only by
  message, so `send` halves the request until each refused alert stands alone; re-sending the
  valid ones is harmless (same labels, same alert).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from pipeline.alerting.settings import AlertBridgeSettings
from pipeline.errors import PipelineError
from pipeline.http_client import (
    RetryPolicy,
    Unavailable,
    basic_auth_header,
    bearer_header,
    post,
    tls_context,
)

ALERTS_PATH = "/api/v2/alerts"


class AlertmanagerUnavailable(PipelineError):
    """Alertmanager cannot take alerts now (down, 5xx, 429, timeout, wrong credentials)."""


class AlertmanagerClient:
    def __init__(self, settings: AlertBridgeSettings) -> None:
        self.url = settings.alertmanager_url + ALERTS_PATH
        self._settings = settings
        self._chunk = settings.max_alerts_per_request
        self._policy = RetryPolicy(
            settings.request_retries,
            settings.request_retry_initial / 1000,
            settings.request_retry_max / 1000,
        )
        self._http = httpx.Client(
            verify=tls_context(settings),
            timeout=settings.timeout / 1000,
            headers={
                **settings.headers,
                **basic_auth_header(settings),
                "Content-Type": "application/json",
            },
        )

    def send(self, alerts: Sequence[dict[str, Any]]) -> dict[int, str]:
        """POST the alerts (in requests of at most max_alerts_per_request); returns the ones
        refused for good as {index: Alertmanager's message}. Raises AlertmanagerUnavailable."""
        refused: dict[int, str] = {}
        for start in range(0, len(alerts), self._chunk):
            self._send_range(alerts, start, min(len(alerts), start + self._chunk), refused)
        return refused

    def _send_range(
        self, alerts: Sequence[dict[str, Any]], start: int, stop: int, refused: dict[int, str]
    ) -> None:
        message = self._post(alerts[start:stop])
        if message is None:
            return
        if stop - start == 1:
            refused[start] = message
            return
        middle = (start + stop) // 2
        self._send_range(alerts, start, middle, refused)
        self._send_range(alerts, middle, stop, refused)

    def _post(self, alerts: Sequence[dict[str, Any]]) -> str | None:
        """One request with retries: None when stored, the message when refused."""
        body = orjson.dumps(list(alerts))
        try:
            refused = post(self._http, self.url, body, self._auth_headers, self._policy)
        except Unavailable as exc:
            raise AlertmanagerUnavailable(str(exc)) from exc
        return None if refused is None else str(refused)

    def _auth_headers(self) -> dict[str, str]:
        """The Authorization header (the token file is read for every request)."""
        try:
            return bearer_header(self._settings)
        except OSError as exc:
            raise AlertmanagerUnavailable(f"cannot read bearer_token_file: {exc}") from exc

    def close(self) -> None:
        self._http.close()
