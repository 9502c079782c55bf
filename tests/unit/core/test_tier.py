"""Tiers against the raw data: real base rollups merged into coarser windows (no Kafka)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.aggregator import PartitionAggregator, WindowConfig
from pipeline.core.checkpoint import Checkpoint
from pipeline.core.decode import Decoder
from pipeline.core.digest import DigestConfig
from pipeline.core.merge import merge_digests, weighted_percentiles
from pipeline.core.reasons import Reason
from pipeline.core.rollup import Rollup
from pipeline.core.rollup_wire import RollupReject, WireRollup, decode_rollup
from pipeline.core.series import SeriesTable
from pipeline.core.tier import TierAggregator, TierConfig
from pipeline.errors import CheckpointError

from .helpers import BASE_MS, by_key, messages

RES = 10_000
MINUTE = 60_000
QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999)


def raw_samples(rng: np.random.Generator, n: int, span_ms: int = 300_000) -> list[dict[str, Any]]:
    """Timers with values on a 1/8 ms grid (sums of them are exact in binary floating point),
    gauges, delta counters; in time order."""
    ts = BASE_MS + np.sort(rng.integers(0, span_ms, n))
    kind = rng.integers(0, 3, n)
    service = rng.integers(0, 3, n)
    value = np.round(rng.lognormal(3.0, 1.0, n) * 8) / 8
    out = []
    for t, k, s, v in zip(
        ts.tolist(), kind.tolist(), service.tolist(), value.tolist(), strict=True
    ):
        kind_name = ("timer", "gauge", "counter")[k]
        out.append(
            {
                "service": f"svc{s}",
                "region": "eu",
                "name": f"m_{kind_name}",
                "type": kind_name,
                "value": v,
                "ts": t,
                **({"temporality": "delta"} if kind_name == "counter" else {}),
            }
        )
    return out


def base_rollups(samples: list[dict[str, Any]], raw_limit: int = 1024) -> list[Rollup]:
    table = SeriesTable()
    decoder = Decoder(table)
    digest = DigestConfig(QUANTILES, 200, raw_limit)
    agg = PartitionAggregator("raw", 0, table, WindowConfig(RES, 0), digest)
    msgs = messages(samples)
    out: list[Rollup] = []
    for i in range(0, len(msgs), 500):
        part = msgs[i : i + 500]
        out += agg.process(decoder.decode(part).columns, part[-1].offset + 1).rollups
    assert agg.plan_idle_advance()
    return out + agg.apply_idle_advance()


def as_children(rollups: list[Rollup], resolution_ms: int = RES) -> list[tuple[int, WireRollup]]:
    return [(i, decode_rollup(r.encode(), resolution_ms)) for i, r in enumerate(rollups)]


def run_tier(
    children: list[tuple[int, WireRollup]],
    config: TierConfig,
    batch: int = 37,
    tier: TierAggregator | None = None,
) -> tuple[list[Rollup], TierAggregator]:
    tier = tier or TierAggregator("rollups", 0, config, DigestConfig(QUANTILES))
    out: list[Rollup] = []
    for i in range(0, len(children), batch):
        part = children[i : i + batch]
        out += tier.process(part, part[-1][0] + 1).rollups
    if tier.plan_idle_advance():
        out += tier.apply_idle_advance()
    return out, tier


def raw_minutes(samples: list[dict[str, Any]], size: int) -> dict[tuple[str, int], list[float]]:
    groups: dict[tuple[str, int], list[float]] = {}
    for s in samples:
        groups.setdefault((s["name"] + "/" + s["service"], s["ts"] - s["ts"] % size), []).append(
            s["value"]
        )
    return groups


@pytest.fixture(scope="module")
def samples() -> list[dict[str, Any]]:
    return raw_samples(np.random.default_rng(7), 12_000)


def test_minute_rollups_equal_the_raw_minute(samples: list[dict[str, Any]]) -> None:
    rollups, _ = run_tier(as_children(base_rollups(samples)), TierConfig(RES, MINUTE, RES))
    expected = raw_minutes(samples, MINUTE)
    got = by_key(rollups)
    assert len(got) == len(expected)
    for body in got.values():
        series = body["series"]
        values = np.array(
            expected[(series["name"] + "/" + series["service"], body["window_start"])]
        )
        assert body["resolution"] == "1m" and body["window_end"] - body["window_start"] == MINUTE
        assert body["count"] == len(values)
        assert body["sum"] == values.sum()  # exact: the values are on a binary grid
        assert body["min"] == values.min() and body["max"] == values.max()
        if series["type"] == "counter":
            assert body["rate"] == pytest.approx(values.sum() / 60.0, rel=1e-15)
            assert body["digest"] is None and body["percentiles"] == {}
            continue
        assert body["rate"] == pytest.approx(len(values) / 60.0, rel=1e-15)
        # Every 10 s child is exact here, so the merged percentiles are exact too.
        np.testing.assert_allclose(
            list(body["percentiles"].values()), np.quantile(values, QUANTILES), rtol=1e-12
        )
        assert body["digest"]["n"] == len(values)


def test_percentiles_from_compressed_children_stay_within_the_digest_tolerance() -> None:
    rng = np.random.default_rng(3)
    n = 60_000
    values = rng.lognormal(3, 1, n).tolist()
    times = np.sort(rng.integers(0, MINUTE, n)).tolist()
    samples = [
        {
            "service": "a",
            "region": "eu",
            "name": "lat",
            "type": "timer",
            "value": v,
            "ts": BASE_MS + t,
        }
        for v, t in zip(values, times, strict=True)
    ]
    children = base_rollups(samples, raw_limit=256)  # ~10k values per child: compressed digests
    assert not any(c.body["digest"]["exact"] for c in children)
    (minute,), _ = run_tier(as_children(children), TierConfig(RES, MINUTE, RES))
    values = np.array([s["value"] for s in samples])
    got = np.array(list(minute.body["percentiles"].values()))
    want = np.quantile(values, QUANTILES)
    errors = np.abs(got - want) / want
    assert errors[:4].max() < 0.01, errors  # p50..p99 within 1 %
    assert minute.body["digest"]["exact"] is False
    assert len(minute.body["digest"]["centroids"]) <= 200


def test_a_child_delivered_twice_is_merged_once(samples: list[dict[str, Any]]) -> None:
    children = as_children(base_rollups(samples))
    once, _ = run_tier(children, TierConfig(RES, MINUTE, RES))
    # Re-deliver a stretch (a replay of the stage below) while its minutes are still open.
    doubled = children[:200] + children[150:]
    doubled = [(i, child) for i, (_, child) in enumerate(doubled)]
    twice, _ = run_tier(doubled, TierConfig(RES, MINUTE, RES))
    assert by_key(twice) == by_key(once)
    assert len(twice) == len(once)


def test_a_reemission_after_close_is_counted_not_late(samples: list[dict[str, Any]]) -> None:
    children = as_children(base_rollups(samples))
    tier = TierAggregator("rollups", 0, TierConfig(RES, MINUTE, RES), DigestConfig(QUANTILES))
    first = tier.process(children, len(children))
    again = tier.process([(len(children) + i, c) for i, (_, c) in enumerate(children[-30:])],
                         len(children) + 30)  # fmt: skip
    assert first.merged == len(children)
    assert again.late == [] and again.merged + again.duplicates + again.reemitted == 30


def test_late_child_is_reported() -> None:
    samples = raw_samples(np.random.default_rng(11), 3_000, span_ms=240_000)
    children = as_children(base_rollups(samples))
    late_child = next(c for _, c in children if c.window_start < BASE_MS + MINUTE)
    # A child of the first minute that nobody merged, arriving after that minute closed.
    others = [c for _, c in children if c is not late_child]
    stripped = list(enumerate([*others, late_child]))
    tier = TierAggregator("rollups", 0, TierConfig(RES, MINUTE, RES), DigestConfig(QUANTILES))
    step = tier.process(stripped, len(stripped))
    assert [c for _, c in step.late] == [late_child]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 7, 100]))
def test_tiers_compose_and_batching_does_not_matter(seed: int, batch: int) -> None:
    """10 s → 1 m → 5 m equals 10 s → 5 m (merging is associative), whatever the batches."""
    samples = raw_samples(np.random.default_rng(seed), 1_500, span_ms=600_000)
    children = as_children(base_rollups(samples))
    five = 5 * MINUTE
    direct, _ = run_tier(children, TierConfig(RES, five, RES), batch=batch)
    minutes, _ = run_tier(children, TierConfig(RES, MINUTE, RES), batch=batch)
    via, _ = run_tier(as_children(minutes, MINUTE), TierConfig(MINUTE, five, MINUTE), batch=3)
    a, b = by_key(direct), by_key(via)
    assert a.keys() == b.keys()
    for key, body in a.items():
        other = b[key]
        for field in ("count", "sum", "min", "max", "rate", "mean"):
            assert body[field] == other[field], field
        assert body["percentiles"].keys() == other["percentiles"].keys()
        for name, value in body["percentiles"].items():
            assert other["percentiles"][name] == pytest.approx(value, rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.lists(st.integers(-50, 50), min_size=1, max_size=40), min_size=1, max_size=8),
    st.randoms(use_true_random=False),
)
def test_merging_exact_digests_is_order_free_and_exact(parts: list[list[int]], random: Any) -> None:
    config = DigestConfig(QUANTILES, 200)

    def merged(order: list[list[int]]) -> tuple[list[float], dict[str, Any]]:
        means, weights = [], []
        for part in order:
            distinct, counts = np.unique(np.array(part, float), return_counts=True)
            means += distinct.tolist()
            weights += counts.tolist()
        return merge_digests(np.array(means), np.array(weights, float), True, config)

    shuffled = list(parts)
    random.shuffle(shuffled)
    assert merged(parts) == merged(shuffled)
    values = np.concatenate([np.array(p, float) for p in parts])
    # numpy interpolates with a symmetric lerp: equal up to rounding (values are integers).
    np.testing.assert_allclose(
        merged(parts)[0], np.quantile(values, QUANTILES), rtol=1e-12, atol=1e-12
    )


def test_weighted_percentiles_match_numpy_on_the_expanded_values() -> None:
    values = np.array([1.0, 2.0, 5.0, 9.0])
    counts = np.array([3, 1, 4, 2])
    expanded = np.repeat(values, counts)
    np.testing.assert_allclose(
        weighted_percentiles(values, counts, QUANTILES), np.quantile(expanded, QUANTILES)
    )


def test_checkpoint_replay_emits_the_same_rollups(samples: list[dict[str, Any]]) -> None:
    children = as_children(base_rollups(samples))
    config = TierConfig(RES, MINUTE, RES)
    whole, _ = run_tier(children, config)
    tier = TierAggregator("rollups", 0, config, DigestConfig(QUANTILES))
    cut = len(children) // 2 + 13
    first = tier.process(children[:cut], cut).rollups
    saved = Checkpoint.decode(tier.checkpoint().encode())
    # Crash here: a new owner restores and replays from the checkpoint's offset.
    fresh = TierAggregator("rollups", 0, config, DigestConfig(QUANTILES))
    fresh.restore(saved)
    assert saved.offset <= cut
    rest, _ = run_tier(children[saved.offset :], config, tier=fresh)
    assert by_key(first + rest) == by_key(whole)


def test_restore_refuses_other_settings(samples: list[dict[str, Any]]) -> None:
    tier = TierAggregator("rollups", 0, TierConfig(RES, MINUTE, RES), DigestConfig(QUANTILES))
    saved = tier.checkpoint()
    other = TierAggregator("rollups", 0, TierConfig(RES, 5 * MINUTE, RES), DigestConfig(QUANTILES))
    with pytest.raises(CheckpointError):
        other.restore(saved)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"resolution_ms": 60_000}, Reason.WRONG_RESOLUTION),
        ({"window_start": BASE_MS + 5}, Reason.INVALID_ROLLUP),
        ({"count": 0}, Reason.INVALID_ROLLUP),
        ({"min": 5.0, "max": 1.0}, Reason.INVALID_ROLLUP),
        ({"digest": None}, Reason.INVALID_ROLLUP),
        ({"series": {"service": "a"}}, Reason.INVALID_ROLLUP),
    ],
)
def test_bad_rollups_are_refused_with_a_reason(
    samples: list[dict[str, Any]], change: dict[str, Any], reason: Reason
) -> None:
    timer = next(r for r in base_rollups(samples[:500]) if r.body["series"]["type"] == "timer")
    body = {**timer.body, **change}
    if "window_start" in change:
        body["window_end"] = body["window_start"] + RES
    with pytest.raises(RollupReject) as caught:
        decode_rollup(orjson.dumps(body), RES)
    assert caught.value.reason == reason
    with pytest.raises(RollupReject) as caught:
        decode_rollup(b"{not json", RES)
    assert caught.value.reason == Reason.MALFORMED_JSON
