"""The state the detector's parts share (detector.py, episodes.py, snapshot.py): declared once
here so that each part is type-checked against the same attributes."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.core.clock import PartitionClock
from pipeline.core.detect.config import DetectConfig, SeriesInfo
from pipeline.core.detect.drift import Drift
from pipeline.core.detect.events import Episode
from pipeline.core.detect.novelty import Novelty
from pipeline.core.detect.tracks import TrackState
from pipeline.core.rollup_wire import WireRollup


class DetectorParts:
    topic: str
    partition: int
    config: DetectConfig
    res: int
    window_s: float
    resolution: str
    clock: PartitionClock
    _next_window: int | None
    _pending: dict[int, list[WireRollup]]
    _first: dict[int, tuple[int, int]]
    series: dict[str, SeriesInfo]
    tracks: dict[tuple[str, str], int]
    _track_keys: list[tuple[str, str]]
    state: TrackState
    novelty: Novelty
    drift: Drift
    _presence: np.ndarray
    active: dict[int, Episode]
    absent: dict[str, Episode]
    _restored: dict[str, Any] | None

    def _track(self, series_key: str, statistic: str) -> int:
        raise NotImplementedError

    def _presence_slot(self, info: SeriesInfo) -> None:
        raise NotImplementedError
