"""The detector benchmark: its scoring on hand-made answers, a tiny scenario through the real
pipeline with a known answer, and the quick suite end to end (JSON, PNGs, consistent figures)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pytest

from load.detect_bench import main
from load.detect_pipeline import run
from load.detect_scenarios import DAY, HOUR, MINUTE, Label, Scenario, SeriesPlan
from load.detect_score import EpisodeSpan, episode_spans, evaluate, pooled
from pipeline.loadgen.spec import DEFAULT_START_MS

T0 = DEFAULT_START_MS


def span(series: str, start_min: int, fired_min: int, end_min: int) -> EpisodeSpan:
    return EpisodeSpan(
        f"{series}-{start_min}", series, "p99", "deviation",
        T0 + start_min * MINUTE, T0 + fired_min * MINUTE, T0 + end_min * MINUTE,
    )  # fmt: skip


def label(series: str, start_min: float, end_min: float) -> Label:
    return Label(series, T0 + int(start_min * MINUTE), T0 + int(end_min * MINUTE), "spike")


def test_scoring_counts_episodes_labels_delays_and_false_alarms() -> None:
    labels = [label("a", 100.5, 110), label("a", 300, 320), label("b", 200, 230)]
    spans = [
        span("a", 100, 102, 115),  # a's first label: delay 102 − 100 = 2 windows
        span("a", 104, 105, 108),  # a second episode of the same incident: also true
        span("a", 323, 324, 330),  # starts 3 windows after a's second label: inside the grace
        span("b", 100, 101, 104),  # b has no label there: false alarm
        span("a", 700, 701, 710),  # false alarm
    ]
    q = evaluate(spans, labels, series=2, start_ms=T0, end_ms=T0 + DAY, grace_windows=5)
    assert (q.labels, q.detected, q.episodes, q.true_episodes) == (3, 2, 5, 3)
    assert q.precision == pytest.approx(3 / 5) and q.recall == pytest.approx(2 / 3)
    assert q.f1 == pytest.approx(2 * 0.6 * (2 / 3) / (0.6 + 2 / 3))
    assert q.delays == [2, 24]  # the late episode fired 24 windows after its label began
    assert q.median_delay == 13.0
    assert q.false_alarms_per_series_day == pytest.approx(2 / 2)
    assert q.missed == [{"series": "b", "start": T0 + 200 * MINUTE, "kind": "spike"}]
    without_grace = evaluate(spans, labels, 2, T0, T0 + DAY, grace_windows=0)
    assert without_grace.detected == 1 and without_grace.true_episodes == 2


def test_learning_period_and_quiet_scenarios() -> None:
    spans = [span("a", 10, 11, 20), span("a", 2000, 2001, 2010)]
    q = evaluate(spans, [], series=1, start_ms=T0, end_ms=T0 + 3 * DAY, evaluate_from_ms=T0 + DAY)
    assert q.learning_alarms == 1 and q.episodes == 1 and q.false_alarms == 1
    assert q.days == 2.0 and q.false_alarms_per_series_day == 0.5
    assert q.precision == 0.0 and q.recall is None and q.f1 is None
    suite = pooled(
        [q, evaluate([span("a", 100, 101, 110)], [label("a", 100, 105)], 1, T0, T0 + DAY)]
    )
    assert suite["precision"] == 0.5 and suite["recall"] == 1.0
    assert suite["f1"] == pytest.approx(2 / 3) and suite["median_delay"] == 1.0


def test_episode_spans_pair_firing_and_resolved_events() -> None:
    def body(eid: str, state: str, window: int) -> dict[str, object]:
        return {
            "episode_id": eid, "state": state, "series": {"service": "a"}, "statistic": "p99",
            "kind": "deviation", "started_at": T0, "window_start": T0 + window * MINUTE,
            "window_end": T0 + (window + 1) * MINUTE,
        }  # fmt: skip

    events = [body("x", "firing", 1), body("y", "firing", 5), body("x", "resolved", 9)]
    spans = episode_spans(events, end_ms=T0 + HOUR)
    assert [(s.episode_id, s.fired_at, s.ended_at) for s in spans] == [
        ("x", T0 + MINUTE, T0 + 10 * MINUTE),
        ("y", T0 + 5 * MINUTE, T0 + HOUR),  # never resolved: runs to the end
    ]


def tiny_scenario() -> Scenario:
    """Two quiet series for 6 h; `a`'s latency ×8 from 03:00:30 for 15 min, `b` silent from
    04:00 for 40 min."""
    seconds = 6 * 3600

    def plan(service: str) -> SeriesPlan:
        return SeriesPlan(
            service, rate=5.0, median_ms=40.0, sigma=0.45, rate_mult=np.ones(seconds),
            median_mult=np.ones(seconds), tail_share=np.full(seconds, 0.005),
        )  # fmt: skip

    a, b = plan("a"), plan("b")
    a.median_mult[3 * 3600 + 30 : 3 * 3600 + 30 + 900] = 8.0
    b.silent = np.zeros(seconds, bool)
    b.silent[4 * 3600 : 4 * 3600 + 2400] = True
    labels = [
        Label("a", T0 + 3 * HOUR + 30_000, T0 + 3 * HOUR + 930_000, "spike"),
        Label("b", T0 + 4 * HOUR, T0 + 4 * HOUR + 40 * MINUTE, "absence"),
    ]
    return Scenario("tiny", "known answer", "p99", T0, seconds * 1000, [a, b], labels, seed=3)


def test_a_tiny_scenario_through_the_pipeline_has_its_known_answer() -> None:
    scenario = tiny_scenario()
    output = run(scenario)
    # Every sample is in exactly one 1 m rollup: the stages ran on the whole input.
    assert sum(r.count for _, r in output.rollups.records) == output.rollups.samples
    spans = episode_spans(output.events, scenario.end_ms)
    q = evaluate(spans, scenario.labels, 2, scenario.start_ms, scenario.end_ms)
    assert (q.labels, q.detected, q.false_alarms) == (2, 2, 0), spans
    assert q.precision == 1.0 and q.recall == 1.0 and q.f1 == 1.0
    by_series = {s.series: s for s in spans}
    assert by_series["a"].statistic == "p99" and by_series["a"].kind == "deviation"
    assert by_series["b"].kind == "absence"
    # The spike (latency ×8 after 3 h of past): the mean's onset on the spike's own window, far
    # beyond even a young envelope; the p99's 2 of 3 windows one window later. The absence of a
    # busy series after 3 gaps (absence_windows: its own arrival rate makes even 1 gap unlikely).
    assert q.delays == [0, 2]
    fired_a = [
        (e["statistic"], e["detector"]["name"])
        for e in output.events
        if e["state"] == "firing" and e["series"]["service"] == "a"
    ]
    assert fired_a == [("mean", "onset"), ("p99", "robust")]
    # The trace holds the per-window bounds the plot draws: the spike window is above them.
    rows = output.trace.track(output.tracks[("a", "p99")])
    spike_row = output.trace.starts.index(T0 + 3 * HOUR + MINUTE)
    value, expected, band, score = rows[spike_row]
    assert value > expected + band and score == pytest.approx((value - expected) / band)


@pytest.mark.slow
def test_the_quick_suite_runs_and_writes_consistent_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = ["spike", "sparse", "bimodal_steady"]
    main(quick=True, seed=[1], held_out=[5], only=names, out=tmp_path, jobs=1)
    (path,) = tmp_path.glob("detect-*-quick.json")
    doc = orjson.loads(path.read_bytes())
    assert [(s["scenario"], s["seed"]) for s in doc["scenarios"]] == [
        *((n, 1) for n in names), *((n, 5) for n in names),
    ]  # fmt: skip
    for s in doc["scenarios"]:
        q = s["quality"]
        assert (s["png"] is not None) == (s["seed"] == 1)
        if s["png"]:
            assert Path(s["png"]).stat().st_size > 10_000
        assert q["episodes"] == len(s["episodes"]) - q["learning_alarms"]
        assert q["detected"] == q["labels"] - len(q["missed"]) == len(q["delays"])
        if q["f1"] is not None:
            p, r = q["precision"], q["recall"]
            assert math.isclose(q["f1"], 2 * p * r / (p + r) if p + r else 0.0)
        assert s["has_anomalies"] == (q["labels"] > 0)
    for group, seed in (("development", 1), ("held-out", 5)):
        suite = doc["suites"][group]
        mine = [s["quality"] for s in doc["scenarios"] if s["seed"] == seed]
        assert suite["labels"] == sum(q["labels"] for q in mine) > 0
        assert suite["episodes"] == sum(q["episodes"] for q in mine)
        assert [t["verdict"] in ("PASS", "MISS") for t in doc["targets"][group]] == [True] * 3
    out = capsys.readouterr().out
    assert "Targets, held-out seeds [5]" in out
    (summary,) = [line for line in out.splitlines() if line.startswith("detector suite — ")]
    assert "development seeds 1: F1" in summary and "held-out seeds 5: F1" in summary
