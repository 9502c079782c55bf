"""The bridge against the real broker and a real Alertmanager, read back from its v2 API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from load.alertmanager import AlertmanagerServer
from pipeline.kafka.admin import TopicSpec, ensure_topics
from tests.support.anomaly_events import MINUTE_MS, anomaly, resolved
from tests.support.kafka_helpers import read_all
from tests.support.tsdb_servers import require

from .helpers import (
    PARTITIONS,
    WebhookReceiver,
    bridge_settings,
    bridge_thread,
    episode_ids,
    epoch_ms,
    group_committed,
    pinned,
    produce_events,
    wait_until,
)

TEMPLATE = "https://grafana.example/d/x?var-service={service}&var-region={region}&from={started_at}"


def episodes(t0: int) -> dict[str, dict[str, Any]]:
    """Four firing episodes: two deviations, an absence, a warning; various series."""
    return {
        "ep-latency": anomaly(
            "ep-latency",
            "firing",
            started_at=t0,
            window_start=t0 + 2 * MINUTE_MS,
            labels={"http.method": "GET", "severity": "page-me"},
        ),
        "ep-rate": anomaly(
            "ep-rate",
            "firing",
            service="search",
            region="us-east-1",
            name="requests",
            statistic="rate",
            unit=None,
            observed=3.5,
            direction="down",
            started_at=t0 + MINUTE_MS,
        ),
        "ep-absent": anomaly(
            "ep-absent",
            "firing",
            service="billing",
            region="ap-south-1",
            kind="absence",
            direction="down",
            started_at=t0,
            window_start=t0 + 3 * MINUTE_MS,
        ),
        "ep-warn": anomaly(
            "ep-warn",
            "firing",
            service="cart",
            region="eu-west-1",
            severity="warning",
            started_at=t0 + 2 * MINUTE_MS,
        ),
    }


@pytest.mark.slow
def test_episodes_become_alerts_and_resolve(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    require(AlertmanagerServer)
    webhook = WebhookReceiver()
    am = AlertmanagerServer(tmp_path / "alertmanager", webhook_url=webhook.url)
    am.start()
    try:
        t0 = (int(time.time() * 1000) - 30 * MINUTE_MS) // MINUTE_MS * MINUTE_MS
        fired = episodes(t0)
        settings = bridge_settings(
            kafka_bootstrap, unique_name, am.base_url, dashboard_url_template=TEMPLATE
        )
        topic = settings.anomaly_topic
        ensure_topics(kafka_bootstrap, [TopicSpec(topic, PARTITIONS)])
        garbage: list[Any] = [
            (b"x@firing", b"{not json", 0),
            (b"ep-latency@firing", orjson.dumps({"episode_id": "ep-latency"}), 1),
        ]
        where = produce_events(kafka_bootstrap, topic, [*fired.values(), *garbage])
        firing_at = dict(zip(fired, where, strict=False))
        with bridge_thread(settings) as bridge:
            wait_until(lambda: episode_ids(am.alerts()) == set(fired), "four firing alerts")
            by_episode = {a["annotations"]["episode_id"]: a for a in am.alerts()}

            latency = by_episode["ep-latency"]
            assert latency["labels"] == {
                "alertname": "MetricAnomaly",
                "service": "checkout",
                "region": "eu-west-1",
                "metric": "http.server.duration",
                "statistic": "p99",
                "severity": "critical",
                "resolution": "1m",
                "kind": "deviation",
                "http_method": "GET",
                "series_severity": "page-me",
            }
            notes = latency["annotations"]
            assert notes["summary"] == (
                "checkout/eu-west-1: http.server.duration p99 above its expected range (critical)"
            )
            assert "812.5 ms is up against an expected 120 ms" in notes["description"]
            assert notes["detector"] == "robust/1.0.0" and notes["score"] == "3.25"
            link = (
                f"https://grafana.example/d/x?var-service=checkout&var-region=eu-west-1&from={t0}"
            )
            assert notes["dashboard"] == link and latency["generatorURL"] == link
            assert epoch_ms(latency["startsAt"]) == t0
            assert latency["status"]["state"] == "active"
            assert epoch_ms(latency["endsAt"]) > time.time() * 1000

            absent = by_episode["ep-absent"]
            assert absent["labels"]["kind"] == "absence"
            assert absent["annotations"]["summary"].endswith("stopped reporting (critical)")
            assert by_episode["ep-warn"]["labels"]["severity"] == "warning"
            assert by_episode["ep-rate"]["labels"]["statistic"] == "rate"

            # Firing alerts are re-sent: their endsAt keeps moving forward.
            ends_before = epoch_ms(latency["endsAt"])
            wait_until(
                lambda: epoch_ms(_alert(am, "ep-latency")["endsAt"]) > ends_before,
                "a re-send that extends endsAt",
            )
            assert bridge.totals.resent > 0

            # Nothing is committed past a firing episode's event.
            ends = {p: 0 for p in range(PARTITIONS)}
            for p, o in where:
                ends[p] = max(ends[p], o + 1)
            want = {p: pinned(firing_at, set(fired)).get(p, ends[p]) for p in range(PARTITIONS)}
            wait_until(
                lambda: group_committed(kafka_bootstrap, settings.group_id, topic) == want,
                f"committed offsets {want}",
            )

            done = {name: resolved(fired[name], windows_later=4) for name in ("ep-rate", "ep-warn")}
            resolved_at = dict(
                zip(done, produce_events(kafka_bootstrap, topic, list(done.values())), strict=True)
            )
            still = {"ep-latency", "ep-absent"}
            wait_until(lambda: episode_ids(am.alerts()) == still, "two alerts left firing")
            wait_until(
                lambda: (
                    {a["annotations"]["episode_id"] for a in webhook.alerts("resolved")}
                    == set(done)
                ),
                "resolved notifications",
            )
            for note in webhook.alerts("resolved"):
                event = done[note["annotations"]["episode_id"]]
                assert epoch_ms(note["startsAt"]) == event["started_at"]
                assert epoch_ms(note["endsAt"]) == event["window_end"]
                assert "back to normal at" in note["annotations"]["description"]
            assert am.received().get("resolved", 0) >= 2
            assert sorted(bridge.episodes.active) == sorted(still)

            ends = {
                p: max([ends[p]] + [o + 1 for q, o in resolved_at.values() if q == p]) for p in ends
            }
            want = {p: pinned(firing_at, still).get(p, ends[p]) for p in range(PARTITIONS)}
            wait_until(
                lambda: bridge.totals.committed == {(topic, p): o for p, o in want.items()},
                f"committed offsets {want}",
            )
            assert bridge.totals.deadlettered == 2
            metrics = bridge.metrics
            assert metrics.alerts_sent.labels("firing")._value.get() == 4
            assert metrics.alerts_sent.labels("resolved")._value.get() == 2
            assert metrics.active_episodes._value.get() == 2
            assert metrics.alertmanager_up._value.get() == 1

        dead = [
            orjson.loads(r.value or b"")
            for r in read_all(kafka_bootstrap, settings.deadletter_topic)
        ]
        assert sorted(d["reason"] for d in dead) == ["invalid_anomaly", "malformed_json"]
        assert all(d["stage"] == "alert-bridge" and d["topic"] == topic for d in dead)
    finally:
        am.stop()
        webhook.close()


def _alert(am: AlertmanagerServer, episode: str) -> dict[str, Any]:
    return next(a for a in am.alerts() if a["annotations"]["episode_id"] == episode)
