"""Latency drops: `mean` and percentiles fire down only as a persistent shift (the CUSUM of
busy windows, config.DIRECTION_MODES "up+drift"), and an incident on one statistic of a series
is not learnt by its others — so a drop fires and stays one episode, its return does not fire,
and the mean's usual dips (a window without its cache misses, a window of two samples) do not
fire at all. Windows are built from raw lognormal samples with their real digest."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest

from pipeline.core.checkpoint import Checkpoint
from pipeline.core.detect.detector import DetectConfig, PartitionDetector
from pipeline.core.digest import serialize_values
from pipeline.core.rollup_wire import WireRollup, decode_rollup
from tests.support.synthetic_rollups import MINUTE, START, rollup_body

MEAN_BOTH = DetectConfig(directions={"mean": "both"})  # the mean's dips may fire down


def timer_window(service: str, index: int, samples: np.ndarray) -> WireRollup:
    """One 1 m timer rollup of these latencies (ms), with its real digest."""
    ordered = np.sort(samples)
    body = rollup_body(service, index, 1.0, len(ordered) / 60)
    body.update(
        count=len(ordered), sum=float(ordered.sum()), min=float(ordered[0]),
        max=float(ordered[-1]), mean=float(ordered.mean()), rate=len(ordered) / 60,
        percentiles={f"p{q}": float(np.quantile(ordered, q / 100)) for q in (50, 99)},
        digest=serialize_values(ordered, 200),
    )  # fmt: skip
    return decode_rollup(orjson.dumps(body), MINUTE)


def series(
    minutes: int,
    seed: int,
    per_second: tuple[float, float],
    median_ms: Callable[[int], float],
    sigma: float = 0.45,
    miss_share: float = 0.0,
) -> list[WireRollup]:
    """A timer with its own rate (drawn from `per_second`), lognormal latencies around
    median_ms(minute), and a share of cache misses ten times slower."""
    rng = np.random.default_rng(seed)
    rate = float(rng.uniform(*per_second))
    out = []
    for m in range(minutes):
        n = int(rng.poisson(rate * 60))
        if n == 0:
            continue
        values = median_ms(m) * np.exp(rng.normal(0.0, sigma, n))
        values *= np.where(rng.random(n) < miss_share, 10.0, 1.0)
        out.append(timer_window(f"s{seed}", m, values))
    return out


def events(rollups: list[WireRollup], config: DetectConfig) -> list[dict[str, Any]]:
    detector = PartitionDetector("rollups.1m", 0, config)
    records = list(enumerate(sorted(rollups, key=lambda r: r.window_start)))
    out = []
    for i in range(0, len(records), 200):
        part = records[i : i + 200]
        out += [e.body for e in detector.process(part, part[-1][0] + 1).events]
    return out


def minute(body: dict[str, Any]) -> int:
    return (body["window_start"] - START) // MINUTE


def test_a_latency_drop_fires_down_stays_one_episode_and_its_return_does_not_fire() -> None:
    """Latency ×1/1.3 for 100 windows at 2 requests/s: the mean fires down by its CUSUM within
    a few windows, stays open while the drop lasts, resolves within a few windows of the
    return, and nothing else fires — before, the drop was learnt and its return fired up."""
    rollups = series(320, 3, (2.0, 2.0), lambda m: 40.0 / 1.3 if 150 <= m < 250 else 40.0)
    fired = events(rollups, DetectConfig())
    assert [(e["state"], e["statistic"], e["direction"]) for e in fired] == [
        ("firing", "mean", "down"), ("resolved", "mean", "down"),
    ]  # fmt: skip
    firing, resolved = fired
    assert firing["detector"]["name"] == "cusum"
    assert 150 <= minute(firing) <= 158
    assert resolved["ended_by"] == "recovered" and 250 <= minute(resolved) <= 262


def test_a_latency_halving_fires_once_and_the_return_does_not_fire() -> None:
    """×1/2 for 100 windows at 1 request/s (the drop's p99 is learnt by no track while the
    mean's episode is open, so p99 does not fire up on the return either)."""
    rollups = series(320, 4, (1.0, 1.0), lambda m: 60.0 / 2 if 150 <= m < 250 else 60.0)
    fired = events(rollups, DetectConfig())
    assert [(e["state"], e["direction"]) for e in fired] == [
        ("firing", "down"),
        ("resolved", "down"),
    ]
    assert fired[0]["detector"]["name"] == "cusum" and fired[0]["statistic"] == "mean"
    assert 150 <= minute(fired[0]) <= 158 and 250 <= minute(fired[1]) <= 262


def test_a_steady_cache_with_one_percent_misses_does_not_fire_down() -> None:
    """Misses ×10 for a constant 1 % of requests at 1–6 requests/s: a minute without its usual
    miss has a mean ~10 % low and a narrow digest, one with two misses a high one. These
    windows are busy enough for the CUSUM to count them: their dips must not add up to a
    drop, neither for the mean nor for p99, which flips between the modes."""
    rollups = [
        r
        for seed in range(4)
        for r in series(600, 10 + seed, (1.0, 6.0), lambda m: 4.0, 0.25, miss_share=0.01)
    ]
    assert min(r.count for r in rollups) >= 20
    down = [e for e in events(rollups, DetectConfig()) if e["direction"] == "down"]
    assert down == []


def test_a_sparse_series_does_not_fire_down() -> None:
    """One to three requests a minute: the mean of a window of two samples is far from its
    usual value either way; such windows do not count in the CUSUM. Fired down by every test
    (`mean: both`), one of these eight series has an onset down from such a window."""
    rollups = [
        r for seed in range(8) for r in series(600, 20 + seed, (1 / 60, 3 / 60), lambda m: 40.0)
    ]
    down = [e for e in events(rollups, DetectConfig()) if e.get("direction") == "down"]
    assert down == []
    both = events(rollups, MEAN_BOTH)
    assert any(e.get("direction") == "down" and e.get("statistic") == "mean" for e in both)


def test_directions_are_checked_and_the_mean_fires_drops_by_drift() -> None:
    config = DetectConfig()
    assert config.may_fire("mean") == (True, False, True)
    assert config.may_fire("p99") == config.may_fire("max") == (True, False, False)
    assert config.may_fire("rate") == (True, True, True)
    with pytest.raises(ValueError, match="up\\+drift"):
        DetectConfig(directions={"mean": "sideways"})


def test_a_restart_mid_drop_emits_the_same_episodes() -> None:
    """Crash mid-drop: the checkpoint carries the CUSUM sums and the baselines that the whole
    series skipped (p99 and rate too), so the restored detector neither loses the episode nor
    fires on the return."""
    rollups = series(320, 3, (2.0, 2.0), lambda m: 40.0 / 1.3 if 150 <= m < 250 else 40.0)
    records = list(enumerate(rollups))
    whole = events(rollups, DetectConfig())
    first = PartitionDetector("rollups.1m", 0, DetectConfig())
    before = []
    crash_at = next(i for i, r in records if r.window_start >= START + 200 * MINUTE)
    for i in range(0, crash_at, 50):
        part = records[i : min(i + 50, crash_at)]
        before += [e.body for e in first.process(part, part[-1][0] + 1).events]
    saved = Checkpoint.decode(first.checkpoint().encode())
    assert len(saved.state["dirty"]) == 3  # every statistic of the series skipped the drop
    second = PartitionDetector("rollups.1m", 0, DetectConfig())
    second.restore(saved)
    rest = records[saved.offset :]
    after = []
    for i in range(0, len(rest), 50):
        part = rest[i : i + 50]
        after += [e.body for e in second.process(part, part[-1][0] + 1).events]
    assert before + after == whole
    assert [(e["state"], e["direction"]) for e in whole] == [
        ("firing", "down"),
        ("resolved", "down"),
    ]
