"""Alertmanager goes away, the bridge dies with kill -9: every alert still arrives, nothing is
committed past an unsent event, and a restarted bridge rebuilds its active episodes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from load.alertmanager import AlertmanagerServer
from pipeline.kafka.admin import TopicSpec, ensure_topics
from tests.support.anomaly_events import MINUTE_MS, anomaly, resolved

from ..harness import worker_process
from .helpers import (
    PARTITIONS,
    bridge_settings,
    bridge_thread,
    episode_ids,
    epoch_ms,
    group_committed,
    pinned,
    produce_events,
    wait_until,
)

SERVICES = ("checkout", "search", "billing", "cart", "auth", "ledger")


def t0() -> int:
    return (int(time.time() * 1000) - 30 * MINUTE_MS) // MINUTE_MS * MINUTE_MS


def ends_of(where: list[tuple[int, int]]) -> dict[int, int]:
    ends = {p: 0 for p in range(PARTITIONS)}
    for p, o in where:
        ends[p] = max(ends[p], o + 1)
    return ends


@pytest.mark.slow
def test_an_alertmanager_outage_loses_nothing_and_commits_nothing_unsent(
    kafka_bootstrap: str, unique_name: str, alertmanager: AlertmanagerServer
) -> None:
    start = t0()
    settings = bridge_settings(kafka_bootstrap, unique_name, alertmanager.base_url)
    topic = settings.anomaly_topic
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, PARTITIONS)])
    # Before the outage: episodes that fire and resolve on every service (both partitions).
    before = [anomaly(f"old-{s}", "firing", service=s, started_at=start) for s in SERVICES]
    before += [resolved(e) for e in before]
    first = produce_events(kafka_bootstrap, topic, before)
    with bridge_thread(settings) as bridge:
        first_ends = {(topic, p): o for p, o in ends_of(first).items()}
        wait_until(lambda: bridge.totals.committed == first_ends, "the first events committed")

        alertmanager.stop()  # SIGTERM by pid
        during = [
            anomaly(f"new-{s}", "firing", service=s, started_at=start + MINUTE_MS)
            for s in SERVICES[:4]
        ]
        during.append(
            anomaly("gone-ledger", "firing", service="ledger", kind="absence", started_at=start)
        )
        during.append(resolved(during[1], windows_later=2))
        second = produce_events(kafka_bootstrap, topic, during)
        wait_until(lambda: bridge.totals.failed_sends >= 3, "sends to the stopped Alertmanager")
        # Nothing past the sent events is committed, by the bridge or in Kafka.
        assert bridge.totals.committed == first_ends
        assert group_committed(kafka_bootstrap, settings.group_id, topic) == {
            p: o for (_, p), o in first_ends.items()
        }
        # Consumption is paused: one batch is all the bridge holds.
        assert bridge.totals.consumed - len(before) <= settings.batch_records
        assert bridge.metrics.alertmanager_up._value.get() == 0
        assert bridge.metrics.paused._value.get() == 1

        alertmanager.start()  # same port and storage path; it lost every alert it held
        active = {e["episode_id"] for e in during if e["state"] == "firing"} - {"new-search"}
        wait_until(lambda: episode_ids(alertmanager.alerts()) == active, f"alerts {active}")
        firing_at = {e["episode_id"]: w for e, w in zip(during, second, strict=True)}
        ends = ends_of(first + second)
        want = {(topic, p): pinned(firing_at, active).get(p, ends[p]) for p in range(PARTITIONS)}
        wait_until(lambda: bridge.totals.committed == want, f"committed {want}")
        assert alertmanager.received().get("resolved", 0) >= 1  # new-search's resolution
        assert bridge.metrics.alertmanager_up._value.get() == 1
        for alert in alertmanager.alerts():
            event = next(e for e in during if e["episode_id"] == alert["annotations"]["episode_id"])
            assert epoch_ms(alert["startsAt"]) == event["started_at"]


@pytest.mark.slow
def test_a_killed_bridge_is_replaced_and_rebuilds_its_active_episodes(
    kafka_bootstrap: str, unique_name: str, alertmanager: AlertmanagerServer, tmp_path: Path
) -> None:
    start = t0()
    # A long resend interval: what the second bridge sends, it sends because it replayed.
    settings = bridge_settings(
        kafka_bootstrap, unique_name, alertmanager.base_url, resend_interval="10m", alert_ttl="1h"
    )
    topic = settings.anomaly_topic
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, PARTITIONS)])
    events = [
        anomaly(f"ep-{s}", "firing", service=s, started_at=start + i * MINUTE_MS)
        for i, s in enumerate(SERVICES)
    ]
    events += [resolved(events[1]), resolved(events[4])]
    where = produce_events(kafka_bootstrap, topic, events)
    active = {"ep-checkout", "ep-billing", "ep-cart", "ep-ledger"}
    firing_at = {e["episode_id"]: w for e, w in zip(events, where, strict=True)}
    want = {p: pinned(firing_at, active).get(p, ends_of(where)[p]) for p in range(PARTITIONS)}

    process = worker_process(settings, str(tmp_path / "bridge.log"), ("alert-bridge",))
    try:
        wait_until(
            lambda: episode_ids(alertmanager.alerts()) == active, "the first bridge's alerts"
        )
        wait_until(
            lambda: group_committed(kafka_bootstrap, settings.group_id, topic) == want,
            f"committed {want}",
        )
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
    # Only the oldest active episodes' firing events are kept uncommitted.
    assert group_committed(kafka_bootstrap, settings.group_id, topic) == want

    alertmanager.restart()  # forgets every alert: only a replaying bridge can bring them back
    assert alertmanager.alerts() == []
    with bridge_thread(settings) as bridge:
        wait_until(lambda: episode_ids(alertmanager.alerts()) == active, "the alerts re-sent")
        assert set(bridge.episodes.active) == active
        assert bridge.totals.resent == 0  # sent from the replay, not by the resend timer
        for alert in alertmanager.alerts():
            event = next(e for e in events if e["episode_id"] == alert["annotations"]["episode_id"])
            assert epoch_ms(alert["startsAt"]) == event["started_at"]
        # Re-sending the resolved ones is harmless: they stay resolved.
        assert not {"ep-search", "ep-auth"} & episode_ids(alertmanager.alerts())
        wait_until(
            lambda: {tp[1]: o for tp, o in bridge.totals.committed.items()} == want,
            "the same commit point",
        )
    assert group_committed(kafka_bootstrap, settings.group_id, topic) == want
