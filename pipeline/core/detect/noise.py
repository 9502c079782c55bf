"""What one window says about itself: a statistic's value on the model scale, and how noisy it
is given how many samples the window had.

Model scales (deviations are measured there; the inverse gives the event's numbers):
- rate, count: the window's event count k (rate × window seconds, or count) under Anscombe's
  transform 2·sqrt(k + 3/8), where Poisson noise has a standard deviation of 1 whatever the
  rate. A 0.3/s series dropping to zero moves by ~7 of those, a 5 000/s one by ~1 100; the
  log scale used before was almost linear below 1/s and could not tell the first from noise.
- other non-negative statistics (percentiles, mean, max, sum): log1p, so deviations are
  relative, which suits heavy-tailed latencies.
- anything else (min, gauges that may be negative): the value itself.

Sampling noise (one standard deviation, model scale) of the window's own statistic:
- rate/count: 1 (Poisson, by the transform above).
- a percentile q over n samples: its rank is binomial, sd sqrt(q(1−q)/n); the window's digest
  turns the rank bounds q ± 2 sd (widened by half a sample, so that tiny windows are not
  trusted to one rank) into value bounds, and a quarter of their distance is the noise — the
  same as ±1 sd for a smooth distribution, wider where the density drops between two modes.
  Where a latency is bimodal (cache hits and misses) and q sits near the boundary, the bounds
  straddle both modes, so a flip between them is noise — which it is.
- mean: the digest's standard deviation / sqrt(n) (delta method onto log1p).
- without a digest (counters, min/max/sum): 0 — the history's spread is then all there is.

A window of one to three samples cannot show its own spread (one sample: a single centroid, no
noise at all), so its noise by the formulas above is too small. What it can show is one sample's
spread (`sample_spread`, the digest's variance on the model scale with n − 1): the track learns
that over its windows of two or more samples, and a window of n samples is then given at least
that spread / sqrt(n) (novelty.py). For the mean this is its sampling noise; for a quantile it is
less than its own (the mean is the least noisy estimate of a location), so the floor never
overstates a window's noise.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.core.rollup_wire import WireDigest, WireRollup

COUNT_STATISTICS = frozenset({"rate", "count"})
SAMPLED_STATISTICS = frozenset({"mean"})  # and the quantiles: their noise comes from the digest
LOG_STATISTICS = frozenset({"max", "mean", "sum"})
ANSCOMBE_SHIFT = 0.375
RANK_SIGMAS = 2.0  # rank bounds at ± this many binomial sigmas, the value distance / 2× this


def statistic_value(rollup: WireRollup, statistic: str) -> float:
    """The statistic in its own unit (NaN where the rollup does not have it)."""
    if statistic == "rate":
        return rollup.rate
    if statistic == "mean":
        return rollup.mean
    if statistic == "count":
        return float(rollup.count)
    if statistic in ("min", "max", "sum"):
        return float(getattr(rollup, statistic))
    return rollup.percentiles.get(statistic, math.nan)


def is_log_scaled(statistic: str) -> bool:
    return statistic in LOG_STATISTICS or _quantile_of(statistic) is not None


def to_model(statistic: str, value: float, window_s: float) -> float:
    if statistic in COUNT_STATISTICS:
        events = value * window_s if statistic == "rate" else value
        return 2.0 * math.sqrt(max(events, 0.0) + ANSCOMBE_SHIFT)
    if is_log_scaled(statistic):
        return math.log1p(max(value, 0.0))
    return value


def from_model(statistic: str, value: float, window_s: float) -> float:
    """Inverse of `to_model`; values below the scale's zero map to 0 for non-negative ones."""
    if not math.isfinite(value):
        return value
    if statistic in COUNT_STATISTICS:
        events = max((max(value, 0.0) / 2.0) ** 2 - ANSCOMBE_SHIFT, 0.0)
        return events / window_s if statistic == "rate" else events
    if is_log_scaled(statistic):
        return math.expm1(min(max(value, 0.0), 700.0))
    return value


def sampling_sd(statistic: str, rollup: WireRollup, value: float) -> float:
    """One standard deviation of the window's statistic from sampling alone (model scale)."""
    if statistic in COUNT_STATISTICS:
        return 1.0
    digest = rollup.digest
    if digest is None or rollup.count < 1:
        return 0.0
    if statistic == "mean":
        means, weights = _centroids(digest)
        variance = float(np.dot(weights, (means - value) ** 2) / weights.sum())
        return math.sqrt(variance / rollup.count) / (1.0 + max(value, 0.0))
    q = _quantile_of(statistic)
    if q is None:
        return 0.0
    n = rollup.count
    spread = RANK_SIGMAS * math.sqrt(q * (1.0 - q) / n) + 0.5 / n
    low, high = _quantiles(digest, (max(q - spread, 0.0), min(q + spread, 1.0)))
    return (math.log1p(max(high, 0.0)) - math.log1p(max(low, 0.0))) / (2.0 * RANK_SIGMAS)


def sample_spread(statistic: str, rollup: WireRollup) -> float:
    """One sample's standard deviation on the model scale, from the window's digest (NaN for a
    statistic whose noise is not the samples', or a window of fewer than two samples)."""
    digest = rollup.digest
    sampled = statistic in SAMPLED_STATISTICS or _quantile_of(statistic) is not None
    if not sampled or digest is None or rollup.count < 2 or len(digest.centroids) < 2:
        return math.nan
    means, weights = _centroids(digest)
    logs = np.log1p(np.maximum(means, 0.0))
    centre = float(np.dot(weights, logs) / weights.sum())
    variance = float(np.dot(weights, (logs - centre) ** 2) / weights.sum())
    return math.sqrt(variance * rollup.count / (rollup.count - 1))


def _quantile_of(statistic: str) -> float | None:
    """p99 → 0.99, p99.9 → 0.999, p50 → 0.5; None for anything else."""
    if len(statistic) < 2 or statistic[0] != "p":
        return None
    try:
        q = float(statistic[1:]) / 100.0
    except ValueError:
        return None
    return q if 0.0 < q < 1.0 else None


def _centroids(digest: WireDigest) -> tuple[np.ndarray, np.ndarray]:
    means = np.fromiter((c.m for c in digest.centroids), float, len(digest.centroids))
    weights = np.fromiter((c.c for c in digest.centroids), float, len(digest.centroids))
    return means, weights


def _quantiles(digest: WireDigest, qs: tuple[float, float]) -> tuple[float, float]:
    """Quantiles of a digest: each centroid's mean placed at the middle of its weight,
    interpolated linearly between centroids (clamped to the outer centroids)."""
    means, weights = _centroids(digest)
    order = np.argsort(means, kind="stable")
    means, weights = means[order], weights[order]
    middles = (np.cumsum(weights) - weights / 2.0) / weights.sum()
    low, high = np.interp(qs, middles, means)
    return float(low), float(high)
