"""Baselines learnt online, vectorized over every tracked (series, statistic) at once.

Values are on the model scale of pipeline/core/detect/noise.py (Anscombe square root of the
event count for rates, log1p for latencies); each window also brings its own sampling noise.

- robust: expected = median of the learnt windows (`history` of them); the spread of the
  history is the larger of 1.4826 × MAD and IQR / 1.349 (both a standard deviation for
  Gaussian noise; the second stays honest when a statistic flips between two modes, where the
  MAD of the usual mode alone is far too narrow, yet needs a quarter of the history to move,
  so a ramp does not widen its own band before it is caught).
- seasonal: expected = the same time of day over the last `seasonal_days` days (median over
  days of 5-minute slot means, interpolated between slots) plus the median of recent residuals;
  spread from the residuals, as above.
- auto: seasonal where a series has `min_seasonal_days` of profile and its daily cycle (the
  range of its profile over the day) is wider than `auto_cycle` detection bands, so that a
  one-hour baseline would mistake the cycle's ramps for shifts; robust otherwise.

The history's spread mixes two things: how much the series really moves between windows, and
the sampling noise of each window's statistic. The first is what remains after the typical
sampling variance of the learnt windows is taken out; the band of a window is then that plus
this window's own sampling variance, so a window with few samples gets a wide band and a busy
one a narrow band (`z = (observed − expected) / sqrt(between² + sampling²)`, floored at
`min_scale`).

A second, short-run test averages the last `short_run` windows' deviations (all present and on
the same side): sampling noise shrinks with the average, the between-window part is kept whole
(it is often correlated from one window to the next). It finds a modest persistent shift in a
noisy, low-count statistic within a few windows, where one window alone cannot.

Score: max(|z|, |z_short|) / threshold; 1.0 is the threshold.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

MAD_TO_SIGMA = 1.4826
IQR_TO_SIGMA = 1.349  # interquartile range of a Gaussian in sigmas
MEAN_DEVIATION_TO_SIGMA = 1.2533  # mean absolute deviation of a Gaussian in sigmas


@dataclass(frozen=True, slots=True)
class ModelConfig:
    model: str = "auto"  # robust | seasonal | auto
    history: int = 60  # windows of the robust baseline
    threshold: float = 4.0  # sigmas at score 1.0 (measured: load/detect_bench.py)
    min_scale: float = 0.03  # floor of the scale (log scale: ~3 % relative)
    seasonal_days: int = 7
    min_seasonal_days: int = 2
    slot_ms: int = 300_000  # time-of-day slots of the seasonal profile (5 min)
    auto_cycle: float = 2.0
    short_run: int = 3  # windows averaged by the short-run test (1: off)

    def __post_init__(self) -> None:
        if self.model not in ("robust", "seasonal", "auto"):
            raise ValueError(f"model must be robust, seasonal or auto, not {self.model!r}")
        if self.history < 5 or self.threshold <= 0 or self.min_scale <= 0:
            raise ValueError("history >= 5, threshold > 0 and min_scale > 0 are required")
        if not 1 <= self.short_run <= self.history:
            raise ValueError("short_run must be between 1 and history")


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


def row_quantiles(rows: np.ndarray, qs: tuple[float, ...]) -> list[np.ndarray]:
    """Quantiles of each row ignoring NaN (linear interpolation, as numpy's default; NaN for
    an all-NaN row) — one sort for all of them, far cheaper than nanmedian on small rows."""
    ordered = np.sort(rows, axis=1)  # NaN last
    count = (~np.isnan(rows)).sum(axis=1)
    last = np.maximum(count - 1, 0)
    row = np.arange(len(rows))
    out = []
    for q in qs:
        position = q * last
        below = np.floor(position).astype(np.int64)
        above = np.minimum(below + 1, last)
        weight = position - below
        a = ordered[row, below]
        b = ordered[row, above]
        out.append(np.where(count > 0, a + (b - a) * weight, np.nan))
    return out


def robust_baseline(history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(median, spread) of each row, ignoring NaN: spread = max(1.4826 × MAD, IQR / 1.349);
    where both are 0 (a series that is mostly one value, e.g. mostly zero), 1.2533 × the mean
    absolute deviation, so its rare other values set the band instead of the floor alone."""
    center, low, high = row_quantiles(history, (0.5, 0.25, 0.75))
    deviation = np.abs(history - center[:, None])
    (mad,) = row_quantiles(deviation, (0.5,))
    spread = np.fmax(mad * MAD_TO_SIGMA, (high - low) / IQR_TO_SIGMA)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN, as wanted
        mean_deviation = np.nanmean(deviation, axis=1) * MEAN_DEVIATION_TO_SIGMA
    return center, np.where(spread > 0, spread, mean_deviation)


