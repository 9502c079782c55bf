"""Onsets (novelty.py): a value beyond the track's long-run envelope fires on its own window,
once; the long past survives a restart from the checkpoint."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from pipeline.core.checkpoint import Checkpoint
from pipeline.core.detect.detector import DetectConfig, PartitionDetector
from pipeline.core.detect.noise import sample_spread
from pipeline.core.detect.novelty import Novelty, NoveltyConfig
from pipeline.core.rollup import Rollup
from pipeline.core.rollup_wire import WireRollup, decode_rollup
from tests.support.synthetic_rollups import MINUTE, START, rollup_body, stream

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
        novelty.learn(np.array([v]), np.array([0.5]), np.array([np.nan]))
    spike, noise, z = np.array([200.0]), np.zeros(1), np.array([3.0])
    assert novelty.onset(9, spike, noise, z)[0][0] == 0.0  # still warming up
    for v in calm[9:]:
        novelty.learn(np.array([v]), np.array([0.5 + rng.normal(0, 0.2)]), np.array([np.nan]))
    score, up = novelty.onset(30, spike, noise, z)
    assert score[0] >= 1.0 and up[0]
    # The same value within its sampling noise is no news: the margin clears the noise first.
    assert novelty.onset(30, spike, np.array([40.0]), z)[0][0] < score[0]
    novelty.fired([0], 30)
    assert novelty.onset(33, spike, noise, z)[0][0] == 0.0  # quiet after firing
    assert novelty.onset(36, spike, noise, z)[0][0] >= 1.0


def test_a_young_envelope_fires_only_on_a_large_novelty() -> None:
    # Likelihood from 300 windows, the envelope from 100; until 300 its margin is 0.2 of the
    # range × (300 / windows seen)²: 0.8 of the range at 150 windows, 0.2 from 300 on.
    novelty = Novelty(NoveltyConfig(warmup=300, envelope_warmup=100, quiet_windows=0))
    novelty.grow(1)
    rng = np.random.default_rng(7)
    noise = np.zeros(1)

    def learn(count: int) -> None:
        for v in 100.0 + rng.uniform(-5.0, 5.0, count):  # range ~10, |z| ~0.5
            novelty.learn(np.array([v]), np.array([0.5 + rng.normal(0, 0.2)]), np.array([np.nan]))

    def onset(value: float, z: float = 0.5) -> float:
        return float(novelty.onset(0, np.array([value]), noise, np.array([z]))[0][0])

    learn(99)
    assert onset(1_000.0) == 0.0  # 99 windows: too young for any onset
    learn(51)  # 150 windows
    high = float(novelty.high[0])
    span = high - float(novelty.low[0])
    assert onset(high + 0.3 * span) < 1.0  # a record a mature envelope would call new
    assert onset(high + 1.0 * span) >= 1.0  # far beyond: news even to a young envelope
    assert onset(100.0, z=10.0) == 0.0  # the likelihood still warms up (no moments yet)
    learn(150)  # 300 windows: the margin is 0.2 of the range
    high = float(novelty.high[0])
    span = high - float(novelty.low[0])
    assert onset(high + 0.3 * span) >= 1.0
    assert onset(100.0, z=10.0) >= 1.0  # |z| 10 where the track's own is 0.5


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


def sparse_records(series: int, minutes: int, seed: int) -> list[tuple[int, WireRollup]]:
    """Timer rollups of 1–3 lognormal samples a minute, with the digest such a window has (one
    centroid a sample: it cannot show the spread a window of more samples would)."""
    rng = np.random.default_rng(seed)
    records: list[tuple[int, WireRollup]] = []
    for m in range(minutes):
        for s in range(series):
            samples = rng.lognormal(np.log(40.0), 0.6, int(rng.integers(1, 4)))
            body = rollup_body(f"sparse-{s}", m, 0.0, 0.0)
            body.update(
                count=len(samples), sum=float(samples.sum()), min=float(samples.min()),
                max=float(samples.max()), mean=float(samples.mean()), rate=len(samples) / 60,
                percentiles={"p99": float(np.quantile(samples, 0.99))},
                digest={"compression": 200, "n": len(samples),
                        "centroids": [{"m": float(v), "c": 1} for v in samples]},
            )  # fmt: skip
            records.append((len(records), decode_rollup(orjson.dumps(body), MINUTE)))
    return records


def test_a_sparse_windows_record_must_clear_one_samples_spread() -> None:
    # Windows of 1–3 samples: a single sample is a window's p99 and mean, and its digest shows no
    # noise of its own, so every new sample maximum is a record. The track's learnt one-sample
    # spread gives such a window its sampling noise back: one sample half as high again as the
    # record is within it (the deviation models still judge it against the last hour).
    detector = PartitionDetector("r", 0, DetectConfig(statistics=("p99",)))
    records = sparse_records(1, 400, seed=5)
    assert run(records, detector) == []
    record = detector.novelty.high[detector.tracks[(records[0][1].series_key, "p99")]]
    body = rollup_body("sparse-0", 400, 0.0, 0.0)
    value = 1.5 * float(record)
    body.update(
        count=1, sum=value, min=value, max=value, mean=value, rate=1 / 60,
        percentiles={"p99": value},
        digest={"compression": 200, "n": 1, "centroids": [{"m": value, "c": 1}]},
    )  # fmt: skip
    window = decode_rollup(orjson.dumps(body), MINUTE)
    after = sparse_records(1, 403, seed=5)[401:]  # the next two minutes close the window
    events = run([(400, window), *[(401 + i, r) for i, (_, r) in enumerate(after)]], detector)
    assert [e.body for e in events if e.body["detector"]["name"] == "onset"] == []


def test_one_samples_spread_is_learnt_from_windows_that_show_it() -> None:
    two = rollup_body("a", 0, 0.0, 0.0)
    centroids = [{"m": 10.0, "c": 1}, {"m": 30.0, "c": 1}]
    two.update(
        count=2, min=10.0, max=30.0, digest={"compression": 200, "n": 2, "centroids": centroids}
    )
    window = decode_rollup(orjson.dumps(two), MINUTE)
    spread = np.std(np.log1p([10.0, 30.0]), ddof=1)
    assert sample_spread("p99", window) == pytest.approx(spread)
    assert sample_spread("mean", window) == pytest.approx(spread)
    assert np.isnan(sample_spread("rate", window))  # Poisson: its noise is not the samples'
    one = decode_rollup(orjson.dumps(rollup_body("a", 0, 30.0, 1 / 60)), MINUTE)
    assert np.isnan(sample_spread("p99", one))  # one sample shows no spread
    novelty = Novelty(NoveltyConfig())
    novelty.grow(1)
    assert novelty.noise_floor(0, 1) == 0.0  # nothing learnt yet
    novelty.learn(np.array([30.0]), np.array([0.5]), np.array([spread]))
    assert novelty.noise_floor(0, 1) == pytest.approx(spread)
    assert novelty.noise_floor(0, 4) == pytest.approx(spread / 2)
