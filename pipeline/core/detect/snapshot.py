"""The detector's checkpoint: where a replay must begin, and what the replayed history cannot
rebuild (hysteresis flags, open episodes, the baselines of tracks that skipped windows, each
track's long past for onsets), as of the last scored window."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.core.checkpoint import Checkpoint
from pipeline.core.detect.config import NO_TIME, SeriesInfo
from pipeline.core.detect.events import Episode
from pipeline.core.detect.parts import DetectorParts


class Checkpointing(DetectorParts):
    def checkpoint(self) -> Checkpoint:
        offset, clock = self.clock.snapshot(min(self._first.values()) if self._first else None)
        return Checkpoint(
            self.topic, self.partition, offset, clock, self._fingerprint(), self._snapshot()
        )

    def _fingerprint(self) -> dict[str, int]:
        return {
            "resolution_ms": self.res,
            "allowed_lateness_ms": self.config.allowed_lateness_ms,
            "history_windows": self.config.history_windows(),
        }

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
        last = self.clock.emitted_wm // self.res - 1
        dirty = [[*self._track_keys[t], st.dirty_json(t)] for t in st.dirty(last)]
        novelty = [
            [*self._track_keys[t], self.novelty.row_json(t)] for t in self.novelty.tracks_seen()
        ]
        drift = [[*self._track_keys[t], self.drift.row_json(t)] for t in self.drift.tracks_seen()]
        return {
            "drift": drift,
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
        checkpoint.require(self._fingerprint(), "resolution/lateness/history windows")
        self.clock.restore(checkpoint.offset, checkpoint.clock)
        emitted_wm = self.clock.emitted_wm
        if emitted_wm > NO_TIME:
            # Replay the history from its first window, scoring nothing before emitted_wm.
            self._next_window = emitted_wm // self.res - self.config.history_windows()
            self._restored = {
                k: checkpoint.state.get(k, [])
                for k in ("flagged", "active", "absent", "dirty", "novelty", "drift")
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
        self.drift.up[:] = 0.0
        self.drift.down[:] = 0.0
        self.drift.held_run[:] = 0
        for series_key, statistic, row in snapshot["drift"]:  # absent before drift existed
            self.drift.load_row(self._track(series_key, statistic), row)

    def _ensure_series(self, key: str, info: dict[str, Any]) -> None:
        if key not in self.series:
            self.series[key] = SeriesInfo(
                info["series"], info["routing"], info["last_seen"], self.config.warmup
            )
            self._presence_slot(self.series[key])
