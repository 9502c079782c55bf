"""Baselines learnt online, vectorized over every tracked (series, statistic) at once.

Values are modelled on a log scale (`log1p`) when the statistic cannot be negative (latency
percentiles, rates): deviations are then relative, which suits heavy-tailed metrics.

- robust: expected = median of the last `history` windows, scale = 1.4826 × MAD (a standard
  deviation for Gaussian noise, unmoved by a few outliers), floored at `min_scale`.
- seasonal: expected = the same time of day over the last `seasonal_days` days (median over
  days of 5-minute slot means, interpolated between slots) plus the median of recent residuals;
  scale from the residuals' MAD. A daily cycle then stops looking like a shift.
- auto: seasonal where a series has `min_seasonal_days` of profile and its daily cycle (the
  range of its profile over the day) is wider than `auto_cycle` detection bands, so that a
  one-hour baseline would mistake the cycle's ramps for shifts; robust otherwise.

Score: |observed − expected| / (threshold × scale); 1.0 is the threshold.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True, slots=True)
class ModelConfig:
    model: str = "auto"  # robust | seasonal | auto
    history: int = 60  # windows of the robust baseline
    threshold: float = 6.0  # robust sigmas at score 1.0 (tuned by load/detect_bench.py)
    min_scale: float = 0.03  # floor of the scale (log scale: ~3 % relative)
    seasonal_days: int = 7
    min_seasonal_days: int = 2
    slot_ms: int = 300_000  # time-of-day slots of the seasonal profile (5 min)
    auto_cycle: float = 2.0

    def __post_init__(self) -> None:
        if self.model not in ("robust", "seasonal", "auto"):
            raise ValueError(f"model must be robust, seasonal or auto, not {self.model!r}")
        if self.history < 5 or self.threshold <= 0 or self.min_scale <= 0:
            raise ValueError("history >= 5, threshold > 0 and min_scale > 0 are required")


@dataclass(slots=True)
class Scores:
    """One window's verdict for every track (NaN where a track has no value or no baseline)."""

    expected: np.ndarray
    band: np.ndarray  # threshold × scale, model scale
    score: np.ndarray
    seasonal: np.ndarray  # bool: the seasonal model was used


def _nanmedian(a: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN, as wanted
        result: np.ndarray = np.nanmedian(a, axis=axis)
        return result


def robust_baseline(history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(median, 1.4826 × MAD) of each row, ignoring NaN."""
    center = _nanmedian(history, axis=1)
    spread = _nanmedian(np.abs(history - center[:, None]), axis=1) * MAD_TO_SIGMA
    return center, spread


class SeasonalProfile:
    """Per track, the mean of each time-of-day slot for each of the last `days` days."""

    def __init__(self, tracks: int, config: ModelConfig, window_ms: int) -> None:
        self.config = config
        self.slots = max(1, 86_400_000 // config.slot_ms)
        self.days = config.seasonal_days
        self.window_ms = window_ms
        self.profile = np.full((tracks, self.days, self.slots), np.nan)
        self._sum = np.zeros((tracks, self.slots))
        self._count = np.zeros((tracks, self.slots))
        self.day: int | None = None  # day number (epoch days) being accumulated
        self.complete_days = 0

    def grow(self, tracks: int) -> None:
        extra = tracks - self.profile.shape[0]
        if extra > 0:
            self.profile = np.concatenate(
                [self.profile, np.full((extra, self.days, self.slots), np.nan)]
            )
            self._sum = np.concatenate([self._sum, np.zeros((extra, self.slots))])
            self._count = np.concatenate([self._count, np.zeros((extra, self.slots))])

    def slot_of(self, window_start: int) -> int:
        return int((window_start % 86_400_000) // self.config.slot_ms)

    def level(self, window_start: int) -> np.ndarray:
        """Same time of day over the stored days (NaN where a track has no profile there):
        the median over days of the slot means, interpolated linearly between slot centres so
        that a ramp inside a slot is followed, not stepped."""
        slot_ms = self.config.slot_ms
        middle = window_start % 86_400_000 + self.window_ms / 2
        position = middle / slot_ms - 0.5  # in slots, 0 = centre of slot 0
        below = int(np.floor(position))
        weight = position - below
        a = _nanmedian(self.profile[:, :, below % self.slots], axis=1)
        b = _nanmedian(self.profile[:, :, (below + 1) % self.slots], axis=1)
        return np.where(np.isnan(b), a, np.where(np.isnan(a), b, a + (b - a) * weight))

    def add(self, window_start: int, values: np.ndarray) -> None:
        day = window_start // 86_400_000
        if self.day is None:
            self.day = day
        while day > self.day:  # a day ended: its slot means enter the profile
            with np.errstate(invalid="ignore", divide="ignore"):
                means = np.where(self._count > 0, self._sum / self._count, np.nan)
            self.profile = np.roll(self.profile, 1, axis=1)
            self.profile[:, 0, :] = means
            self._sum[:] = 0.0
            self._count[:] = 0.0
            self.day += 1
            self.complete_days = min(self.days, self.complete_days + 1)
        seen = ~np.isnan(values)
        slot = self.slot_of(window_start)
        self._sum[seen, slot] += values[seen]
        self._count[seen, slot] += 1

    def daily_range(self) -> np.ndarray:
        """Per track, max − min over the day of the profile (median over days per slot)."""
        typical = _nanmedian(self.profile, axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result: np.ndarray = np.nanmax(typical, axis=1) - np.nanmin(typical, axis=1)
        return result

    def days_known(self) -> np.ndarray:
        """Per track, how many stored days have any slot."""
        return np.count_nonzero(~np.isnan(self.profile).all(axis=2), axis=1)  # type: ignore[no-any-return]


def score_window(
    values: np.ndarray,
    history: np.ndarray,
    residuals: np.ndarray,
    seasonal_level: np.ndarray,
    seasonal_days: np.ndarray,
    daily_range: np.ndarray,
    config: ModelConfig,
) -> Scores:
    """Scores of one window. values: the window's observations (model scale, NaN = none);
    history/residuals: the previous windows' values and seasonal residuals (tracks × history)."""
    center, spread = robust_baseline(history)
    r_center, r_spread = robust_baseline(residuals)
    seasonal_ok = (seasonal_days >= config.min_seasonal_days) & ~np.isnan(seasonal_level)
    if config.model == "robust":
        use_seasonal = np.zeros(len(values), bool)
    elif config.model == "seasonal":
        use_seasonal = seasonal_ok
    else:
        residual_band = config.threshold * np.maximum(r_spread, config.min_scale)
        with np.errstate(invalid="ignore"):
            use_seasonal = seasonal_ok & (daily_range > config.auto_cycle * residual_band)
    expected = np.where(use_seasonal, seasonal_level + r_center, center)
    scale = np.maximum(np.where(use_seasonal, r_spread, spread), config.min_scale)
    band = config.threshold * scale
    with np.errstate(invalid="ignore"):
        score = np.abs(values - expected) / band
    return Scores(expected, band, score, use_seasonal)
