"""Per-track state of the detector, one row per tracked (series, statistic), numpy throughout.

Two rings of `history` windows per track, by window index modulo `history`:
- recent: every window as it came (values, seasonal residuals, sampling noise) — the short-run
  test's past windows and, after a sustained shift, the new baseline;
- learnt: only windows outside the track's own episodes and outside a persistent shift (a
  CUSUM episode) of another value statistic of its series: the baseline. A window that is not
  learnt leaves its slot holding the older, normal value, so an incident that lasts never
  becomes its own baseline.

A replay after a restart rebuilds `recent` from the history it re-reads, but cannot know which
windows were not learnt; the tracks with such a window among the last `history` ("dirty") carry
their learnt rings in the checkpoint (`dirty_json` / `load_dirty`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

NEVER = -(2**40)


def _rows(array: np.ndarray, rows: int, fill: float) -> np.ndarray:
    extra = np.full((rows - array.shape[0], *array.shape[1:]), fill, array.dtype)
    return np.concatenate([array, extra])


class TrackState:
    def __init__(self, history: int, fire_n: int) -> None:
        self.h = history
        self.n = fire_n
        empty = np.empty((0, history))
        self.recent, self.recent_resid, self.recent_samp = empty, empty.copy(), empty.copy()
        self.learnt, self.learnt_resid, self.learnt_samp = empty.copy(), empty.copy(), empty.copy()
        self.last_skip = np.zeros(0, np.int64)  # last window not learnt
        self.flags = np.zeros((0, fire_n), bool)
        self.flag_window = np.zeros((0, fire_n), np.int64)
        self.normal_run = np.zeros(0, np.int64)
        self.scored = np.zeros(0, np.int64)  # windows with a value, capped at warmup
        self.may_go_up = np.zeros(0, bool)  # every test may fire up
        self.may_go_down = np.zeros(0, bool)  # every test may fire down
        self.drift_down = np.zeros(0, bool)  # the CUSUM may fire down (config.DIRECTION_MODES)
        self.series_of = np.zeros(0, np.int64)  # one number per series: its tracks share it

    def __len__(self) -> int:
        return len(self.normal_run)

    def add(self, series: int, up: bool, down: bool, drift_down: bool) -> int:
        rows = len(self) + 1
        for name in ("recent", "recent_resid", "recent_samp", "learnt", "learnt_resid"):
            setattr(self, name, _rows(getattr(self, name), rows, math.nan))
        self.learnt_samp = _rows(self.learnt_samp, rows, math.nan)
        self.last_skip = np.append(self.last_skip, NEVER)
        self.flags = _rows(self.flags, rows, False)
        self.flag_window = _rows(self.flag_window, rows, NEVER)
        self.normal_run = np.append(self.normal_run, 0)
        self.scored = np.append(self.scored, 0)
        self.may_go_up = np.append(self.may_go_up, up)
        self.may_go_down = np.append(self.may_go_down, down)
        self.drift_down = np.append(self.drift_down, drift_down)
        self.series_of = np.append(self.series_of, series)
        return rows - 1

    def past(self, index: int, windows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The recent rings' previous `windows` windows before `index` (oldest first)."""
        cols = [(index - k) % self.h for k in range(windows, 0, -1)]
        return self.recent[:, cols], self.recent_resid[:, cols], self.recent_samp[:, cols]

    def write(
        self, index: int, values: np.ndarray, resid: np.ndarray, samp: np.ndarray, learn: np.ndarray
    ) -> None:
        pos = index % self.h
        self.recent[:, pos] = values
        self.recent_resid[:, pos] = resid
        self.recent_samp[:, pos] = samp
        self.learnt[learn, pos] = values[learn]
        self.learnt_resid[learn, pos] = resid[learn]
        self.learnt_samp[learn, pos] = samp[learn]
        self.last_skip[~learn] = index

    def not_learning(self, active: list[int]) -> np.ndarray:
        """Every track of the series of the `active` tracks (the detector passes those with a
        persistent shift of a value statistic): such a shift moves the series' other statistics
        too (a ×1.3 latency shift the mean fired on lifts p99 a little); learnt by them, it
        would fire when the series returns to normal."""
        return np.isin(self.series_of, self.series_of[active])

    def rebaseline(self, track: int) -> None:
        """The recent windows become the baseline: the same as if every one had been learnt."""
        self.learnt[track] = self.recent[track]
        self.learnt_resid[track] = self.recent_resid[track]
        self.learnt_samp[track] = self.recent_samp[track]
        self.last_skip[track] = NEVER

    def dirty(self, index: int) -> list[int]:
        """Tracks with a window not learnt among the last `h` up to `index`."""
        return np.flatnonzero(self.last_skip > index - self.h).tolist()

    def dirty_json(self, track: int) -> list[Any]:
        rings = (self.learnt[track], self.learnt_resid[track], self.learnt_samp[track])
        as_lists = [[None if math.isnan(x) else x for x in ring.tolist()] for ring in rings]
        return [int(self.last_skip[track]), *as_lists]

    def load_dirty(self, track: int, doc: list[Any]) -> None:
        last_skip, learnt, resid, samp = doc
        self.last_skip[track] = last_skip
        for ring, values in ((self.learnt, learnt), (self.learnt_resid, resid),
                             (self.learnt_samp, samp)):  # fmt: skip
            ring[track] = [math.nan if x is None else x for x in values]
