"""Onsets: the first window of something new, scored against the track's whole past.

The baseline of models.py knows the last `history` windows; it says how far a window is from
them in that history's own spread. Two questions it cannot answer, both about the longer past:

- **envelope**: has the value ever been this high (or low)? Per track, the lowest and highest
  value seen (in the statistic's own unit), contracting slowly towards their middle
  (`envelope_decay` of the range per window, a half-life of ~5 days at 1 m) so that one old
  extreme is not kept for ever. A value beyond the envelope by `envelope_margin` of its range
  is new. Scored in the unit itself, not on the model scale: a new maximum is new whatever
  the scale.
- **likelihood**: is this window's deviation unusual *for this track*? The deviation |z| of
  models.py (capped at `z_cap`) has, per track, a long-run mean and variance (exponentially
  weighted, `likelihood_alpha`); the window's |z| in standard deviations of that distribution
  is its surprise. A bursty series whose z is often 8 is not surprising at 8; a calm one is.
  This is the idea of an anomaly likelihood: a raw score judged against its own distribution.

Onset score = max(exceedance / envelope_margin, surprise − likelihood_sigmas + 1): 1.0 at
either limit. A track fires an onset at once (no k-of-n: the first window is the news) once it
has `warmup` windows of this long past — its envelope half from `envelope_warmup` windows on,
with the margin × (warmup / windows seen)² until then: a young envelope is narrower than the
track's true range, so only a value far beyond it is news. After a track fires, its onset
score is held at 0 for `quiet_windows`, so one incident is announced once, not at every new
extreme it reaches.
An episode an onset began is not over while its value stays beyond the holding edge (the
envelope as it was when it fired, plus half the margin): the hour's baseline may call a level
normal that the long past never saw (detector.py).

A new extreme counts beyond `envelope_noise` sampling standard deviations of the window. A
window of one to three samples cannot show its own spread (noise.py), and a sparse series
(1–3 requests a minute) would otherwise set chance records with no noise to clear: each track
also learns one sample's spread (from its windows of two or more samples, same weights as the
likelihood), and a window of n samples has at least that spread / sqrt(n) of noise
(`noise_floor`).

All of it is O(1) state per track (seven numbers), vectorised over the tracks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NEVER = -(2**40)


@dataclass(frozen=True, slots=True)
class NoveltyConfig:
    enabled: bool = True
    envelope_margin: float = 0.2  # beyond the envelope by this share of its range: onset 1.0
    envelope_noise: float = 3.0  # sampling sds a new extreme must clear
    envelope_decay: float = 1e-4  # per window, share of the range the envelope contracts by
    likelihood_alpha: float = 1.0 / 500.0  # weight of one window in the long-run |z| moments
    likelihood_sigmas: float = 9.0  # surprise (sd of the track's own |z|) at onset 1.0
    z_cap: float = 10.0  # |z| beyond this is no more informative
    warmup: int = 300  # windows of the long past before the likelihood can fire an onset
    envelope_warmup: int = 100  # ... and the envelope, its margin × (warmup / seen)² until warmup
    quiet_windows: int = 60  # onset held at 0 this long after a track fires

    def __post_init__(self) -> None:
        if self.envelope_margin <= 0 or self.likelihood_sigmas <= 1 or self.warmup < 2:
            raise ValueError("envelope_margin > 0, likelihood_sigmas > 1, warmup >= 2")
        if self.envelope_warmup < 2:
            raise ValueError("envelope_warmup >= 2")
        if not 0.0 < self.likelihood_alpha < 1.0 or not 0.0 <= self.envelope_decay < 1.0:
            raise ValueError("likelihood_alpha in (0, 1), envelope_decay in [0, 1)")


class Novelty:
    """Per track: envelope (low, high), long-run |z| mean and variance, one sample's variance
    (0: not known yet), windows seen, quiet until."""

    def __init__(self, config: NoveltyConfig) -> None:
        self.config = config
        self.low = np.zeros(0)
        self.high = np.zeros(0)
        self.z_mean = np.zeros(0)
        self.z_var = np.zeros(0)
        self.sample_var = np.zeros(0)
        self.seen = np.zeros(0, np.int64)
        self.quiet_until = np.zeros(0, np.int64)

    def grow(self, tracks: int) -> None:
        extra = tracks - len(self.seen)
        if extra > 0:
            self.low = np.append(self.low, np.full(extra, np.nan))
            self.high = np.append(self.high, np.full(extra, np.nan))
            self.z_mean = np.append(self.z_mean, np.zeros(extra))
            self.z_var = np.append(self.z_var, np.zeros(extra))
            self.sample_var = np.append(self.sample_var, np.zeros(extra))
            self.seen = np.append(self.seen, np.zeros(extra, np.int64))
            self.quiet_until = np.append(self.quiet_until, np.full(extra, NEVER, np.int64))

    def onset(
        self, index: int, unit: np.ndarray, noise: np.ndarray, z: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(onset score, direction up) of one window per track, before it is learnt; 0 where a
        track has no value, is warming up or is quiet after firing. `noise`: the window's own
        sampling standard deviation in the unit; an extreme counts beyond `envelope_noise` of
        them (a window of few samples sets chance records; a single value has no such noise)."""
        cfg = self.config
        span = self.high - self.low
        with np.errstate(invalid="ignore"):
            above = unit - self.high
            below = self.low - unit
            margin = cfg.envelope_noise * noise
            span = np.where(span > 0, span, np.maximum(np.abs(self.high), 1e-12))
            exceed = np.maximum(np.maximum(above, below) - margin, 0.0) / span
            # A young envelope holds few windows: its records are less news (a larger margin).
            young = (cfg.warmup / np.maximum(self.seen, 1)) ** 2
            envelope = exceed / (cfg.envelope_margin * np.maximum(young, 1.0))
            young_from = min(cfg.envelope_warmup, cfg.warmup)
            envelope = np.where(self.seen >= young_from, envelope, 0.0)
            sd = np.sqrt(self.z_var)
            surprise = (np.minimum(np.abs(z), cfg.z_cap) - self.z_mean) / np.where(sd > 0, sd, 1.0)
            surprise = np.where(sd > 0, surprise, 0.0)
            likely = surprise - cfg.likelihood_sigmas + 1.0
            likely = np.where(self.seen >= cfg.warmup, likely, 0.0)
            score = np.maximum(envelope, likely)
        live = (index >= self.quiet_until) & np.isfinite(score)
        return np.where(live, np.maximum(score, 0.0), 0.0), above > 0

    def noise_floor(self, track: int, samples: int) -> float:
        """The least sampling sd (model scale) of a window of `samples` samples on this track:
        one sample's spread / sqrt(n); 0 until the track has seen a window that shows it."""
        return math.sqrt(self.sample_var[track] / max(samples, 1))

    def learn(self, unit: np.ndarray, z: np.ndarray, spread: np.ndarray) -> None:
        """Every window with a value enters the long past (an onset is news once); `spread`:
        one sample's sd (model scale) where the window shows it, NaN elsewhere."""
        cfg = self.config
        seen = np.isfinite(unit)
        first = seen & (self.seen == 0)
        self.low[first] = unit[first]
        self.high[first] = unit[first]
        self.low[seen] = np.minimum(self.low[seen], unit[seen])
        self.high[seen] = np.maximum(self.high[seen], unit[seen])
        middle = (self.low + self.high) / 2.0
        self.high[seen] -= cfg.envelope_decay * (self.high[seen] - middle[seen])
        self.low[seen] += cfg.envelope_decay * (middle[seen] - self.low[seen])
        scored = seen & np.isfinite(z)
        capped = np.minimum(np.abs(np.where(scored, z, 0.0)), cfg.z_cap)
        weight = np.maximum(cfg.likelihood_alpha, 1.0 / (self.seen + 1.0))
        delta = capped - self.z_mean
        self.z_mean = np.where(scored, self.z_mean + weight * delta, self.z_mean)
        self.z_var = np.where(scored, (1 - weight) * (self.z_var + weight * delta**2), self.z_var)
        shown = seen & np.isfinite(spread)
        variance = np.where(shown, spread, 0.0) ** 2
        learnt = np.where(self.sample_var > 0, self.sample_var, variance)  # the first sets it
        self.sample_var = np.where(shown, learnt + weight * (variance - learnt), self.sample_var)
        self.seen[seen] += 1

    def holding_edge(self, track: int, up: bool) -> float:
        """Where a value stops being new to the track's long past, for an episode an onset
        began: half the margin beyond the envelope (the envelope itself has contracted inside
        the old extremes, so an old extreme would otherwise count as new)."""
        span = self.high[track] - self.low[track]
        if not span > 0:
            span = abs(self.high[track])
        half = 0.5 * self.config.envelope_margin * span
        return float(self.high[track] + half if up else self.low[track] - half)

    def fired(self, tracks: list[int], index: int) -> None:
        self.quiet_until[tracks] = index + 1 + self.config.quiet_windows

    def tracks_seen(self) -> list[int]:
        return np.flatnonzero(self.seen > 0).tolist()

    def row_json(self, track: int) -> list[float | int]:
        """One track's long past, for the checkpoint (a replay reads too little to rebuild it)."""
        return [
            float(self.low[track]),
            float(self.high[track]),
            float(self.z_mean[track]),
            float(self.z_var[track]),
            int(self.seen[track]),
            int(self.quiet_until[track]),
            float(self.sample_var[track]),
        ]

    def load_row(self, track: int, row: list[float | int]) -> None:
        low, high, z_mean, z_var, seen, quiet_until = row[:6]
        # A checkpoint written before the sample spread was kept: learnt again from scratch.
        self.sample_var[track] = row[6] if len(row) > 6 else 0.0
        self.low[track], self.high[track] = low, high
        self.z_mean[track], self.z_var[track] = z_mean, z_var
        self.seen[track], self.quiet_until[track] = int(seen), int(quiet_until)

    def reset(self) -> None:
        """Every track as if never seen (before the checkpoint's rows are loaded)."""
        self.low[:] = np.nan
        self.high[:] = np.nan
        self.z_mean[:] = 0.0
        self.z_var[:] = 0.0
        self.sample_var[:] = 0.0
        self.seen[:] = 0
        self.quiet_until[:] = NEVER