def between_windows(history: np.ndarray, sampling: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(median, between-window standard deviation) of each row: the spread of the history less
    the typical sampling variance of its windows."""
    center, spread = robust_baseline(history)
    (typical,) = row_quantiles(np.where(np.isnan(history), np.nan, sampling**2), (0.5,))
    return center, np.sqrt(np.maximum(spread**2 - np.nan_to_num(typical), 0.0))


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
        (a,) = row_quantiles(self.profile[:, :, below % self.slots], (0.5,))
        (b,) = row_quantiles(self.profile[:, :, (below + 1) % self.slots], (0.5,))
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


@dataclass(slots=True)
class Window:
    """One window's inputs, model scale, one row per track (NaN: no value)."""

    values: np.ndarray
    sampling: np.ndarray  # sampling standard deviation of each value
    recent: np.ndarray  # the previous short_run − 1 windows' values (tracks × k), learnt or not
    recent_residuals: np.ndarray  # the same minus the seasonal level of their windows
    recent_sampling: np.ndarray


@dataclass(slots=True)
class Baseline:
    """What was learnt, one row per track: the windows outside episodes."""

    history: np.ndarray  # tracks × history
    residuals: np.ndarray  # value − seasonal level
    sampling: np.ndarray
    seasonal_level: np.ndarray  # this window's time of day
    seasonal_days: np.ndarray
    daily_range: np.ndarray


def score_window(window: Window, base: Baseline, config: ModelConfig) -> Scores:
    """Scores of one window (see the module docstring)."""
    center, between = between_windows(base.history, base.sampling)
    r_center, r_between = between_windows(base.residuals, base.sampling)
    seasonal_ok = (base.seasonal_days >= config.min_seasonal_days) & ~np.isnan(base.seasonal_level)
    if config.model == "robust":
        use_seasonal = np.zeros(len(window.values), bool)
    elif config.model == "seasonal":
        use_seasonal = seasonal_ok
    else:
        residual_band = config.threshold * np.maximum(r_between, config.min_scale)
        with np.errstate(invalid="ignore"):
            use_seasonal = seasonal_ok & (base.daily_range > config.auto_cycle * residual_band)
    expected = np.where(use_seasonal, base.seasonal_level + r_center, center)
    between = np.where(use_seasonal, r_between, between)
    scale = np.maximum(np.sqrt(between**2 + window.sampling**2), config.min_scale)
    band = config.threshold * scale
    deviation = window.values - expected
    with np.errstate(invalid="ignore"):
        z = deviation / scale
    if config.short_run > 1:
        past = np.where(
            use_seasonal[:, None],
            window.recent_residuals - r_center[:, None],
            window.recent - center[:, None],
        )
        runs = np.concatenate([past, deviation[:, None]], axis=1)
        sampling = np.concatenate([window.recent_sampling, window.sampling[:, None]], axis=1)
        short_scale = np.maximum(
            np.sqrt(between**2 + (sampling**2).mean(axis=1) / config.short_run),
            config.min_scale,
        )
        with np.errstate(invalid="ignore"):
            z_short = runs.mean(axis=1) / short_scale
            same_side = (np.sign(runs) == np.sign(deviation)[:, None]).all(axis=1)
            z = np.where(same_side & (np.abs(z_short) > np.abs(z)), z_short, z)
    with np.errstate(invalid="ignore"):
        score = np.abs(z) / config.threshold
    return Scores(expected, band, score, use_seasonal)
