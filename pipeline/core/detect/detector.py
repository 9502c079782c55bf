"""One rollup partition's detector: rollups of one tier in, anomaly episode events out.

Time is event time, as in the tiers: a window is complete once the latest rollup window start
seen, minus `allowed_lateness`, reaches its end; complete windows are scored in order, every
window, for every tracked (series, statistic) at once (numpy). A series that reports nothing in
a complete window has a gap there; `absence_windows` gaps in a row after warm-up fire an absence
episode.

Each window brings, per track, its value and its own sampling noise (noise.py); the models
(models.py) score it against a baseline learnt only from windows outside episodes (tracks.py).

Hysteresis: a track fires when `fire_k` of its last `fire_n` windows were anomalous (score ≥ 1)
and resolves after `resolve_m` windows in a row back to normal (score < `resolve_score`); one
episode id per incident, derived from the series, statistic and the window the incident began
in, so a replay emits the same ids. An episode that
lasts `rebaseline_windows` is a level shift: unless it is an outage (a count down to zero), its
recent windows become the baseline and the episode ends with `ended_by: level_shift` — a
statement, not a silent resolve. A series silent for `forget_windows` is forgotten; its open
episodes end with `ended_by: expired`.

Absence: a series' gap is judged against its own arrival rate — a series present in a fraction
f of its recent windows fires after max(`absence_windows`, log(`absence_p`) / log(1 − f))
empty windows in a row, so a series with a sample or two a minute is not "absent" every time
it has a few empty minutes.

Replay: the checkpoint's offset is where the history of the windows still needed
begins (`history` windows before the last scored one, `seasonal_days` days for seasonal models);
the state that history cannot rebuild — hysteresis flags, open episodes, the baselines of tracks
that skipped windows lately — is in the checkpoint
as it stood after the last scored window. A restored detector replays the history without
scoring it, then scores from where it stopped.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.core.advances import IdleAdvances
from pipeline.core.checkpoint import Checkpoint, resume_point
from pipeline.core.detect.events import Episode, Verdict, episode_id, event
from pipeline.core.detect.models import (
    Baseline,
    ModelConfig,
    Scores,
    SeasonalProfile,
    Window,
    score_window,
)
from pipeline.core.detect.noise import from_model, sampling_sd, statistic_value, to_model
from pipeline.core.detect.novelty import Novelty, NoveltyConfig
from pipeline.core.detect.tracks import TrackState
from pipeline.core.rollup import Rollup, format_duration
from pipeline.core.rollup_wire import WireRollup, series_dict

NO_TIME = -(2**62)
DEFAULT_DIRECTIONS = {"rate": "both", "count": "both", "sum": "both", "min": "both"}


@dataclass(frozen=True, slots=True)
class DetectConfig:
    resolution_ms: int = 60_000
    allowed_lateness_ms: int = 60_000
    statistics: tuple[str, ...] = ("p99", "mean", "rate")
    statistics_by_name: dict[str, tuple[str, ...]] = field(default_factory=dict)
    directions: dict[str, str] = field(default_factory=dict)  # statistic → up | down | both
    model: ModelConfig = field(default_factory=ModelConfig)
    novelty: NoveltyConfig = field(default_factory=NoveltyConfig)
    warmup: int = 30  # scored windows with a value before a track can fire
    fire_k: int = 2
    fire_n: int = 3
    resolve_m: int = 3
    resolve_score: float = 0.5  # a window is back to normal below this score
    critical_score: float = 2.0
    absence_windows: int = 3  # the least gap that can fire an absence
    absence_p: float = 1e-5  # chance of so long a gap by the series' own arrival rate
    rebaseline_windows: int = 180  # an episode this long is a level shift (0: never)
    forget_windows: int = 1_440  # stop tracking (and end its episodes) after this many gaps

    def __post_init__(self) -> None:
        if not 1 <= self.fire_k <= self.fire_n or self.resolve_m < 1:
            raise ValueError("need 1 <= fire_k <= fire_n and resolve_m >= 1")
        if self.warmup > self.model.history:
            raise ValueError("warmup cannot exceed the robust history")
        if not 0.0 < self.absence_p < 1.0:
            raise ValueError("absence_p must be in (0, 1)")

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
    slot: int = -1  # row of the presence ring


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
        self.window_s = self.res / 1000.0
        self.resolution = format_duration(self.res)
        self.max_ts = NO_TIME  # latest rollup window start seen
        self.emitted_wm = NO_TIME  # every window ending at or before it was scored
        self.next_offset = 0
        self.advances = IdleAdvances()
        self._next_window: int | None = None  # index of the next window to complete
        self._pending: dict[int, list[WireRollup]] = {}  # window index → its rollups
        self._first: dict[int, tuple[int, int]] = {}  # window index → (first offset, max_ts)
        self._first_heap: list[int] = []  # the keys of _first, to drop the old ones cheaply
        self.series: dict[str, SeriesInfo] = {}
        self.tracks: dict[tuple[str, str], int] = {}
        self._track_keys: list[tuple[str, str]] = []
        self.state = TrackState(config.model.history, config.fire_n)
        self.novelty = Novelty(config.novelty)
        self._presence = np.zeros((0, config.model.history), bool)  # series slot × window
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
                if index not in self._first:
                    self._first[index] = (offset, self.max_ts)
                    heapq.heappush(self._first_heap, index)
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
        horizon = self._next_window - self.config.history_windows()
        while self._first_heap and self._first_heap[0] < horizon:
            del self._first[heapq.heappop(self._first_heap)]

    # -- one complete window ----------------------------------------------------------------

    def _window(self, index: int, rollups: list[WireRollup], step: DetectStep) -> None:
        start = index * self.res
        values: dict[int, float] = {}
        units: dict[int, float] = {}
        noise: dict[int, float] = {}
        present: list[int] = []
        for rollup in rollups:
            info = self._series_info(rollup)
            info.last_seen = index
            info.seen_windows += 1
            present.append(info.slot)
            for statistic in self.config.statistics_of(rollup.series.name):
                if statistic == "mean" and rollup.series.type == "counter":
                    continue  # a counter's mean (events per report) repeats its rate
                value = statistic_value(rollup, statistic)
                if not math.isfinite(value):
                    continue
                track = self._track(rollup.series_key, statistic)
                values[track] = to_model(statistic, value, self.window_s)
                units[track] = value
                noise[track] = sampling_sd(statistic, rollup, value)
        scoring = start + self.res > self.emitted_wm
        if scoring and self._restored is not None:
            self._apply_snapshot(self._restored)
            self._restored = None
        tracks = len(self.state)
        x = np.full(tracks, np.nan)
        samp = np.zeros(tracks)
        x[list(values)] = list(values.values())
        unit = np.full(tracks, np.nan)
        unit[list(units)] = list(units.values())
        z = np.full(tracks, np.nan)
        samp[list(noise)] = list(noise.values())
        level = self._profile.level(start)
        learn = np.ones(tracks, bool)
        if scoring:
            learn, z = self._score(index, x, unit, samp, level, step)
            self._absences(index, step)
            self.emitted_wm = start + self.res
        self.state.write(index, x, x - level, samp, learn)
        self._presence[:, index % self.config.model.history] = False
        self._presence[present, index % self.config.model.history] = True
        self._profile.add(start, x)
        self.novelty.learn(unit, z)
        self.state.scored += ~np.isnan(x)
        np.minimum(self.state.scored, self.config.warmup, out=self.state.scored)
        if scoring:
            self._rebaseline(index, step)
        self._forget(index, step)

    def _score(
        self,
        index: int,
        values: np.ndarray,
        unit: np.ndarray,
        samp: np.ndarray,
        level: np.ndarray,
        step: DetectStep,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores the window, fires and resolves episodes; returns which tracks may learn it
        and each track's deviation z (model scale, NaN where none)."""
        cfg, st = self.config, self.state
        if self._profile_day != self._profile.day or len(self._days_known) != len(values):
            # The profile's statistics change once a day (or when tracks are added).
            self._profile_day = self._profile.day
            self._days_known = self._profile.days_known()
            self._daily_range = self._profile.daily_range()
        recent, recent_resid, recent_samp = st.past(index, cfg.model.short_run - 1)
        scores = score_window(
            Window(values, samp, recent, recent_resid, recent_samp),
            Baseline(st.learnt, st.learnt_resid, st.learnt_samp, level, self._days_known,
                     self._daily_range),
            cfg.model,
        )  # fmt: skip
        z = scores.score * cfg.model.threshold
        up = values > scores.expected
        allowed = np.where(up, st.may_go_up, st.may_go_down)
        with np.errstate(invalid="ignore"):
            anomalous = (scores.score >= 1.0) & allowed & (st.scored >= cfg.warmup)
        onset, onset_up = np.zeros(len(values)), up
        if cfg.novelty.enabled:
            onset, beyond_high = self.novelty.onset(index, unit, z)
            with np.errstate(invalid="ignore"):
                onset_up = beyond_high | (up & ~(unit < self.novelty.low))
            onset = np.where(np.where(onset_up, st.may_go_up, st.may_go_down), onset, 0.0)
        self._scored_window(index, values, scores, onset)
        seen = ~np.isnan(values)
        slot = index % cfg.fire_n
        st.flags[:, slot] = anomalous
        st.flag_window[:, slot] = index
        recent_flags = st.flags & (st.flag_window > index - cfg.fire_n)
        count = recent_flags.sum(axis=1)
        with np.errstate(invalid="ignore"):
            calm = seen & (scores.score < cfg.resolve_score)
        # Back to normal = well inside the band, not merely under the threshold: an episode of
        # a shift that hovers around the threshold stays open instead of flapping.
        st.normal_run = np.where(calm, st.normal_run + 1, np.where(seen, 0, st.normal_run))
        start, end = index * self.res, (index + 1) * self.res
        deviating = anomalous & (count >= cfg.fire_k)
        fire = deviating | (onset >= 1.0)
        for track in np.flatnonzero(fire).tolist():
            if track in self.active:
                continue
            series_key, statistic = self._track_keys[track]
            if deviating[track]:
                began = int(st.flag_window[track][recent_flags[track]].min())
                method = "seasonal" if scores.seasonal[track] else "robust"
                score, direction = float(scores.score[track]), bool(up[track])
            else:
                began, method = index, "onset"
                score, direction = float(onset[track]), bool(onset_up[track])
            episode = Episode(
                episode_id(series_key, statistic, "deviation", began * self.res),
                "deviation",
                statistic,
                began * self.res,
                "up" if direction else "down",
                "critical" if score >= cfg.critical_score else "warning",
                method,
            )
            self.active[track] = episode
            st.normal_run[track] = 0
            step.events.append(self._event(episode, "firing", track, start, end, values, scores))
        if cfg.novelty.enabled:
            self.novelty.fired(np.flatnonzero(onset >= 1.0).tolist(), index)
        for track in [t for t in self.active if st.normal_run[t] >= cfg.resolve_m]:
            episode = self.active.pop(track)
            step.events.append(self._event(episode, "resolved", track, start, end, values, scores))
        learn = np.ones(len(values), bool)  # isolated anomalies too: a heavy tail is learnt
        learn[list(self.active)] = False
        return learn, z

    def _scored_window(
        self, index: int, values: np.ndarray, scores: Scores, onset: np.ndarray
    ) -> None:
        """A hook for tracing (the benchmark's plots); the detector itself needs nothing here."""

    def _rebaseline(self, index: int, step: DetectStep) -> None:
        """Episodes that lasted `rebaseline_windows` end as level shifts, except outages."""
        limit = self.config.rebaseline_windows
        if limit <= 0:
            return
        st = self.state
        for track, episode in sorted(self.active.items()):
            if index + 1 - episode.started_at // self.res < limit:
                continue
            statistic = self._track_keys[track][1]
            level = (
                float(np.nanmedian(st.recent[track]))
                if np.isfinite(st.recent[track]).any()
                else math.nan
            )
            if not math.isfinite(level) or from_model(statistic, level, self.window_s) <= 0.0:
                continue  # down to nothing, or nothing seen: an outage, not a new level
            old = float(np.nanmedian(st.learnt[track]))
            del self.active[track]
            st.rebaseline(track)
            st.normal_run[track] = 0
            st.flags[track] = False
            verdict = self._verdict(statistic, level, old, 0.0, abs(level - old))
            step.events.append(
                self._emit(episode, "resolved", track, index, verdict, "level_shift")
            )

    def _event(
        self,
        episode: Episode,
        state: str,
        track: int,
        start: int,
        end: int,
        values: np.ndarray,
        scores: Scores,
    ) -> Rollup:
        statistic = self._track_keys[track][1]
        verdict = self._verdict(
            statistic, float(values[track]), float(scores.expected[track]),
            float(scores.band[track]), float(scores.score[track]),
        )  # fmt: skip
        ended_by = "recovered" if state == "resolved" else None
        return self._emit(episode, state, track, start // self.res, verdict, ended_by)

    def _verdict(
        self, statistic: str, observed: float, expected: float, band: float, score: float
    ) -> Verdict:
        def unit(x: float) -> float:
            return from_model(statistic, x, self.window_s)

        return Verdict(
            unit(observed), unit(expected), unit(expected - band), unit(expected + band), score
        )

    def _emit(
        self,
        episode: Episode,
        state: str,
        track: int,
        index: int,
        verdict: Verdict,
        ended_by: str | None,
    ) -> Rollup:
        series_key = self._track_keys[track][0]
        info = self.series[series_key]
        start = index * self.res
        return event(
            episode, state, info.series, series_key, info.routing_key, self.resolution,
            start, start + self.res, verdict, ended_by,
        )  # fmt: skip

    def _absences(self, index: int, step: DetectStep) -> None:
        cfg = self.config
        start, end = index * self.res, (index + 1) * self.res
        for key, info in self.series.items():
            gap = index - info.last_seen
            episode = self.absent.get(key)
            if (
                episode is None
                and gap >= cfg.absence_windows
                and info.seen_windows >= cfg.warmup
                and gap >= self._absence_gap(info, gap)
            ):
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
                ended_by = "recovered" if gap == 0 else "expired"
                step.events.append(
                    self._absence_event(episode, "resolved", key, start, end, ended_by)
                )

    def _absence_gap(self, info: SeriesInfo, gap: int) -> float:
        """Empty windows in a row that the series' own arrival rate makes unlikely enough."""
        history = self.config.model.history
        before = history - min(gap, history)  # windows of the presence ring before the gap
        if before < 10:
            return 0.0  # too long a gap to judge by the ring: it is long enough
        present = int(self._presence[info.slot].sum())
        empty_share = 1.0 - present / before
        if empty_share <= 0.0:
            return 0.0
        return math.log(self.config.absence_p) / math.log(min(empty_share, 0.99))

    def _absence_event(
        self,
        episode: Episode,
        state: str,
        key: str,
        start: int,
        end: int,
        ended_by: str | None = None,
    ) -> Rollup:
        info = self.series[key]
        observed = None if state == "firing" else 1.0
        return event(
            episode, state, info.series, key, info.routing_key, self.resolution, start, end,
            Verdict(observed, 1.0, 1.0, 1.0, 1.0 if state == "firing" else 0.0), ended_by,
        )  # fmt: skip

    def _forget(self, index: int, step: DetectStep) -> None:
        gone = [
            k
            for k, i in self.series.items()
            if index - i.last_seen >= self.config.forget_windows and k not in self.absent
        ]
        if not gone:
            return
        for track in sorted(t for t in self.active if self._track_keys[t][0] in gone):
            # Silent for so long that its open episodes are over: they end here, stating why.
            episode = self.active.pop(track)
            statistic = self._track_keys[track][1]
            learnt = self.state.learnt[track]
            expected = float(np.nanmedian(learnt)) if np.isfinite(learnt).any() else 0.0
            verdict = self._verdict(statistic, expected, expected, 0.0, 0.0)
            step.events.append(self._emit(episode, "resolved", track, index, verdict, "expired"))
            self.state.flags[track] = False
            self.state.normal_run[track] = 0
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
        self._presence_slot(info)
        return info

    def _presence_slot(self, info: SeriesInfo) -> None:
        if info.slot < 0:
            info.slot = len(self._presence)
            self._presence = np.vstack(
                [self._presence, np.zeros((1, self.config.model.history), bool)]
            )

    def _track(self, series_key: str, statistic: str) -> int:
        key = (series_key, statistic)
        track = self.tracks.get(key)
        if track is None:
            direction = self.config.direction_of(statistic)
            track = self.state.add(direction in ("up", "both"), direction in ("down", "both"))
            self.tracks[key] = track
            self._track_keys.append(key)
            self._profile.grow(len(self._track_keys))
            self.novelty.grow(len(self._track_keys))
        return track

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
        st = self.state
        flagged = [
            [*self._track_keys[t], st.flag_window[t][st.flags[t]].tolist()]
            for t in np.flatnonzero(st.flags.any(axis=1)).tolist()
        ]
        active = [
            [*self._track_keys[t], int(st.normal_run[t]), e.to_json(), self._info_json(t)]
            for t, e in sorted(self.active.items())
        ]
        absent = [[k, e.to_json(), self._series_json(k)] for k, e in sorted(self.absent.items())]
        last = self.emitted_wm // self.res - 1
        dirty = [[*self._track_keys[t], st.dirty_json(t)] for t in st.dirty(last)]
        novelty = [
            [*self._track_keys[t], self.novelty.row_json(t)] for t in self.novelty.tracks_seen()
        ]
        return {
            "flagged": flagged,
            "active": active,
            "absent": absent,
            "dirty": dirty,
            "novelty": novelty,
        }

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
                k: checkpoint.extra.get(k, [])
                for k in ("flagged", "active", "absent", "dirty", "novelty")
            }

    def _apply_snapshot(self, snapshot: dict[str, Any]) -> None:
        st = self.state
        st.flags[:] = False
        for series_key, statistic, windows in snapshot["flagged"]:
            track = self._track(series_key, statistic)
            for w in windows:
                slot = w % self.config.fire_n
                st.flags[track, slot] = True
                st.flag_window[track, slot] = w
        self.active = {}
        for series_key, statistic, normal_run, episode, info in snapshot["active"]:
            self._ensure_series(series_key, info)
            track = self._track(series_key, statistic)
            st.normal_run[track] = normal_run
            self.active[track] = Episode.from_json(episode)
        self.absent = {}
        for series_key, episode, info in snapshot["absent"]:
            self._ensure_series(series_key, info)
            self.absent[series_key] = Episode.from_json(episode)
        for series_key, statistic, rings in snapshot["dirty"]:
            st.load_dirty(self._track(series_key, statistic), rings)
        self.novelty.reset()
        for series_key, statistic, row in snapshot["novelty"]:
            self.novelty.load_row(self._track(series_key, statistic), row)

    def _ensure_series(self, key: str, info: dict[str, Any]) -> None:
        if key not in self.series:
            self.series[key] = SeriesInfo(
                info["series"], info["routing"], info["last_seen"], self.config.warmup
            )
            self._presence_slot(self.series[key])
