"""The detector on synthetic 1 m rollups: incidents found, quiet series quiet, replay-identical."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import orjson
import pytest

from pipeline.core.checkpoint import Checkpoint
from pipeline.core.detect.detector import DetectConfig, PartitionDetector
from pipeline.core.detect.models import ModelConfig
from pipeline.core.rollup import Rollup
from pipeline.core.rollup_wire import WireRollup, decode_rollup

MINUTE = 60_000
DAY = 1_440
START = 1_767_225_600_000  # 2026-01-01T00:00Z
SCHEMA = json.loads((Path(__file__).parents[3] / "schemas" / "anomaly.schema.json").read_text())


def rollup(service: str, index: int, p99: float, rate: float) -> WireRollup:
    start = START + index * MINUTE
    count = max(1, round(rate * 60))
    body = {
        "series": {"service": service, "region": "eu", "name": "http.server.duration",
                   "type": "timer", "unit": "ms", "labels": {}},
        "series_key": f"{service}|eu|http.server.duration|timer|ms|{{}}",
        "resolution": "1m", "resolution_ms": MINUTE, "window_start": start,
        "window_end": start + MINUTE, "count": count, "sum": p99 * count / 3,
        "min": 1.0, "max": p99 * 1.2, "mean": p99 / 3, "rate": count / 60,
        "percentiles": {"p50": p99 / 4, "p99": p99},
        "digest": {"compression": 200, "n": count, "centroids": [{"m": p99 / 3, "c": count}]},
    }  # fmt: skip
    return decode_rollup(orjson.dumps(body), MINUTE)


def stream(
    minutes: int,
    seed: int = 1,
    services: tuple[str, ...] = ("a", "b", "c"),
    p99: Any = None,
    rate: Any = None,
    silent: Any = None,
) -> list[tuple[int, WireRollup]]:
    """Rollups in time order; p99/rate(service, minute) override the lognormal noise, and
    silent(service, minute) drops a window."""
    rng = np.random.default_rng(seed)
    out: list[WireRollup] = []
    for m in range(minutes):
        for s in services:
            base_p99 = 200.0 * float(np.exp(rng.normal(0, 0.08)))
            base_rate = 50.0 * float(np.exp(rng.normal(0, 0.05)))
            if silent is not None and silent(s, m):
                continue
            value = p99(s, m, base_p99) if p99 else base_p99
            r = rate(s, m, base_rate) if rate else base_rate
            out.append(rollup(s, m, value, r))
    return list(enumerate(out))


def run(
    records: list[tuple[int, WireRollup]], config: DetectConfig | None = None, batch: int = 50
) -> list[Rollup]:
    detector = PartitionDetector("rollups.1m", 0, config or DetectConfig())
    events: list[Rollup] = []
    for i in range(0, len(records), batch):
        part = records[i : i + batch]
        events += detector.process(part, part[-1][0] + 1).events
    return events


def episodes(events: list[Rollup]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        out.setdefault(e.body["episode_id"], []).append(e.body)
    return out


def test_a_quiet_series_stays_quiet_for_two_days() -> None:
    events = run(stream(2 * DAY, services=("a", "b")))
    # 2 series × 2 statistics × 2 days: the target is at most one false alarm per series-day.
    assert len([e for e in events if e.body["state"] == "firing"]) <= 1


def test_a_latency_spike_fires_once_quickly_and_resolves() -> None:
    spike = range(200, 215)
    events = run(stream(300, p99=lambda s, m, v: v * 5 if s == "b" and m in spike else v))
    found = episodes(events)
    assert len(found) == 1
    (bodies,) = found.values()
    firing, resolved = bodies
    assert firing["state"] == "firing" and resolved["state"] == "resolved"
    assert firing["statistic"] == "p99" and firing["direction"] == "up"
    assert firing["series"]["service"] == "b" and firing["kind"] == "deviation"
    delay = (firing["window_start"] - (START + spike[0] * MINUTE)) // MINUTE
    assert 0 <= delay <= 2  # two of three windows
    assert firing["started_at"] == START + spike[0] * MINUTE
    assert firing["observed"] > firing["upper"] > firing["expected"] > firing["lower"]
    assert firing["score"] >= 1.0
    assert resolved["window_start"] > START + spike[-1] * MINUTE
    for body in bodies:
        jsonschema.validate(body, SCHEMA)


def test_a_rate_drop_fires_downwards() -> None:
    events = run(stream(300, rate=lambda s, m, v: v / 4 if s == "a" and m >= 200 else v))
    firing = [e.body for e in events if e.body["state"] == "firing"]
    assert [(f["series"]["service"], f["statistic"], f["direction"]) for f in firing] == [
        ("a", "rate", "down")
    ]


def test_a_series_that_stops_reporting_gets_an_absence_event() -> None:
    events = run(stream(300, silent=lambda s, m: s == "c" and 150 <= m < 250))
    bodies = [e.body for e in events if e.body["kind"] == "absence"]
    assert [b["state"] for b in bodies] == ["firing", "resolved"]
    assert bodies[0]["started_at"] == START + 150 * MINUTE
    assert bodies[0]["observed"] is None and bodies[0]["series"]["service"] == "c"
    assert bodies[1]["window_start"] == START + 250 * MINUTE
    for body in bodies:
        jsonschema.validate(body, SCHEMA)


def test_no_alarm_during_warm_up() -> None:
    events = run(stream(40, p99=lambda s, m, v: v * 10 if m in (5, 6, 7) else v))
    assert events == []


@pytest.mark.parametrize("batch", [1, 7, 500])
def test_batching_does_not_change_the_events(batch: int) -> None:
    records = stream(400, p99=lambda s, m, v: v * 4 if s == "a" and 300 <= m < 310 else v)
    assert [e.encode() for e in run(records, batch=batch)] == [
        e.encode() for e in run(records, batch=50)
    ]


@pytest.mark.parametrize("cut", [104, 117, 140, 405, 430])
def test_a_restart_from_the_checkpoint_emits_the_same_episodes(cut: int) -> None:
    """Crash at `cut` records, restore from the last checkpoint, replay: the events after the
    crash, keyed, equal those of an uninterrupted run, ids included — also mid-incident."""
    records = stream(
        450,
        p99=lambda s, m, v: v * 5 if s == "b" and 100 <= m < 130 else v,
        silent=lambda s, m: s == "c" and m >= 400,
    )
    whole = {e.key: e.encode() for e in run(records)}
    first = PartitionDetector("rollups.1m", 0, DetectConfig())
    before: list[Rollup] = []
    crash_at = next(i for i, r in records if r.window_start >= START + cut * MINUTE)
    for i in range(0, crash_at, 50):
        part = records[i : min(i + 50, crash_at)]
        before += first.process(part, part[-1][0] + 1).events
    saved = Checkpoint.decode(first.checkpoint().encode())
    second = PartitionDetector("rollups.1m", 0, DetectConfig())
    second.restore(saved)
    after = []
    rest = records[saved.offset :]
    for i in range(0, len(rest), 50):
        part = rest[i : i + 50]
        after += second.process(part, part[-1][0] + 1).events
    replayed = {e.key: e.encode() for e in before + after}
    assert replayed == whole
    kinds = {orjson.loads(v)["kind"] for v in whole.values()}
    assert kinds == {"deviation", "absence"}  # the run had both kinds of episode to restore


def test_a_daily_cycle_is_learnt_by_the_seasonal_model() -> None:
    def cycle(s: str, m: int, v: float) -> float:
        """Business hours: 4x between 08:00 and 20:00 UTC, with 20-minute ramps."""
        minute = m % DAY
        up = np.clip((minute - 480) / 20, 0, 1) - np.clip((minute - 1200) / 20, 0, 1)
        return v * float(np.exp(np.log(4.0) * up))

    records = stream(5 * DAY, services=("a",), p99=cycle, rate=cycle)
    after_learning = [r for r in records if r[1].window_start >= START + 3 * DAY * MINUTE]

    def false_alarms(model: str) -> int:
        config = DetectConfig(model=replace(ModelConfig(), model=model))
        events = run(records, config, batch=500)
        learnt_from = after_learning[0][1].window_start
        return sum(
            e.body["state"] == "firing" and e.body["window_start"] >= learnt_from for e in events
        )

    robust, auto = false_alarms("robust"), false_alarms("auto")
    assert robust >= 4  # each ramp looks like a level shift to a one-hour baseline
    assert auto <= 1  # two days, two statistics
