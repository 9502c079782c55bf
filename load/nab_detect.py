"""NAB data files through the detector's core: one point = one window's statistic.

Each file is one series; each point becomes the rollup of one window at the file's own interval
(the median step between its timestamps; points are taken in order, one window each, so the odd
missing or doubled timestamp leaves no hole). The files of one interval go through one
partition detector together, as the series of a partition do (the detector is vectorised over
its tracks): each file starts at the time of day of its first point, counted from a common
origin, so the seasonal model sees its days as they were. The value is the rollup's `mean`
(log scale, as latencies and rates are): one sample, so no sampling noise of its own.

The NAB anomaly_score of a point is the detector's onset score of that window (novelty.py: the
long-run envelope and the likelihood of the track's own deviations, the score that fires an
onset episode at 1.0) mapped onto [0, 1) by s / (1 + s) — 0.5 is where the detector fires. It
is 0 while the track is quiet after an onset, as the detector announces an incident once. The
deviation score itself (|z| / threshold) is not comparable from one file to the next (a bursty
file's z is often 8), so NAB's single threshold over the corpus cannot use it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from load.nab_score import read_series
from pipeline.core.detect.detector import DetectConfig, PartitionDetector
from pipeline.core.detect.models import Scores
from pipeline.core.rollup_wire import WireRollup, WireSeries

STATISTIC = "mean"
DAY_MS = 86_400_000
ORIGIN_MS = 1_767_225_600_000  # 2026-01-01T00:00Z: where every file's first day is put


@dataclass(slots=True)
class FileRun:
    times: np.ndarray
    anomaly_score: np.ndarray
    firing: np.ndarray  # bool per point: an episode fired on it
    interval_ms: int
    deviation_z: np.ndarray  # the deviation models' z per point (NaN: none), for replays


class ScoreRecorder(PartitionDetector):
    """The detector, unchanged, plus each scored window's onset score per track."""

    def __init__(self, config: DetectConfig, first: int, windows: int) -> None:
        super().__init__("nab.rollups", 0, config)
        self.first = first
        self.score = np.zeros((0, windows))
        self.z = np.zeros((0, windows))

    def _scored_window(
        self, index: int, values: np.ndarray, scores: Scores, onset: np.ndarray
    ) -> None:
        i = index - self.first
        tracks = len(values)
        if tracks > len(self.score):
            grow = tracks - len(self.score)
            self.score = np.vstack([self.score, np.zeros((grow, self.score.shape[1]))])
            self.z = np.vstack([self.z, np.full((grow, self.z.shape[1]), np.nan)])
        if 0 <= i < self.score.shape[1]:
            self.score[:, i] = np.nan_to_num(onset)
            self.z[:, i] = scores.score * self.config.model.threshold


def interval_of(times: np.ndarray) -> int:
    steps = np.diff(times).astype("timedelta64[ms]").astype(np.int64)
    return max(1_000, int(np.median(steps)) // 1_000 * 1_000)


def detect_files(paths: list[Path], config: DetectConfig) -> dict[Path, FileRun]:
    """Files of one interval through one detector."""
    series = {p: read_series(p) for p in paths}
    res = interval_of(series[paths[0]][0])
    config = replace(
        config,
        resolution_ms=res,
        allowed_lateness_ms=0,
        statistics=(STATISTIC,),
        directions={STATISTIC: "both"},
    )
    origin = ORIGIN_MS // res
    first: dict[Path, int] = {}
    for p, (times, _) in series.items():
        ms = int(times[0].astype("datetime64[ms]").astype(np.int64))
        first[p] = origin + (ms % DAY_MS) // res
    longest = max(first[p] - origin + len(v) for p, (_, v) in series.items())
    records: list[tuple[int, WireRollup]] = []
    keys = {p: f"nab|bench|{p.stem}|gauge|{{}}" for p in paths}
    for p, (_, values) in series.items():
        wire = WireSeries("nab", "bench", p.stem, "gauge", {})
        records += [
            (first[p] + i, _rollup(wire, keys[p], (first[p] + i) * res, res, float(v)))
            for i, v in enumerate(values)
        ]
    records.sort(key=lambda r: (r[0], r[1].series_key))
    records = [(offset, rollup) for offset, (_, rollup) in enumerate(records)]
    detector = ScoreRecorder(config, origin, longest)
    events = detector.process(records, len(records)).events
    if detector.plan_idle_advance():
        events += detector.apply_idle_advance()
    out = {}
    for p, (times, values) in series.items():
        track = detector.tracks[(keys[p], STATISTIC)]
        cols = slice(first[p] - origin, first[p] - origin + len(values))
        score = detector.score[track, cols]
        firing = np.zeros(len(values), bool)
        for e in events:
            body = e.body
            mine = body["series_key"] == keys[p] and body["kind"] == "deviation"
            if mine and body["state"] == "firing":
                firing[body["window_start"] // res - first[p]] = True
        z = detector.z[track, cols]
        out[p] = FileRun(times, score / (1.0 + score), firing, res, z)
    return out


def _rollup(series: WireSeries, key: str, start: int, res: int, value: float) -> WireRollup:
    return WireRollup(
        series=series, series_key=key, resolution_ms=res, window_start=start,
        window_end=start + res, count=1, sum=value, min=value, max=value, mean=value,
    )  # fmt: skip
