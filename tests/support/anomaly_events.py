"""Anomaly events as the detector writes them (schemas/anomaly.schema.json), for bridge tests.

Every event built here is validated against the schema, so the tests feed the bridge only what
the contract allows (and the contract is checked to allow what the tests need).
"""

from __future__ import annotations

from typing import Any

import orjson

from tests.support.schemas import schema_errors

MINUTE_MS = 60_000


def assert_valid(event: dict[str, Any]) -> None:
    problems = schema_errors("anomaly", event)
    assert not problems, f"not a valid anomaly event: {problems}"


def anomaly(
    episode_id: str,
    state: str,
    *,
    service: str = "checkout",
    region: str = "eu-west-1",
    name: str = "http.server.duration",
    statistic: str = "p99",
    started_at: int,
    window_start: int | None = None,
    kind: str = "deviation",
    labels: dict[str, str] | None = None,
    unit: str | None = "ms",
    severity: str = "critical",
    resolution: str = "1m",
    observed: float | None = 812.5,
    direction: str = "up",
) -> dict[str, Any]:
    """One schema-valid event; the window defaults to the episode's first (firing) window."""
    start = started_at if window_start is None else window_start
    series: dict[str, Any] = {
        "service": service,
        "region": region,
        "name": name,
        "type": "timer",
        "labels": labels or {},
    }
    if unit is not None:
        series["unit"] = unit
    label_text = ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))
    event = {
        "episode_id": episode_id,
        "state": state,
        "kind": kind,
        "series": series,
        "series_key": f"{service}|{region}|{name}|timer|{label_text}",
        "statistic": statistic,
        "resolution": resolution,
        "window_start": start,
        "window_end": start + MINUTE_MS,
        "started_at": started_at,
        "observed": None if kind == "absence" else observed,
        "expected": 120.0,
        "lower": 80.0,
        "upper": 160.0,
        "score": 3.25,
        "direction": direction,
        "severity": severity,
        "detector": {"name": "robust", "version": "1.0.0"},
    }
    assert_valid(event)
    return event


def record(event: dict[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) as the detector produces it: key "<episode_id>@<state>"."""
    return f"{event['episode_id']}@{event['state']}".encode(), orjson.dumps(event)


def resolved(firing: dict[str, Any], windows_later: int = 5) -> dict[str, Any]:
    """The resolved event of a firing one, `windows_later` windows after it fired."""
    event = dict(firing)
    event["state"] = "resolved"
    event["window_start"] = firing["window_start"] + windows_later * MINUTE_MS
    event["window_end"] = event["window_start"] + MINUTE_MS
    if event["kind"] == "deviation":
        event["observed"] = 118.0
    assert_valid(event)
    return event
