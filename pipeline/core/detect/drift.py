"""Persistent small shifts: a two-sided CUSUM of each track's window deviations.

A ×1.3 shift in a statistic of a few requests a second is within one window's noise, and the
short-run test (three windows) cannot see it either; but it is far outside the noise of the
mean of twenty windows. The robust baseline is the median of `history` windows, so once half of
them are shifted it has learnt the new level silently, and the return to normal then looks like
the anomaly. The CUSUM accumulates each window's deviation z (in the sigmas of its own band,
clipped so that one outlier counts as a few sigmas at most) beyond an allowance `k`:

    up = max(0, up + z − k),  down = max(0, down − z − k),  each at most `limit`

and a track fires when one side reaches `limit` (under pure noise, z has mean 0 and the sums
stay near 0; a shift of d sigmas per window reaches `limit` in about limit / (d − k) windows).
While a side is past `hold` × `limit`, the track does not learn the window (a suspected shift
must not become its own baseline before it is confirmed), and an open episode in that
direction is not back to normal (it does not flap while a noisy shift hovers around the
threshold). A window with fewer than `min_count` samples does not count: the mean or p99 of a
handful of samples is so skewed that its z has no mean of 0 even without a shift, and sums
would creep; absences and the per-window models watch sparse series. The sums are per
window, vectorized over tracks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class DriftConfig:
    enabled: bool = True
    allowance: float = 1.0  # k, sigmas a window may deviate for free
    limit: float = 10.0  # h, accumulated sigmas that fire (and the cap of each sum)
    clip: float = 3.0  # one window counts at most this many sigmas
    hold: float = 0.7  # share of `limit` past which the window is not learnt
    min_count: int = 20  # samples a window needs to count (fewer: far from Gaussian, skipped)

    def __post_init__(self) -> None:
        if self.allowance <= 0 or self.limit <= 0 or self.clip <= self.allowance:
            raise ValueError("drift needs allowance > 0, limit > 0 and clip > allowance")
        if not 0.0 < self.hold <= 1.0:
            raise ValueError("drift hold must be in (0, 1]")


class Drift:
    def __init__(self, config: DriftConfig) -> None:
        self.config = config
        self.up = np.zeros(0)
        self.down = np.zeros(0)
        self.held_run = np.zeros(0, np.int64)  # scored windows in a row with a side held

    def grow(self, tracks: int) -> None:
        extra = tracks - len(self.up)
        if extra > 0:
            self.up = np.concatenate([self.up, np.zeros(extra)])
            self.down = np.concatenate([self.down, np.zeros(extra)])
            self.held_run = np.concatenate([self.held_run, np.zeros(extra, np.int64)])

    def update(self, z: np.ndarray) -> None:
        """One window's signed deviations in sigmas (NaN: no value, the sums stay)."""
        cfg = self.config
        seen = np.isfinite(z)
        step = np.clip(np.where(seen, z, 0.0), -cfg.clip, cfg.clip)
        up = np.clip(self.up + step - cfg.allowance, 0.0, cfg.limit)
        down = np.clip(self.down - step - cfg.allowance, 0.0, cfg.limit)
        self.up = np.where(seen, up, self.up)
        self.down = np.where(seen, down, self.down)
        held_up, held_down = self.holding()
        self.held_run = np.where(held_up | held_down, self.held_run + 1, 0)

    def fired(self) -> tuple[np.ndarray, np.ndarray]:
        """(fires, upward) per track."""
        limit = self.config.limit
        return (self.up >= limit) | (self.down >= limit), self.up >= self.down

    def holding(self) -> tuple[np.ndarray, np.ndarray]:
        """(upward side held, downward side held): past `hold` × `limit`."""
        held = self.config.hold * self.config.limit
        return self.up > held, self.down > held

    def reset(self, track: int) -> None:
        self.up[track] = 0.0
        self.down[track] = 0.0
        self.held_run[track] = 0

    def row_json(self, track: int) -> list[Any]:
        return [float(self.up[track]), float(self.down[track]), int(self.held_run[track])]

    def load_row(self, track: int, row: list[Any]) -> None:
        self.up[track], self.down[track], self.held_run[track] = row

    def tracks_seen(self) -> list[int]:
        return np.flatnonzero((self.up > 0) | (self.down > 0)).tolist()
