"""Episodes that last, level shifts, absence by arrival rate, and the noise of one window."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import orjson

from pipeline.core.detect.detector import DetectConfig, PartitionDetector
from pipeline.core.detect.drift import DriftConfig
from pipeline.core.detect.noise import from_model, sampling_sd, to_model
from pipeline.core.rollup_wire import WireRollup, decode_rollup
from tests.support.synthetic_rollups import MINUTE, START, rollup_body, stream

SCHEMA = json.loads((Path(__file__).parents[3] / "schemas" / "anomaly.schema.json").read_text())
P99_ONLY = DetectConfig(statistics=("p99",))


def bodies(records: list[tuple[int, WireRollup]], config: DetectConfig) -> list[dict[str, Any]]:
    detector = PartitionDetector("rollups.1m", 0, config)
    out = []
    for i in range(0, len(records), 100):
        part = records[i : i + 100]
        out += [e.body for e in detector.process(part, part[-1][0] + 1).events]
    for body in out:
        jsonschema.validate(body, SCHEMA)
    return out


def minute(body: dict[str, Any]) -> int:
    return (body["window_start"] - START) // MINUTE


def test_a_persistent_doubling_stays_firing_until_it_ends() -> None:
    """p99 ×2 for 120 windows: one episode, open all along (the baseline does not learn it),
    resolved within a few windows of the end."""
    records = stream(320, services=("a",), p99=lambda s, m, v: v * 2 if 100 <= m < 220 else v)
    events = bodies(records, P99_ONLY)
    assert [(e["state"], e.get("ended_by")) for e in events] == [
        ("firing", None), ("resolved", "recovered"),
    ]  # fmt: skip
    firing, resolved = events
    assert 100 <= minute(firing) <= 102
    # Three calm windows, and the CUSUM of the shift (drift.py) decayed below its hold.
    assert 220 <= minute(resolved) <= 226


def test_a_shift_that_lasts_becomes_the_baseline_with_a_level_shift_event() -> None:
    config = DetectConfig(statistics=("p99",), rebaseline_windows=90)
    records = stream(400, services=("a",), p99=lambda s, m, v: v * 3 if m >= 100 else v)
    events = bodies(records, config)
    assert [(e["state"], e.get("ended_by")) for e in events] == [
        ("firing", None), ("resolved", "level_shift"),
    ]  # fmt: skip
    firing, shift = events
    assert shift["observed"] > 2.5 * shift["expected"]  # the new level against the old one
    began = (firing["started_at"] - START) // MINUTE
    assert minute(shift) == began + 89  # the 90th window of the episode


def counter(index: int, rate: float) -> WireRollup:
    """A delta counter's 1 m rollup: 60 reports, `rate` events per second."""
    body = rollup_body("a", index, 1.0, 1.0)
    body["series"].update(type="counter", temporality="delta")
    body["series"].pop("unit")
    body.update(count=60, sum=rate * 60, min=0.0, max=rate * 2, mean=rate, rate=rate)
    body.update(percentiles={}, digest=None)
    return decode_rollup(orjson.dumps(body), MINUTE)


def test_an_outage_to_zero_is_never_taken_for_a_new_level() -> None:
    """A busy counter dropping to zero for longer than the re-baselining horizon keeps firing,
    and resolves when traffic returns."""
    rng = np.random.default_rng(2)
    rates = [0.0 if 100 <= m < 250 else float(rng.poisson(3000)) / 60 for m in range(300)]
    records = [(m, counter(m, rate)) for m, rate in enumerate(rates)]
    events = bodies(records, DetectConfig(rebaseline_windows=60))
    assert [(e["state"], e["direction"], e.get("ended_by")) for e in events] == [
        ("firing", "down", None), ("resolved", "down", "recovered"),
    ]  # fmt: skip
    # Resolved a few windows after traffic is back: three calm windows, and the CUSUM of
    # small persistent shifts no longer holding the drop (drift.py).
    assert minute(events[0]) <= 102 and 250 <= minute(events[1]) <= 256


def test_absence_is_judged_against_the_series_own_arrival_rate() -> None:
    """A series reporting in about half its windows has gaps of 3–6 windows by chance; a busy
    one does not. Neither fires on its usual gaps; both fire on a long silence."""
    rng = np.random.default_rng(4)
    present = rng.random(500) < 0.5

    def silent(s: str, m: int) -> bool:
        if 300 <= m < 360:
            return s in ("busy", "sparse")  # both stop for an hour
        return s == "sparse" and not present[m]

    records = stream(420, services=("busy", "sparse", "clock"), silent=silent)
    events = [e for e in bodies(records, P99_ONLY) if e["kind"] == "absence"]
    fired = {e["series"]["service"]: minute(e) for e in events if e["state"] == "firing"}
    assert fired.keys() == {"busy", "sparse"}
    assert fired["busy"] == 302  # three empty windows
    assert 305 <= fired["sparse"] < 340  # its longest chance gap was shorter than that


def test_the_noise_of_one_window_knows_its_sample_count() -> None:
    for x in (0.0, 0.3, 5.0, 1234.0):
        assert math.isclose(from_model("rate", to_model("rate", x, 60.0), 60.0), x, abs_tol=1e-9)
        assert math.isclose(from_model("p99", to_model("p99", x, 60.0), 60.0), x, rel_tol=1e-9)
    # A 0.3/s rate (18 a minute) dropping to zero: ~6 Poisson sigmas on the model scale.
    assert to_model("rate", 0.3, 60.0) - to_model("rate", 0.0, 60.0) > 6.0

    def window(count: int) -> WireRollup:
        # Evenly spaced quantiles of a lognormal: the same shape at every count.
        population = np.exp(np.random.default_rng(0).normal(3.0, 0.5, 100_000))
        values = np.quantile(population, (np.arange(count) + 0.5) / count)
        body = rollup_body("a", 0, float(np.quantile(values, 0.99)), count / 60)
        body["count"] = count
        body["digest"] = {
            "compression": 200, "n": count,
            "centroids": [{"m": float(v), "c": 1.0} for v in np.sort(values)],
        }  # fmt: skip
        return decode_rollup(orjson.dumps(body), MINUTE)

    few, many = window(40), window(4000)
    noise_few = sampling_sd("p99", few, few.percentiles["p99"])
    noise_many = sampling_sd("p99", many, many.percentiles["p99"])
    assert noise_few > 2 * noise_many > 0
    assert sampling_sd("mean", few, few.mean) > sampling_sd("mean", many, many.mean) > 0
    assert sampling_sd("rate", few, few.rate) == 1.0  # Poisson, whatever the rate


def test_a_small_persistent_shift_fires_by_its_cusum_and_stays_open() -> None:
    """p99 ×1.2 (about two sigmas of the window-to-window noise) for 120 windows: no single
    window nor the short-run test is sure of it; the CUSUM is, within ~20 windows, and its
    episode stays open to the end. Without the CUSUM it is found late or not at all."""
    records = stream(320, services=("a",), p99=lambda s, m, v: v * 1.2 if 100 <= m < 220 else v)
    events = bodies(records, P99_ONLY)
    assert [(e["state"], e["detector"]["name"]) for e in events][:1] == [("firing", "cusum")]
    assert [e["state"] for e in events] == ["firing", "resolved"]
    firing, resolved = events
    assert 100 <= minute(firing) <= 120
    assert 220 <= minute(resolved) <= 226
    without = bodies(records, replace(P99_ONLY, drift=DriftConfig(enabled=False)))
    first = [minute(e) for e in without if e["state"] == "firing"]
    assert not first or first[0] > minute(firing)
