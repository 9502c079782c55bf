"""One rollup partition's detector: rollups of one tier in, anomaly episode events out.

Time is event time, as in the tiers: a window is complete once the latest rollup window start
seen, minus `allowed_lateness`, reaches its end; complete windows are scored in order, every
window, for every tracked (series, statistic) at once (numpy). A series that reports nothing in
a complete window has a gap there; `absence_windows` gaps in a row after warm-up fire an absence
episode.

Each window brings, per track, its value and its own sampling noise (noise.py); the models
(models.py) score it against a baseline learnt only from windows outside episodes (tracks.py);
novelty.py asks whether it is new to the track's long past (an onset).

Hysteresis: a track fires when `fire_k` of its last `fire_n` windows were anomalous (score ≥ 1),
or at once on an onset, and resolves after `resolve_m` windows in a row back to normal (score <
`resolve_score`) — for an episode an onset began, also back inside the long past it broke;
one episode id per incident, derived from the series, statistic and the window
the incident began in, so a replay emits the same ids. An episode that lasts
`rebaseline_windows` is a level shift: unless it is an outage (a count down to zero), its recent
windows become the baseline and the episode ends with `ended_by: level_shift` — a statement,
not a silent resolve (episodes.py). A series silent for `forget_windows` is forgotten; its open
episodes end with `ended_by: expired`.

Absence: a series' gap is judged against its own arrival rate — a series present in a fraction
f of its recent windows fires after max(`absence_windows`, log(`absence_p`) / log(1 − f))
empty windows in a row, so a series with a sample or two a minute is not "absent" every time
it has a few empty minutes.

Replay: the checkpoint's offset is where the history of the windows still needed begins
(`history` windows before the last scored one, `seasonal_days` days for seasonal models); the
state that history cannot rebuild — hysteresis flags, open episodes, the baselines of tracks
that skipped windows lately, each track's long past for onsets — is in the checkpoint as it
stood after the last scored window (snapshot.py). A restored detector replays the history
without scoring it, then scores from where it stopped.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np

from pipeline.core.clock import PartitionClock
from pipeline.core.detect.config import (
    VOLUME_STATISTICS,
    DetectConfig,
    DetectStep,
    SeriesInfo,
)
from pipeline.core.detect.drift import Drift
from pipeline.core.detect.episodes import EpisodeEvents
from pipeline.core.detect.events import AnomalyRecord, Episode, episode_id
from pipeline.core.detect.models import Baseline, Scores, SeasonalProfile, Window, score_window
from pipeline.core.detect.noise import (
    from_model,
    sample_spread,
    sampling_sd,
    statistic_value,
    to_model,
)
from pipeline.core.detect.novelty import Novelty
from pipeline.core.detect.snapshot import Checkpointing
from pipeline.core.detect.tracks import TrackState
from pipeline.core.durations import format_duration
from pipeline.core.rollup_wire import WireRollup, series_dict

__all__ = ["DetectConfig", "DetectStep", "PartitionDetector"]


class PartitionDetector(EpisodeEvents, Checkpointing):
    def __init__(self, topic: str, partition: int, config: DetectConfig) -> None:
        self.topic = topic
        self.partition = partition
        self.config = config
        self.res = config.resolution_ms
        self.window_s = self.res / 1000.0
        self.resolution = format_duration(self.res)
        # Its event time is the latest rollup window start seen; every window ending at or
        # before its emitted watermark was scored.
        self.clock = PartitionClock(lateness_ms=config.allowed_lateness_ms)
        self._next_window: int | None = None  # index of the next window to complete
        self._pending: dict[int, list[WireRollup]] = {}  # window index → its rollups
        self._first: dict[int, tuple[int, int]] = {}  # window index → (first offset, max_ts)
        self._first_heap: list[int] = []  # the keys of _first, to drop the old ones cheaply
        self.series: dict[str, SeriesInfo] = {}
        self.tracks: dict[tuple[str, str], int] = {}
        self._track_keys: list[tuple[str, str]] = []
        self._series_numbers: dict[str, int] = {}
        self.state = TrackState(config.model.history, config.fire_n)
        self.novelty = Novelty(config.novelty)
        self.drift = Drift(config.drift)
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
        return self.clock.watermark

    @property
    def emitted_wm(self) -> int:
        return self.clock.emitted_wm

    @property
    def open_windows(self) -> int:
        return len(self._pending)

    @property
    def next_offset(self) -> int:
        return self.clock.next_offset

    # -- input ------------------------------------------------------------------------------

    def process(self, rollups: list[tuple[int, WireRollup]], end_offset: int) -> DetectStep:
        """Rollups of this partition, (offset, rollup) in order, up to `end_offset`."""
        step = DetectStep()
        for offset, rollup in self.clock.records(rollups, end_offset, lambda: self._complete(step)):
            if rollup.window_start + self.res <= self.watermark:
                step.late.append((offset, rollup))
            else:
                index = rollup.window_start // self.res
                if self._next_window is None:
                    self._next_window = index
                self._pending.setdefault(index, []).append(rollup)
                if index not in self._first:
                    self._first[index] = (offset, self.clock.max_ts)
                    heapq.heappush(self._first_heap, index)
            self.clock.observe(rollup.window_start)
            self._complete(step)
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
        units: dict[int, tuple[float, float]] = {}
        noise: dict[int, float] = {}
        spreads: dict[int, float] = {}
        counts: dict[int, int] = {}
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
                noise[track] = sampling_sd(statistic, rollup, value)
                spreads[track] = sample_spread(statistic, rollup)
                counts[track] = rollup.count
                # The value and its sampling noise in its own unit (the envelope's scale), at
                # least what its sample count implies for this track (a sparse window's
                # digest cannot show it).
                least = self.novelty.noise_floor(track, rollup.count)
                noisy = values[track] + max(noise[track], least)
                units[track] = (value, from_model(statistic, noisy, self.window_s) - value)
        scoring = start + self.res > self.clock.emitted_wm
        if scoring and self._restored is not None:
            self._apply_snapshot(self._restored)
            self._restored = None
        tracks = len(self.state)
        x = np.full(tracks, np.nan)
        samp = np.zeros(tracks)
        x[list(values)] = list(values.values())
        unit, unit_noise = np.full(tracks, np.nan), np.zeros(tracks)
        if units:
            unit[list(units)], unit_noise[list(units)] = zip(*units.values(), strict=True)
        z = np.full(tracks, np.nan)
        samp[list(noise)] = list(noise.values())
        level = self._profile.level(start)
        learn = np.ones(tracks, bool)
        if scoring:
            samples = np.zeros(tracks)
            samples[list(counts)] = list(counts.values())
            learn, z = self._score(index, x, unit, unit_noise, samp, level, samples, step)
            self._absences(index, step)
            self.clock.emit_until(start + self.res)
        self.state.write(index, x, x - level, samp, learn)
        self._presence[:, index % self.config.model.history] = False
        self._presence[present, index % self.config.model.history] = True
        self._profile.add(start, x)
        if self.config.novelty.enabled:
            spread = np.full(tracks, np.nan)
            spread[list(spreads)] = list(spreads.values())
            self.novelty.learn(unit, z, spread)
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
        unit_noise: np.ndarray,
        samp: np.ndarray,
        level: np.ndarray,
        samples: np.ndarray,
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
            onset, beyond_high = self.novelty.onset(index, unit, unit_noise, z)
            with np.errstate(invalid="ignore"):
                onset_up = beyond_high | (up & ~(unit < self.novelty.low))
            onset = np.where(np.where(onset_up, st.may_go_up, st.may_go_down), onset, 0.0)
        drifting, drift_up = self._drift(values, scores, samples)
        self._scored_window(index, values, scores, onset)
        seen = ~np.isnan(values)
        slot = index % cfg.fire_n
        st.flags[:, slot] = anomalous
        st.flag_window[:, slot] = index
        recent_flags = st.flags & (st.flag_window > index - cfg.fire_n)
        count = recent_flags.sum(axis=1)
        with np.errstate(invalid="ignore"):
            calm = seen & (scores.score < cfg.resolve_score) & ~self._still_beyond(unit)
        held_up, held_down = self.drift.holding()
        held_up &= st.may_go_up  # a direction the CUSUM cannot fire is learnt as before
        held_down &= st.drift_down
        still_held = self._held(held_up, held_down)
        # Back to normal = well inside the band, not merely under the threshold: an episode of
        # a shift that hovers around the threshold stays open instead of flapping.
        st.normal_run = np.where(calm, st.normal_run + 1, np.where(seen, 0, st.normal_run))
        start, end = index * self.res, (index + 1) * self.res
        deviating = anomalous & (count >= cfg.fire_k)
        fire = deviating | (onset >= 1.0) | drifting
        for track in np.flatnonzero(fire).tolist():
            if track in self.active:
                continue
            series_key, statistic = self._track_keys[track]
            if deviating[track]:
                began = int(st.flag_window[track][recent_flags[track]].min())
                method = "seasonal" if scores.seasonal[track] else "robust"
                score, direction = float(scores.score[track]), bool(up[track])
                beyond = None
            elif onset[track] < 1.0:
                began, method = index, "cusum"
                score, direction = float(scores.score[track]), bool(drift_up[track])
                beyond = None
            else:
                began, method = index, "onset"
                score, direction = float(onset[track]), bool(onset_up[track])
                beyond = self.novelty.holding_edge(track, direction)  # before it learns
            episode = Episode(
                episode_id(series_key, statistic, "deviation", began * self.res),
                "deviation",
                statistic,
                began * self.res,
                "up" if direction else "down",
                "critical" if score >= cfg.critical_score else "warning",
                method,
                beyond,
            )
            self.active[track] = episode
            st.normal_run[track] = 0
            step.events.append(self._event(episode, "firing", track, start, end, values, scores))
        if cfg.novelty.enabled:
            self.novelty.fired(np.flatnonzero(onset >= 1.0).tolist(), index)
        # Back to normal, and no longer accumulating the shift it fired for (drift.py).
        back = [t for t in self.active if st.normal_run[t] >= cfg.resolve_m and not still_held[t]]
        for track in back:
            episode = self.active.pop(track)
            step.events.append(self._event(episode, "resolved", track, start, end, values, scores))
        # Isolated anomalies are learnt (a heavy tail); an incident is not (tracks.py). A
        # persistent shift of a latency statistic (fired by its CUSUM) holds the series' other
        # statistics too: a mean dropping or rising ×1.3 moves p99 a little, and p99, had it
        # learnt that, would fire when the series returns to normal. Nothing else spreads: a
        # stop, a traffic change or one odd window of a sparse series is not such a shift.
        spreading = [t for t, e in self.active.items() if e.detector == "cusum"
                     and e.statistic not in VOLUME_STATISTICS]  # fmt: skip
        learn = ~st.not_learning(spreading)
        learn[list(self.active)] = False
        learn[held_up | held_down] = False  # a suspected shift is not learnt before it is judged
        return learn, z

    def _drift(
        self, values: np.ndarray, scores: Scores, samples: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Updates the CUSUM of each track's window deviations (drift.py); returns which tracks
        it fires, and in which direction (True: up)."""
        cfg, st = self.config, self.state
        if not cfg.drift.enabled:
            none = np.zeros(len(values), bool)
            return none, none
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (values - scores.expected) * cfg.model.threshold / scores.band
        z = np.where((st.scored >= cfg.warmup) & (samples >= cfg.drift.min_count), z, np.nan)
        self.drift.update(z)
        fires, up = self.drift.fired()
        allowed = np.where(up, st.may_go_up, st.drift_down)
        return fires & allowed & ~np.isnan(values), up  # fires on a window with a value

    def _held(self, held_up: np.ndarray, held_down: np.ndarray) -> np.ndarray:
        """Tracks whose open episode's direction still has its CUSUM side held."""
        out = np.zeros(len(held_up), bool)
        for track, episode in self.active.items():
            out[track] = held_up[track] if episode.direction == "up" else held_down[track]
        return out

    def _still_beyond(self, unit: np.ndarray) -> np.ndarray:
        """Tracks whose onset episode's value is still beyond the edge of the long past it
        broke: a drift that the last hour's baseline has followed is still new, and its
        episode stays open until the value comes back (or the level-shift rule ends it)."""
        out = np.zeros(len(unit), bool)
        for track, episode in self.active.items():
            if episode.beyond is not None:
                up = episode.direction == "up"
                value = unit[track]
                out[track] = value > episode.beyond if up else value < episode.beyond
        return out

    def _scored_window(
        self, index: int, values: np.ndarray, scores: Scores, onset: np.ndarray
    ) -> None:
        """A hook for tracing (the benchmark's plots); the detector itself needs nothing here."""

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
            series = self._series_numbers.setdefault(series_key, len(self._series_numbers))
            track = self.state.add(series, *self.config.may_fire(statistic))
            self.tracks[key] = track
            self._track_keys.append(key)
            self._profile.grow(len(self._track_keys))
            self.novelty.grow(len(self._track_keys))
            self.drift.grow(len(self._track_keys))
        return track

    # -- idle partitions ---------------------------------------------------------------------

    def plan_idle_advance(self) -> bool:
        if not self._pending:
            return False
        new_max = max(self._pending) * self.res + self.res + self.config.allowed_lateness_ms
        return self.clock.plan_idle_advance(new_max)

    def apply_idle_advance(self) -> list[AnomalyRecord]:
        self.clock.apply_idle_advance()
        step = DetectStep()
        self._complete(step)
        return step.events
