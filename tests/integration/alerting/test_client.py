"""The Alertmanager client against a real Alertmanager: refusals found one by one, outages."""

from __future__ import annotations

import time

import pytest

from load.alertmanager import AlertmanagerServer
from pipeline.alerting.client import AlertmanagerClient, AlertmanagerUnavailable
from pipeline.alerting.mapping import rfc3339
from pipeline.loopback import free_port

from .helpers import bridge_settings


def alert(name: str, **labels: str) -> dict[str, object]:
    now = int(time.time() * 1000)
    return {
        "labels": {"alertname": name, **labels},
        "annotations": {"summary": name},
        "startsAt": rfc3339(now - 60_000),
        "endsAt": rfc3339(now + 600_000),
    }


def test_refused_alerts_are_isolated_and_the_others_stored(
    alertmanager: AlertmanagerServer,
) -> None:
    settings = bridge_settings("unused:9092", "client", alertmanager.base_url)
    client = AlertmanagerClient(settings.model_copy(update={"max_alerts_per_request": 4}))
    try:
        batch = [alert(f"A{i}") for i in range(10)]
        batch[3] = alert("Bad", **{"not-a-label": "x"})  # 400 for its request
        batch[8] = {**alert("BadURL"), "generatorURL": "not a uri"}  # 422 for its request
        refused = client.send(batch)
    finally:
        client.close()
    assert sorted(refused) == [3, 8]
    assert "invalid" in refused[3] and refused[3].startswith("HTTP 400")
    assert refused[8].startswith("HTTP 422")
    stored = {a["labels"]["alertname"] for a in alertmanager.alerts()}
    assert stored == {f"A{i}" for i in range(10)} - {"A3", "A8"}


def test_a_missing_alertmanager_is_unavailable_after_the_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = AlertmanagerClient(bridge_settings("unused:9092", "client", url))
    try:
        with pytest.raises(AlertmanagerUnavailable, match="after 2 tries"):
            client.send([alert("A")])
    finally:
        client.close()
