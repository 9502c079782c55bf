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
from pipeline.core.rollup_wire import WireRollup
from tests.support.synthetic_rollups import DAY, MINUTE, START, stream

SCHEMA = json.loads((Path(__file__).parents[3] / "schemas" / "anomaly.schema.json").read_text())


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
    records = stream(300, p99=lambda s, m, v: v * 5 if s == "b" and m in spike else v)
    # The synthetic mean moves with p99: watch p99 and rate only, for one episode.
    events = run(records, DetectConfig(statistics=("p99", "rate")))
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


def test_a_series_silent_for_a_day_mid_deviation_ends_its_episode_and_checkpoints() -> None:
    """b's p99 deviates, then b goes silent for more than a day while a keeps the clock moving:
    the series is forgotten, its open episode ends as `expired` and a checkpoint still works
    (it used to raise KeyError for the forgotten series' open deviation)."""
    config = DetectConfig(statistics=("p99", "rate"), forget_windows=120)
    records = stream(
        400,
        services=("a", "b"),
        p99=lambda s, m, v: v * 5 if s == "b" and m >= 100 else v,
        silent=lambda s, m: s == "b" and m >= 110,
    )
    detector = PartitionDetector("rollups.1m", 0, config)
    events = detector.process(records, len(records)).events
    bodies = [e.body for e in events if e.body["kind"] == "deviation"]
    assert [(b["state"], b.get("ended_by")) for b in bodies] == [
        ("firing", None), ("resolved", "expired"),
    ]  # fmt: skip
    for body in bodies:
        jsonschema.validate(body, SCHEMA)
    assert not detector.active and detector.series.keys() == {records[0][1].series_key}
    saved = Checkpoint.decode(detector.checkpoint().encode())
    restored = PartitionDetector("rollups.1m", 0, config)
    restored.restore(saved)
    more = stream(460, services=("a", "b"))[len(records) :]
    assert restored.process(more, more[-1][0] + 1).events == []  # b back, a quiet: nothing
