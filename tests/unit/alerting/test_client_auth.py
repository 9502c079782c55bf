"""What the Alertmanager client sends: its credentials and headers on every request.

Against a scripted loopback server (a fake: a real Alertmanager behind basic auth needs a
bcrypt web configuration; the real one is exercised in tests/integration/alerting/)."""

from __future__ import annotations

import orjson

from pipeline.alerting.client import AlertmanagerClient
from pipeline.alerting.settings import AlertBridgeSettings
from tests.unit.scripted_http import Scripted


def test_basic_auth_and_extra_headers_are_sent(scripted_http: tuple[str, Scripted]) -> None:
    base, script = scripted_http
    settings = AlertBridgeSettings(
        alertmanager_url=base,
        basic_auth_username="u",
        basic_auth_password="p",
        headers={"X-Scope-OrgID": "team-a"},
    )
    client = AlertmanagerClient(settings)
    try:
        assert client.send([{"labels": {"alertname": "x"}}]) == {}
    finally:
        client.close()
    headers, body = script.requests[0]
    assert headers["Authorization"] == "Basic dTpw"  # base64 of "u:p"
    assert headers["X-Scope-OrgID"] == "team-a"
    assert headers["Content-Type"] == "application/json"
    assert orjson.loads(body) == [{"labels": {"alertname": "x"}}]


def test_a_bearer_token_replaces_basic_auth(scripted_http: tuple[str, Scripted]) -> None:
    base, script = scripted_http
    client = AlertmanagerClient(AlertBridgeSettings(alertmanager_url=base, bearer_token="t0k"))
    try:
        assert client.send([{"labels": {"alertname": "x"}}]) == {}
    finally:
        client.close()
    assert script.requests[0][0]["Authorization"] == "Bearer t0k"
