"""Onsets (novelty.py): a value beyond the track's long-run envelope fires on its own window,
once; the long past survives a restart from the checkpoint."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from pipeline.core.checkpoint import Checkpoint
from pipeline.core.detect.detector import DetectConfig, PartitionDetector
from pipeline.core.detect.novelty import Novelty, NoveltyConfig
from pipeline.core.rollup import Rollup
from pipeline.core.rollup_wire import WireRollup
from tests.support.synthetic_rollups import MINUTE, START, stream

JUMP = range(600, 640)  # p99 of service b ×3 for 40 minutes, after 10 h of calm


def jump(s: str, m: int, v: float) -> float:
    return v * 3 if s == "b" and m in JUMP else v


def run(records: list[tuple[int, WireRollup]], detector: PartitionDetector) -> list[Rollup]:
    events: list[Rollup] = []
    for i in range(0, len(records), 50):
        part = records[i : i + 50]
        events += detector.process(part, part[-1][0] + 1).events
    return events


def test_a_new_extreme_fires_an_onset_on_its_own_window_and_only_once() -> None:
    events = run(stream(700, p99=jump), PartitionDetector("r", 0, DetectConfig()))
    firing = [e.body for e in events if e.body["state"] == "firing"]
    # One episode per statistic that moved (the synthetic mean follows the p99), all of b.
    assert sorted(b["statistic"] for b in firing) == ["mean", "p99"], firing
    for body in firing:
        assert body["series"]["service"] == "b" and body["direction"] == "up"
        assert body["detector"]["name"] == "onset"
        assert body["window_start"] == START + JUMP.start * MINUTE  # no k-of-n delay
    # Each stays open while the jump lasts (the frozen baseline), then recovers.
    resolved = [e.body for e in events if e.body["state"] == "resolved"]
    assert len(resolved) == 2
    for body in resolved:
        assert body["window_start"] >= START + JUMP.stop * MINUTE
        assert body["ended_by"] == "recovered"


def test_onsets_wait_for_the_long_past_and_then_stay_quiet_after_firing() -> None:
    config = NoveltyConfig(warmup=10, quiet_windows=5)
    novelty = Novelty(config)
    novelty.grow(1)
    rng = np.random.default_rng(3)
    calm = 100.0 + rng.normal(0, 1, 30)
    for v in calm[:9]:
        novelty.learn(np.array([v]), np.array([0.5]))
    spike, noise, z = np.array([200.0]), np.zeros(1), np.array([3.0])
    assert novelty.onset(9, spike, noise, z)[0][0] == 0.0  # still warming up
    for v in calm[9:]:
        novelty.learn(np.array([v]), np.array([0.5 + rng.normal(0, 0.2)]))
    score, up = novelty.onset(30, spike, noise, z)
    assert score[0] >= 1.0 and up[0]
    # The same value within its sampling noise is no news: the margin clears the noise first.
    assert novelty.onset(30, spike, np.array([40.0]), z)[0][0] < score[0]
    novelty.fired([0], 30)
    assert novelty.onset(33, spike, noise, z)[0][0] == 0.0  # quiet after firing
    assert novelty.onset(36, spike, noise, z)[0][0] >= 1.0


@pytest.mark.parametrize("cut", [500, 610])
def test_the_long_past_survives_a_restart(cut: int) -> None:
    records = stream(700, p99=jump)
    whole = {e.key: e.encode() for e in run(records, PartitionDetector("r", 0, DetectConfig()))}
    first = PartitionDetector("r", 0, DetectConfig())
    crash_at = next(i for i, r in records if r.window_start >= START + cut * MINUTE)
    before = run(records[:crash_at], first)
    saved = Checkpoint.decode(first.checkpoint().encode())
    second = PartitionDetector("r", 0, DetectConfig())
    second.restore(saved)
    after = run(records[saved.offset :], second)
    assert {e.key: e.encode() for e in before + after} == whole
    names = {orjson.loads(v)["detector"]["name"] for v in whole.values()}
    assert "onset" in names


BEYOND = range(400, 450)  # service b at a level it never had, though ordinary for its hour


def flip_then_beyond(s: str, m: int, v: float) -> float:
    if s != "b":
        return v
    if m in BEYOND:
        return 300.0
    return 150.0 if m % 2 else 250.0  # two modes: the hour's band is wide


def test_an_onset_episode_stays_open_while_the_value_is_beyond_the_long_past() -> None:
    records = stream(520, services=("a", "b"), p99=flip_then_beyond)
    events = run(records, PartitionDetector("r", 0, DetectConfig()))
    bodies = [e.body for e in events if e.body["series"]["service"] == "b"]
    p99 = [b for b in bodies if b["statistic"] == "p99"]
    # 300 is well inside the band of an hour flipping between 150 and 250 (the deviation
    # models alone called it normal three windows later), but beyond anything seen before.
    assert [b["state"] for b in p99] == ["firing", "resolved"], p99
    firing, resolved = p99
    assert firing["detector"]["name"] == "onset"
    assert firing["window_start"] == START + BEYOND.start * MINUTE
    assert resolved["window_start"] >= START + BEYOND.stop * MINUTE
    assert resolved["ended_by"] == "recovered"
