"""Episode-level quality of the detector against labelled intervals.

Definitions (windows are the detector's, 1 m by default):
- An episode is one episode id: from `started_at` (its first anomalous window) to the end of
  the window where it resolved, or to the end of the run if it never did. Episodes of every
  statistic and kind (deviation, absence) count; an episode belongs to its series (service).
- It is a true positive if it overlaps a label of its series widened by `grace` windows on
  each side, a false alarm otherwise.
- A label is detected if at least one episode overlaps it (same rule), missed otherwise.
- precision = true-positive episodes / episodes; recall = detected labels / labels;
  F1 = 2PR / (P + R). Undefined (None) where the denominator is 0.
- Detection delay of a detected label, in windows: the window of the first matching episode's
  `firing` event minus the window holding the label's start (0: it fired on the first
  anomalous window; 1 is the least 2-of-3 hysteresis allows). A matching episode that was
  already firing before the label began counts 0.
- False alarms per series per day: false-alarm episodes / (series × evaluated days).
- Coverage of a label: the share of its duration during which some episode of its series was
  open (firing); pooled as covered time / labelled time. An outage or shift that stays firing
  for as long as it lasts has coverage 1.
- Episodes that fire before the scenario's `evaluate_from_ms` (a learning period) are left out
  of all of the above and reported as `learning_alarms`.
- Suite figures pool the counts of every scenario (micro-averages), no-anomaly scenarios
  included (their episodes are all false alarms), and the median delay of every detected label.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from load.detect_scenarios import DAY, Label


@dataclass(frozen=True, slots=True)
class EpisodeSpan:
    episode_id: str
    series: str
    statistic: str
    kind: str
    started_at: int
    fired_at: int  # window_start of the firing event
    ended_at: int  # window_end of the resolved event, or the end of the run


def episode_spans(events: list[dict[str, Any]], end_ms: int) -> list[EpisodeSpan]:
    """One span per episode id, from its firing and (if any) resolved event."""
    firing: dict[str, dict[str, Any]] = {}
    resolved: dict[str, dict[str, Any]] = {}
    for e in events:
        (firing if e["state"] == "firing" else resolved)[e["episode_id"]] = e
    spans = [
        EpisodeSpan(
            eid,
            f["series"]["service"],
            f["statistic"],
            f["kind"],
            f["started_at"],
            f["window_start"],
            resolved[eid]["window_end"] if eid in resolved else end_ms,
        )
        for eid, f in firing.items()
    ]
    return sorted(spans, key=lambda s: (s.fired_at, s.series, s.statistic))


@dataclass(slots=True)
class Quality:
    series: int
    days: float  # evaluated days
    labels: int = 0
    detected: int = 0
    episodes: int = 0
    true_episodes: int = 0
    learning_alarms: int = 0
    delays: list[int] = field(default_factory=list)
    missed: list[dict[str, Any]] = field(default_factory=list)
    labelled_ms: int = 0
    covered_ms: int = 0
    detected_by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind → [found, all]

    @property
    def false_alarms(self) -> int:
        return self.episodes - self.true_episodes

    @property
    def precision(self) -> float | None:
        return self.true_episodes / self.episodes if self.episodes else None

    @property
    def recall(self) -> float | None:
        return self.detected / self.labels if self.labels else None

    @property
    def f1(self) -> float | None:
        return f1(self.precision, self.recall)

    @property
    def false_alarms_per_series_day(self) -> float:
        return self.false_alarms / (self.series * self.days)

    @property
    def coverage(self) -> float | None:
        return self.covered_ms / self.labelled_ms if self.labelled_ms else None

    @property
    def median_delay(self) -> float | None:
        return float(statistics.median(self.delays)) if self.delays else None

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        for name in ("precision", "recall", "f1", "false_alarms", "median_delay", "coverage"):
            doc[name] = getattr(self, name)
        doc["false_alarms_per_series_day"] = self.false_alarms_per_series_day
        return doc


def f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _overlaps(span: EpisodeSpan, label: Label, grace_ms: int) -> bool:
    return (
        span.series == label.series
        and span.started_at < label.end + grace_ms
        and span.ended_at > label.start - grace_ms
    )


def evaluate(
    spans: list[EpisodeSpan],
    labels: list[Label],
    series: int,
    start_ms: int,
    end_ms: int,
    evaluate_from_ms: int = 0,
    window_ms: int = 60_000,
    grace_windows: int = 5,
) -> Quality:
    """The quality figures of one scenario run (see the module docstring)."""
    begin = max(start_ms, evaluate_from_ms)
    quality = Quality(series, (end_ms - begin) / DAY)
    grace = grace_windows * window_ms
    judged = [s for s in spans if s.fired_at >= begin]
    quality.learning_alarms = len(spans) - len(judged)
    quality.episodes = len(judged)
    quality.true_episodes = sum(any(_overlaps(s, lb, grace) for lb in labels) for s in judged)
    for label in labels:
        quality.labelled_ms += label.end - label.start
        quality.covered_ms += covered(judged, label)
        kind = quality.detected_by_kind.setdefault(label.kind, [0, 0])
        kind[1] += 1
        matching = [s for s in judged if _overlaps(s, label, grace)]
        if not matching:
            quality.missed.append(
                {"series": label.series, "start": label.start, "kind": label.kind}
            )
            continue
        quality.detected += 1
        kind[0] += 1
        first = min(s.fired_at for s in matching)
        quality.delays.append(max(0, first // window_ms - label.start // window_ms))
    quality.labels = len(labels)
    return quality


def covered(spans: list[EpisodeSpan], label: Label) -> int:
    """Milliseconds of the label during which an episode of its series was open."""
    pieces = sorted(
        (max(s.started_at, label.start), min(s.ended_at, label.end))
        for s in spans
        if s.series == label.series and s.started_at < label.end and s.ended_at > label.start
    )
    total, reach = 0, label.start
    for a, b in pieces:
        a = max(a, reach)
        if b > a:
            total += b - a
            reach = b
    return total


def pooled(qualities: list[Quality]) -> dict[str, Any]:
    """Suite figures: counts summed over scenarios, the median of every delay."""
    episodes = sum(q.episodes for q in qualities)
    true_episodes = sum(q.true_episodes for q in qualities)
    labels = sum(q.labels for q in qualities)
    detected = sum(q.detected for q in qualities)
    precision = true_episodes / episodes if episodes else None
    recall = detected / labels if labels else None
    delays = [d for q in qualities for d in q.delays]
    labelled_ms = sum(q.labelled_ms for q in qualities)
    false_alarms = sum(q.false_alarms for q in qualities)
    series_days = sum(q.series * q.days for q in qualities)
    return {
        "episodes": episodes,
        "true_episodes": true_episodes,
        "labels": labels,
        "detected": detected,
        "precision": precision,
        "recall": recall,
        "f1": f1(precision, recall),
        "median_delay": float(statistics.median(delays)) if delays else None,
        "coverage": sum(q.covered_ms for q in qualities) / labelled_ms if labelled_ms else None,
        "false_alarms": false_alarms,
        "false_alarms_per_series_day": false_alarms / series_days if series_days else None,
    }
