"""The Numenta Anomaly Benchmark's scoring rules, re-implemented with numpy (no NAB code).

The rules, as the NAB paper and its scorer define them:
- Each data file has labelled anomaly windows (labels/combined_windows.json, [start, end]
  timestamps that are rows of the file). The first 15 % of a file (at most 750 rows) is a
  probationary period: its rows are not scored.
- A detection is a row whose anomaly_score reaches the threshold. Inside a window, only the
  earliest detection counts: it earns tp_weight × S(p) / S(−1), where p = −(right − i + 1) /
  width is the row's relative position (−1 at the window's left edge, 0 past its right edge)
  and S(p) = 2·sigmoid(−5p) − 1, so an early detection earns almost 1 and a late one little.
  A window without detection costs −fn_weight.
- A detection outside every window costs fp_weight × S(d / (width − 1)), where d is its
  distance in rows past the right edge of the preceding window (so −fp_weight far from any
  window, less just after one); before the first window it costs −fp_weight.
- The threshold is chosen per profile to maximise the total over the corpus; the total is
  normalised as 100 × (score − null) / (perfect − null), null = no detection at all
  (−fn_weight per window), perfect = tp_weight per labelled window.

Profiles (config/profiles.json): standard (tp 1, fn 1, fp 0.11), reward_low_FP_rate (fp 0.22),
reward_low_FN_rate (fn 2). `tests/unit/test_nab.py` checks that these rules give the published
windowedGaussian result files their published scores.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROBATION_PERCENT = 0.15
PROBATION_CAP = PROBATION_PERCENT * 5000


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    tp_weight: float
    fn_weight: float
    fp_weight: float


PROFILES = (
    Profile("standard", 1.0, 1.0, 0.11),
    Profile("reward_low_FP_rate", 1.0, 1.0, 0.22),
    Profile("reward_low_FN_rate", 1.0, 2.0, 0.11),
)


@dataclass(slots=True)
class Rows:
    """One file's scorable rows: anomaly score, window number (−1: outside every window) and
    the unit reward of a detection there (S(p) / S(−1) inside, S(·) outside, before weights)."""

    file: str
    score: np.ndarray
    window: np.ndarray
    unit: np.ndarray
    windows: int  # windows with at least one scorable row


def scaled_sigmoid(position: np.ndarray) -> np.ndarray:
    value = 2.0 / (1.0 + np.exp(5.0 * position)) - 1.0
    return np.where(position > 3.0, -1.0, value)


MAX_TP = float(scaled_sigmoid(np.array(-1.0)))


def parse_times(texts: list[str]) -> np.ndarray:
    return np.array([t.replace(" ", "T") for t in texts], dtype="datetime64[us]")


def read_series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps, values) of a NAB data CSV."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    times = parse_times([r["timestamp"] for r in rows])
    return times, np.array([float(r["value"]) for r in rows])


def read_windows(nab_dir: Path) -> dict[str, list[tuple[np.datetime64, np.datetime64]]]:
    doc = json.loads((nab_dir / "labels" / "combined_windows.json").read_text())
    return {name: [tuple(parse_times(pair)) for pair in windows] for name, windows in doc.items()}


def scorable_rows(
    file: str,
    times: np.ndarray,
    scores: np.ndarray,
    windows: list[tuple[np.datetime64, np.datetime64]],
    first_window: int = 0,
) -> Rows:
    """The rows of one file with their window and unit reward (probationary rows dropped)."""
    n = len(times)
    window = np.full(n, -1, np.int64)
    unit = np.full(n, -1.0)
    index = np.arange(n)
    previous_right, previous_width = -1, 0.0
    bounds = []
    for start, end in windows:
        left = int(np.searchsorted(times, start))
        right = int(np.searchsorted(times, end))
        if left >= n or times[left] != start or right >= n or times[right] != end:
            raise ValueError(f"{file}: window [{start}, {end}] is not on the file's rows")
        bounds.append((left, right))
    for k, (left, right) in enumerate(bounds):
        # Outside rows between the previous window and this one.
        gap = slice(previous_right + 1, left)
        if previous_right >= 0 and previous_width > 1:
            distance = np.abs(previous_right - index[gap]) / (previous_width - 1.0)
            unit[gap] = scaled_sigmoid(distance)
        width = float(right - left + 1)
        inside = slice(left, right + 1)
        position = -(right - index[inside] + 1) / width
        unit[inside] = scaled_sigmoid(position) / MAX_TP
        window[inside] = first_window + k
        previous_right, previous_width = right, width
    if previous_right >= 0 and previous_width > 1:
        tail = slice(previous_right + 1, n)
        unit[tail] = scaled_sigmoid(np.abs(previous_right - index[tail]) / (previous_width - 1.0))
    probation = int(min(math.floor(PROBATION_PERCENT * n), PROBATION_CAP))
    keep = index >= probation
    kept_windows = len(set(window[keep & (window >= 0)].tolist()))
    return Rows(file, scores[keep], window[keep], unit[keep], kept_windows)


@dataclass(slots=True)
class CorpusScore:
    profile: str
    threshold: float
    raw: float
    normalized: float
    per_file: dict[str, float] = field(default_factory=dict)


def score_corpus(rows: list[Rows], profile: Profile, labelled_windows: int) -> CorpusScore:
    """The best total over every threshold (as NAB's optimiser), normalised."""
    score = np.concatenate([r.score for r in rows])
    window = np.concatenate([r.window for r in rows])
    unit = np.concatenate([r.unit for r in rows])
    inside = window >= 0
    reward = np.where(inside, unit * profile.tp_weight, unit * profile.fp_weight)
    null = -profile.fn_weight * sum(r.windows for r in rows)
    # Contribution of each row when the threshold comes down to its score: a false positive
    # adds its (negative) reward; inside a window, the best reward so far replaces the last.
    order = np.lexsort((np.arange(len(score)), -score))
    delta = np.where(inside, 0.0, reward)[order]
    w_sorted = window[order]
    r_sorted = reward[order]
    for w in np.unique(w_sorted[w_sorted >= 0]).tolist():
        at = np.flatnonzero(w_sorted == w)
        best = np.maximum.accumulate(np.maximum(r_sorted[at], -profile.fn_weight))
        delta[at] = np.diff(best, prepend=-profile.fn_weight)
    s_sorted = score[order]
    last_of_group = np.append(s_sorted[1:] != s_sorted[:-1], True)
    totals = null + np.cumsum(delta)[last_of_group]
    thresholds = s_sorted[last_of_group]
    best_at = int(np.argmax(totals))
    raw, threshold = float(totals[best_at]), float(thresholds[best_at])
    if raw <= null:
        raw, threshold = null, math.inf
    perfect = profile.tp_weight * labelled_windows
    normalized = 100.0 * (raw - null) / (perfect - null)
    per_file = {r.file: file_score(r, profile, threshold) for r in rows}
    return CorpusScore(profile.name, threshold, raw, normalized, per_file)


def file_score(rows: Rows, profile: Profile, threshold: float) -> float:
    """One file's raw NAB score at a threshold."""
    detected = rows.score >= threshold
    inside = rows.window >= 0
    total = float((rows.unit[detected & ~inside] * profile.fp_weight).sum())
    for w in np.unique(rows.window[inside]).tolist():
        hits = detected & (rows.window == w)
        total += (
            float(rows.unit[hits].max()) * profile.tp_weight if hits.any() else -profile.fn_weight
        )
    return total
