"""The detector's own events (pipeline/core/detect) are what the bridge reads: none is refused."""

from __future__ import annotations

from pipeline.alerting.event import decode_event
from pipeline.alerting.mapping import AlertMapper

from ..core.test_detect import MINUTE, START, run, stream


def test_detector_events_decode_and_map_to_alerts() -> None:
    spike = range(200, 215)
    events = run(
        stream(
            300,
            p99=lambda s, m, v: v * 5 if s == "b" and m in spike else v,
            silent=lambda s, m: s == "c" and 150 <= m < 250,
        )
    )
    assert {e.body["kind"] for e in events} == {"deviation", "absence"}
    mapper = AlertMapper()
    alerts = {}
    for e in events:
        decoded = decode_event(e.encode(), e.key.encode())
        alerts.setdefault(decoded.episode_id, []).append(mapper.alert(decoded))
    for firing, resolved in alerts.values():
        assert firing.identity == resolved.identity  # the resolution ends that very alert
        assert firing.ends_at_ms is None and resolved.ends_at_ms is not None
        assert resolved.ends_at_ms > resolved.starts_at_ms >= START
    absent = next(a for a, _ in alerts.values() if a.labels["kind"] == "absence")
    assert absent.starts_at_ms == START + 150 * MINUTE
