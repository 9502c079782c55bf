"""The NAB benchmark: our re-implementation of NAB's scoring rules gives the published
detectors' result files their published scores, the rules on hand-made answers, and one NAB
file (tests/data/nab, MIT licence, see LICENSE.txt there) through the detector's core."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from load.nab_detect import detect_files
from load.nab_replay import onset_scores
from load.nab_score import (
    PROFILES,
    parse_times,
    read_windows,
    scorable_rows,
    score_corpus,
)
from pipeline.core.detect.detector import DetectConfig
from pipeline.core.detect.novelty import NoveltyConfig

ROOT = Path(__file__).parents[2]
NAB = ROOT.parent / "shared" / "datasets" / "nab"  # a NAB checkout beside the clone, if any
DATA = ROOT / "tests" / "data" / "nab"
STANDARD, LOW_FP, LOW_FN = PROFILES


@pytest.mark.skipif(not (NAB / "results" / "windowedGaussian").is_dir(), reason=f"no {NAB}")
def test_the_published_windowed_gaussian_results_score_as_published() -> None:
    windows = read_windows(NAB)
    rows, first = [], 0
    for name in sorted(windows):
        category, file = name.split("/")
        path = NAB / "results" / "windowedGaussian" / category / f"windowedGaussian_{file}"
        with path.open() as f:
            table = list(csv.DictReader(f))
        times = parse_times([r["timestamp"] for r in table])
        scores = np.array([float(r["anomaly_score"]) for r in table])
        rows.append(scorable_rows(name, times, scores, windows[name], first))
        first += len(windows[name])
    labelled = sum(len(w) for w in windows.values())
    got = [round(score_corpus(rows, p, labelled).normalized, 1) for p in PROFILES]
    assert got == [39.6, 20.9, 47.4]  # NAB's scoreboard: standard, low FP, low FN


def _minutes(count: int) -> np.ndarray:
    return np.datetime64("2026-01-01T00:00") + np.arange(count) * np.timedelta64(1, "m")


def test_the_scoring_rules_on_hand_made_answers() -> None:
    times = _minutes(1000)
    window = [(times[500], times[519])]  # 20 rows
    labelled = 1

    def score(detections: list[int], profile: object = STANDARD) -> float:
        scores = np.zeros(1000)
        scores[detections] = 1.0
        rows = scorable_rows("f", times, scores, window)
        return score_corpus([rows], profile, labelled).normalized  # type: ignore[arg-type]

    # Probation: the first 15 % of the rows are not scored at all.
    assert score([10]) == 0.0
    # Detected on the window's first row: the full reward (normalised: 100).
    assert score([500]) == pytest.approx(100.0)
    # Later in the window earns less; only the earliest detection counts.
    assert 0 < score([515]) < score([505]) < 100.0
    assert score([505, 515]) == pytest.approx(score([505]))
    # A false positive far past the window costs fp_weight: 0.11 (standard) or 0.22 (low FP),
    # ×50 normalised here (null = −1, perfect = +1).
    assert score([500, 900]) == pytest.approx(100.0 - 50 * 0.11)
    assert score([500, 900], LOW_FP) == pytest.approx(100.0 - 50 * 0.22)
    # Missing the window costs fn_weight: nothing detected scores 0 for every profile.
    assert score([]) == 0.0 and score([], LOW_FN) == 0.0


def test_a_nab_file_through_the_detector_core_fires_in_its_window() -> None:
    path = DATA / "art_daily_jumpsup.csv"
    (run,) = detect_files([path], DetectConfig()).values()
    assert run.interval_ms == 300_000 and len(run.anomaly_score) == 4032
    assert ((run.anomaly_score >= 0) & (run.anomaly_score < 1)).all()
    start, end = np.datetime64("2014-04-10T16:15"), np.datetime64("2014-04-12T01:45")
    fired_at = run.times[run.firing]
    inside = (fired_at >= start) & (fired_at <= end)
    assert inside.any(), fired_at  # the jump is found inside its labelled window
    assert (~inside).sum() <= 2, fired_at  # and the daily cycle is not an incident
    rows = scorable_rows("jumpsup", run.times, run.firing.astype(float), [(start, end)])
    assert score_corpus([rows], STANDARD, 1).normalized > 50.0
    # The fast replay (load/nab_replay.py) of the onset score over the recorded values and z
    # gives the product's scores, and a different setting gives different ones.
    with path.open() as f:
        values = np.array([[float(r["value"]) for r in csv.DictReader(f)]])
    z = run.deviation_z[np.newaxis, :]
    replayed = onset_scores(values, z, NoveltyConfig())[0]
    assert run.anomaly_score.max() > 0.5  # an onset fired: there is something to reproduce
    np.testing.assert_allclose(replayed / (1.0 + replayed), run.anomaly_score, atol=1e-12)
    other = onset_scores(values, z, NoveltyConfig(envelope_margin=0.05))[0]
    assert not np.allclose(other, replayed)
