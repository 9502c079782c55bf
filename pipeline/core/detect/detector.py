"""One rollup partition's detector: rollups of one tier in, anomaly episode events out.

Time is event time, as in the tiers: a window is complete once the latest rollup window start
seen, minus `allowed_lateness`, reaches its end; complete windows are scored in order, every
window, for every tracked (series, statistic) at once (numpy). A series that reports nothing in
a complete window has a gap there; `absence_windows` gaps in a row after warm-up fire an absence
episode.

Hysteresis: a track fires when `fire_k` of its last `fire_n` windows were anomalous and resolves
after `resolve_m` normal windows in a row; one episode id per incident, derived from the series,
statistic and the window the incident began in, so a replay emits the same ids.

Replay (DESIGN.md §3): the checkpoint's offset is where the history of the windows still needed
begins (`history` windows before the last scored one, `seasonal_days` days for seasonal models);
the state that history cannot rebuild — hysteresis flags, open episodes — is in the checkpoint
as it stood after the last scored window. A restored detector replays the history without
scoring it, then scores from where it stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.core.advances import IdleAdvances
from pipeline.core.checkpoint import Checkpoint, resume_point
from pipeline.core.detect.events import Episode, Verdict, episode_id, event
from pipeline.core.detect.models import ModelConfig, SeasonalProfile, score_window
from pipeline.core.rollup import Rollup, format_duration
from pipeline.core.rollup_wire import WireRollup, series_dict

NO_TIME = -(2**62)
DEFAULT_DIRECTIONS = {"rate": "both", "count": "both", "sum": "both", "min": "both"}
NON_NEGATIVE = {"rate", "count", "max", "mean", "sum"}


@dataclass(frozen=True, slots=True)
class DetectConfig:
    resolution_ms: int = 60_000
    allowed_lateness_ms: int = 60_000
    statistics: tuple[str, ...] = ("p99", "rate")
    statistics_by_name: dict[str, tuple[str, ...]] = field(default_factory=dict)
    directions: dict[str, str] = field(default_factory=dict)  # statistic → up | down | both
    model: ModelConfig = field(default_factory=ModelConfig)
    warmup: int = 30  # scored windows with a value before a track can fire
    fire_k: int = 2
    fire_n: int = 3
    resolve_m: int = 3
    critical_score: float = 2.0
    absence_windows: int = 5
    forget_windows: int = 1_440  # stop tracking (and resolve the absence) after this many gaps

    def __post_init__(self) -> None:
        if not 1 <= self.fire_k <= self.fire_n or self.resolve_m < 1:
            raise ValueError("need 1 <= fire_k <= fire_n and resolve_m >= 1")
        if self.warmup > self.model.history:
            raise ValueError("warmup cannot exceed the robust history")

    def statistics_of(self, name: str) -> tuple[str, ...]:
        return self.statistics_by_name.get(name, self.statistics)

    def direction_of(self, statistic: str) -> str:
        return self.directions.get(statistic, DEFAULT_DIRECTIONS.get(statistic, "up"))

    def history_windows(self) -> int:
        """Windows a replay must read before the first window it scores."""
        seasonal = 0
        if self.model.model != "robust":
            seasonal = (self.model.seasonal_days + 1) * 86_400_000 // self.resolution_ms
        return max(self.model.history, seasonal) + self.fire_n


@dataclass(slots=True)
class SeriesInfo:
    series: dict[str, Any]
    routing_key: str
    last_seen: int  # window index
    seen_windows: int = 0


def statistic_value(rollup: WireRollup, statistic: str) -> float:
    if statistic == "rate":
        return rollup.rate
    if statistic == "mean":
        return rollup.mean
    if statistic == "count":
        return float(rollup.count)
    if statistic in ("min", "max", "sum"):
        return float(getattr(rollup, statistic))
    return rollup.percentiles.get(statistic, math.nan)


@dataclass(slots=True)
class DetectStep:
    events: list[Rollup] = field(default_factory=list)
    late: list[tuple[int, WireRollup]] = field(default_factory=list)


class PartitionDetector:
    def __init__(self, topic: str, partition: int, config: DetectConfig) -> None:
        self.topic = topic
        self.partition = partition
        self.config = config
        self.res = config.resolution_ms
        self.resolution = format_duration(self.res)
        self.max_ts = NO_TIME  # latest rollup window start seen
        self.emitted_wm = NO_TIME  # every window ending at or before it was scored
        self.next_offset = 0
        self.advances = IdleAdvances()
        self._next_window: int | None = None  # index of the next window to complete
        self._pending: dict[int, list[WireRollup]] = {}  # window index → its rollups
        self._first: dict[int, tuple[int, int]] = {}  # window index → (first offset, max_ts)
        self.series: dict[str, SeriesInfo] = {}
        self.tracks: dict[tuple[str, str], int] = {}
        self._track_keys: list[tuple[str, str]] = []
        h, n = config.model.history, config.fire_n
        self._hist = np.empty((0, h))
        self._resid = np.empty((0, h))
        self._flags = np.zeros((0, n), bool)
        self._flag_window = np.zeros((0, n), np.int64)
        self._normal_run = np.zeros(0, np.int64)
        self._scored = np.zeros(0, np.int64)  # windows with a value, capped at warmup
        self._may_go_up = np.zeros(0, bool)
        self._may_go_down = np.zeros(0, bool)
        self._profile = SeasonalProfile(0, config.model, self.res)
        self._profile_day: int | None = -1
        self._days_known = np.zeros(0, np.int64)
        self._daily_range = np.zeros(0)
        self.active: dict[int, Episode] = {}
        self.absent: dict[str, Episode] = {}
        self._restored: dict[str, Any] | None = None

    # -- state the checkpoint protocol asks for ---------------------------------------------

    @property
    def watermark(self) -> int:
        return self.max_ts - self.config.allowed_lateness_ms

    @property
    def open_windows(self) -> int:
        return len(self._pending)

    # -- input ------------------------------------------------------------------------------

    def process(self, rollups: list[tuple[int, WireRollup]], end_offset: int) -> DetectStep:
        """Rollups of this partition, (offset, rollup) in order, up to `end_offset`."""
        step = DetectStep()
        due = self.advances.due(self.next_offset, end_offset)
        for offset, rollup in rollups:
            for adv_max_ts in due.before(offset):
                self.max_ts = max(self.max_ts, adv_max_ts)
                self._complete(step)
            if rollup.window_start + self.res <= self.watermark:
                step.late.append((offset, rollup))
            else:
                index = rollup.window_start // self.res
                if self._next_window is None:
                    self._next_window = index
                self._pending.setdefault(index, []).append(rollup)
                self._first.setdefault(index, (offset, self.max_ts))
            self.max_ts = max(self.max_ts, rollup.window_start)
            self._complete(step)
        for adv_max_ts in due.rest():
            self.max_ts = max(self.max_ts, adv_max_ts)
        self.next_offset = max(self.next_offset, end_offset)
        self._complete(step)
        return step

    def _complete(self, step: DetectStep) -> None:
        if self._next_window is None:
            return
        last = (self.watermark - self.res) // self.res  # last window whose end <= watermark
        while self._next_window <= last:
            index = self._next_window
            self._window(index, self._pending.pop(index, []), step)
            self._next_window = index + 1
        horizon = (self._next_window or 0) - self.config.history_windows()
        for index in [i for i in self._first if i < horizon]:
            del self._first[index]

    # -- one complete window ----------------------------------------------------------------

    def _window(self, index: int, rollups: list[WireRollup], step: DetectStep) -> None:
        start = index * self.res
        values = np.full(len(self._track_keys), np.nan)
        for rollup in rollups:
            info = self._series_info(rollup)
            info.last_seen = index
            info.seen_windows += 1
            for statistic in self.config.statistics_of(rollup.series.name):
                value = statistic_value(rollup, statistic)
                if not math.isfinite(value):
                    continue
                track = self._track(rollup.series_key, statistic)
                if track >= len(values):
                    values = np.append(values, np.full(track + 1 - len(values), np.nan))
                values[track] = self._to_model(statistic, value)
        scoring = start + self.res > self.emitted_wm
        if scoring and self._restored is not None:
            self._apply_snapshot(self._restored)
            self._restored = None
        if len(values) < len(self._track_keys):
            values = np.append(values, np.full(len(self._track_keys) - len(values), np.nan))
        level = self._profile.level(start)
        if scoring:
            self._score(index, values, level, step)
            self._absences(index, step)
            self.emitted_wm = start + self.res
        pos = index % self.config.model.history
        self._hist[:, pos] = values
        self._resid[:, pos] = values - level
        self._profile.add(start, values)
        self._scored += ~np.isnan(values)
        np.minimum(self._scored, self.config.warmup, out=self._scored)
        self._forget(index)

    def _score(self, index: int, values: np.ndarray, level: np.ndarray, step: DetectStep) -> None:
        cfg = self.config
        if self._profile_day != self._profile.day or len(self._days_known) != len(values):
            # The profile's statistics change once a day (or when tracks are added).
            self._profile_day = self._profile.day
            self._days_known = self._profile.days_known()
            self._daily_range = self._profile.daily_range()
        scores = score_window(
            values,
            self._hist,
            self._resid,
            level,
            self._days_known,
            self._daily_range,
            cfg.model,
        )
        up = values > scores.expected
        allowed = np.where(up, self._may_go_up, self._may_go_down)
        with np.errstate(invalid="ignore"):
            anomalous = (scores.score >= 1.0) & allowed & (self._scored >= cfg.warmup)
        seen = ~np.isnan(values)
        slot = index % cfg.fire_n
        self._flags[:, slot] = anomalous
        self._flag_window[:, slot] = index
        recent = self._flag_window > index - cfg.fire_n
        count = (self._flags & recent).sum(axis=1)
        self._normal_run = np.where(anomalous, 0, self._normal_run + seen)
        start, end = index * self.res, (index + 1) * self.res
        for track in np.flatnonzero(anomalous & (count >= cfg.fire_k)).tolist():
            if track in self.active:
                continue
            series_key, statistic = self._track_keys[track]
            began = int(self._flag_window[track][self._flags[track] & recent[track]].min())
            score = float(scores.score[track])
            episode = Episode(
                episode_id(series_key, statistic, "deviation", began * self.res),
                "deviation",
                statistic,
                began * self.res,
                "up" if up[track] else "down",
                "critical" if score >= cfg.critical_score else "warning",
                "seasonal" if scores.seasonal[track] else "robust",
            )
            self.active[track] = episode
            self._normal_run[track] = 0
            step.events.append(self._event(episode, "firing", track, start, end, values, scores))
        for track in [t for t in self.active if self._normal_run[t] >= cfg.resolve_m]:
            episode = self.active.pop(track)
            step.events.append(self._event(episode, "resolved", track, start, end, values, scores))

    def _event(
        self,
        episode: Episode,
        state: str,
        track: int,
        start: int,
        end: int,
        values: np.ndarray,
        scores: Any,
    ) -> Rollup:
        series_key, statistic = self._track_keys[track]
        info = self.series[series_key]
        band = float(scores.band[track])
        expected = float(scores.expected[track])
        verdict = Verdict(
            self._from_model(statistic, float(values[track])),
            self._from_model(statistic, expected),
            self._from_model(statistic, expected - band),
            self._from_model(statistic, expected + band),
            float(scores.score[track]),
        )
        return event(
            episode, state, info.series, series_key, info.routing_key, self.resolution,
            start, end, verdict,
        )  # fmt: skip

    def _absences(self, index: int, step: DetectStep) -> None:
        cfg = self.config
        start, end = index * self.res, (index + 1) * self.res
        for key, info in self.series.items():
            gap = index - info.last_seen
            episode = self.absent.get(key)
            if episode is None and gap >= cfg.absence_windows and info.seen_windows >= cfg.warmup:
                began = (info.last_seen + 1) * self.res
                episode = Episode(
                    episode_id(key, "count", "absence", began),
                    "absence",
                    "count",
                    began,
                    "down",
                    "warning",
                    "absence",
                )
                self.absent[key] = episode
                step.events.append(self._absence_event(episode, "firing", key, start, end))
            elif episode is not None and (gap == 0 or gap >= cfg.forget_windows):
                del self.absent[key]
                step.events.append(self._absence_event(episode, "resolved", key, start, end))

    def _absence_event(
        self, episode: Episode, state: str, key: str, start: int, end: int
    ) -> Rollup:
        info = self.series[key]
        observed = None if state == "firing" else 1.0
        return event(
            episode, state, info.series, key, info.routing_key, self.resolution, start, end,
            Verdict(observed, 1.0, 1.0, 1.0, 1.0 if state == "firing" else 0.0),
        )  # fmt: skip

    def _forget(self, index: int) -> None:
        gone = [
            k
            for k, i in self.series.items()
            if index - i.last_seen >= self.config.forget_windows and k not in self.absent
        ]
        for key in gone:
            del self.series[key]  # its tracks stay allocated but get no more values

    # -- tracks ------------------------------------------------------------------------------

    def _series_info(self, rollup: WireRollup) -> SeriesInfo:
        info = self.series.get(rollup.series_key)
        if info is None:
            info = SeriesInfo(
                series_dict(rollup.series),
                f"{rollup.series.service}|{rollup.series.region}",
                last_seen=-1,
            )
            self.series[rollup.series_key] = info
        return info

    def _track(self, series_key: str, statistic: str) -> int:
        key = (series_key, statistic)
        track = self.tracks.get(key)
        if track is None:
            track = len(self._track_keys)
            self.tracks[key] = track
            self._track_keys.append(key)
            h, n = self.config.model.history, self.config.fire_n
            self._hist = np.vstack([self._hist, np.full((1, h), np.nan)])
            self._resid = np.vstack([self._resid, np.full((1, h), np.nan)])
            self._flags = np.vstack([self._flags, np.zeros((1, n), bool)])
            self._flag_window = np.vstack([self._flag_window, np.full((1, n), -(2**40))])
            self._normal_run = np.append(self._normal_run, 0)
            self._scored = np.append(self._scored, 0)
            direction = self.config.direction_of(statistic)
            self._may_go_up = np.append(self._may_go_up, direction in ("up", "both"))
            self._may_go_down = np.append(self._may_go_down, direction in ("down", "both"))
            self._profile.grow(len(self._track_keys))
        return track

    @staticmethod
    def _to_model(statistic: str, value: float) -> float:
        if statistic in NON_NEGATIVE or statistic.startswith("p"):
            return math.log1p(max(value, 0.0))
        return value

    @staticmethod
    def _from_model(statistic: str, value: float) -> float:
        if statistic in NON_NEGATIVE or statistic.startswith("p"):
            return math.expm1(min(value, 700.0))
        return value

    # -- idle partitions ---------------------------------------------------------------------

    def plan_idle_advance(self) -> bool:
        if not self._pending:
            return False
        new_max = max(self._pending) * self.res + self.res + self.config.allowed_lateness_ms
        return self.advances.plan(self.next_offset, new_max, self.max_ts)

    def apply_idle_advance(self) -> list[Rollup]:
        self.max_ts = self.advances.at(self.next_offset, self.max_ts)
        step = DetectStep()
        self._complete(step)
        return step.events

    # -- checkpoints -------------------------------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        if self._first:
            offset, max_ts = min(self._first.values())
        else:
            offset, max_ts = self.next_offset, self.max_ts
        self.advances.keep_from(offset)
        return Checkpoint(
            topic=self.topic,
            partition=self.partition,
            offset=offset,
            max_ts=max_ts,
            emitted_wm=self.emitted_wm,
            resolution_ms=self.res,
            allowed_lateness_ms=self.config.allowed_lateness_ms,
            counter_staleness_ms=0,
            advances=self.advances.to_json(),
            extra={"history_windows": self.config.history_windows(), **self._snapshot()},
        )

    def _snapshot(self) -> dict[str, Any]:
        """What replaying the history cannot rebuild, as of the last scored window."""
        if self._restored is not None:  # restored but not yet past the replayed history
            return self._restored
        flagged = [
            [*self._track_keys[t], self._flag_window[t][self._flags[t]].tolist()]
            for t in np.flatnonzero(self._flags.any(axis=1)).tolist()
        ]
        active = [
            [*self._track_keys[t], int(self._normal_run[t]), e.to_json(), self._info_json(t)]
            for t, e in sorted(self.active.items())
        ]
        absent = [[k, e.to_json(), self._series_json(k)] for k, e in sorted(self.absent.items())]
        return {"flagged": flagged, "active": active, "absent": absent}

    def _info_json(self, track: int) -> dict[str, Any]:
        return self._series_json(self._track_keys[track][0])

    def _series_json(self, key: str) -> dict[str, Any]:
        info = self.series[key]
        return {"series": info.series, "routing": info.routing_key, "last_seen": info.last_seen}

    def restore(self, checkpoint: Checkpoint) -> None:
        start = resume_point(
            checkpoint,
            (
                checkpoint.resolution_ms,
                checkpoint.allowed_lateness_ms,
                checkpoint.extra.get("history_windows"),
            ),
            (self.res, self.config.allowed_lateness_ms, self.config.history_windows()),
            "resolution/lateness/history windows",
        )
        self.max_ts, self.emitted_wm = start.max_ts, start.emitted_wm
        self.next_offset, self.advances = start.next_offset, IdleAdvances(start.advances)
        if self.emitted_wm > NO_TIME:
            # Replay the history from its first window, scoring nothing before emitted_wm.
            self._next_window = self.emitted_wm // self.res - self.config.history_windows()
            self._restored = {
                k: checkpoint.extra.get(k, []) for k in ("flagged", "active", "absent")
            }

    def _apply_snapshot(self, snapshot: dict[str, Any]) -> None:
        self._flags[:] = False
        for series_key, statistic, windows in snapshot["flagged"]:
            track = self._track(series_key, statistic)
            for w in windows:
                slot = w % self.config.fire_n
                self._flags[track, slot] = True
                self._flag_window[track, slot] = w
        self.active = {}
        for series_key, statistic, normal_run, episode, info in snapshot["active"]:
            self._ensure_series(series_key, info)
            track = self._track(series_key, statistic)
            self._normal_run[track] = normal_run
            self.active[track] = Episode.from_json(episode)
        self.absent = {}
        for series_key, episode, info in snapshot["absent"]:
            self._ensure_series(series_key, info)
            self.absent[series_key] = Episode.from_json(episode)

    def _ensure_series(self, key: str, info: dict[str, Any]) -> None:
        if key not in self.series:
            self.series[key] = SeriesInfo(
                info["series"], info["routing"], info["last_seen"], self.config.warmup
            )
