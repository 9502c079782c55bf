"""Anomaly episodes and the events that announce them (schemas/anomaly.schema.json)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any

import orjson

DETECTOR_VERSION = "2"


@dataclass(slots=True)
class Episode:
    """One incident of one (series, statistic): fired once, resolved once."""

    episode_id: str
    kind: str  # deviation | absence
    statistic: str
    started_at: int  # window start (epoch ms) of the first anomalous window
    direction: str
    severity: str
    detector: str  # robust | seasonal | absence | onset
    # For an episode an onset began: where a value stops being new to the track's long past
    # (statistic's unit, novelty.py). The episode is not over while the value stays beyond
    # it, however ordinary the value has become for the last hour. Checkpointed with it.
    beyond: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(doc: dict[str, Any]) -> Episode:
        return Episode(**doc)


def episode_id(series_key: str, statistic: str, kind: str, started_at: int) -> str:
    """Stable across replays: a function of what the episode is about and where it began."""
    text = f"{series_key}|{statistic}|{kind}|{started_at}"
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The numbers of one window for one track, in the statistic's own unit."""

    observed: float | None
    expected: float
    lower: float
    upper: float
    score: float


@dataclass(frozen=True, slots=True)
class AnomalyRecord:
    """One episode transition on the anomaly topic: the stages' keyed output (core/keyed.py)
    as the detector emits it. key: `<episode_id>@<state>`, so a replay overwrites it."""

    key: str
    routing_key: str  # "service|region" of the series: the partition of the rollups it read
    body: dict[str, Any]

    @property
    def state(self) -> str:
        """firing | resolved."""
        state: str = self.body["state"]
        return state

    @property
    def count(self) -> int:
        """An event accounts for no samples."""
        return 0

    def encode(self) -> bytes:
        return orjson.dumps(self.body)


def event(
    episode: Episode,
    state: str,
    series: dict[str, Any],
    series_key: str,
    routing_key: str,
    resolution: str,
    window_start: int,
    window_end: int,
    verdict: Verdict,
    ended_by: str | None = None,
) -> AnomalyRecord:
    """The record of one episode transition.
    `ended_by` (resolved events only): recovered | level_shift | expired."""

    def finite(x: float) -> float:
        return x if math.isfinite(x) else 0.0

    body: dict[str, Any] = {
        "episode_id": episode.episode_id,
        "state": state,
        "kind": episode.kind,
        "series": series,
        "series_key": series_key,
        "statistic": episode.statistic,
        "resolution": resolution,
        "window_start": window_start,
        "window_end": window_end,
        "observed": verdict.observed,
        "expected": finite(verdict.expected),
        "lower": finite(verdict.lower),
        "upper": finite(verdict.upper),
        "score": finite(verdict.score),
        "direction": episode.direction,
        "severity": episode.severity,
        "started_at": episode.started_at,
        "detector": {"name": episode.detector, "version": DETECTOR_VERSION},
    }
    if ended_by is not None:
        body["ended_by"] = ended_by
    return AnomalyRecord(f"{episode.episode_id}@{state}", routing_key, body)
