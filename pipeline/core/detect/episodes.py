"""How episodes end, and absences: level shifts after a sustained deviation, absence judged by
the series' own arrival rate, and series forgotten after a long silence (their open episodes
end as `expired`). Firing on a scored window is in detector.py, beside the scores."""

from __future__ import annotations

import math

import numpy as np

from pipeline.core.detect.config import DetectStep, SeriesInfo
from pipeline.core.detect.events import AnomalyRecord, Episode, Verdict, episode_id, event
from pipeline.core.detect.models import Scores
from pipeline.core.detect.noise import from_model
from pipeline.core.detect.parts import DetectorParts


class EpisodeEvents(DetectorParts):
    def _rebaseline(self, index: int, step: DetectStep) -> None:
        """Episodes that lasted `rebaseline_windows` end as level shifts, except outages."""
        limit = self.config.rebaseline_windows
        if limit <= 0:
            return
        st = self.state
        for track in np.flatnonzero(self.drift.held_run >= limit).tolist():
            if track not in self.active:
                # Held so long without an episode (a shift its direction may not fire): the
                # baseline takes the new level silently, as it would have without the hold.
                st.rebaseline(track)
                self.drift.reset(track)
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
            self.drift.reset(track)
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
    ) -> AnomalyRecord:
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
    ) -> AnomalyRecord:
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
    ) -> AnomalyRecord:
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
        for (key, _), track in self.tracks.items():
            if key in gone:
                self.drift.reset(track)
        for key in gone:
            del self.series[key]  # its tracks stay allocated but get no more values
