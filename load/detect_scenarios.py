"""Labelled scenarios for the detector benchmark: raw timer samples with known anomalies.

Every series is a request timer: requests arrive as a Poisson process (`rate` per second times a
time-varying multiplier) and each request's latency is lognormal around a time-varying median,
with a slow path (a fraction of requests `tail_factor` times slower) whose share can grow. All of
it is drawn with numpy from one seed per scenario, so a run is reproducible bit for bit.

Time profiles are per second of event time: `rate_mult`, `median_mult` and `tail_share` arrays,
built by the scenario functions below together with the labelled intervals (epoch ms, [start,
end)) where a responder would want to be told. What counts as an anomaly, per scenario:

- spike: the whole latency distribution ×3–×6 for 6–20 min — label = the spike.
- p99_only: the slow-path share goes from 0.5 % to 4–6 % (slow requests ×6) for 20–45 min: p99
  about ×2.5–×3, p50 +3 % (inside its noise) — label = the degradation.
- rate_shift: traffic ×2 or ×0.5 for good (two shifts per series) — label = the first hour of
  each new level (after that the new level is the normal one).
- traffic_drop: the series stops reporting for 25–120 min — label = the silence.
- slow_drift: latency rises steadily (in log) to ×2 over 1, 3 or 6 h, holds ×2 for 2 h, then
  drops back — label = from the moment it reaches ×1.5 to the end of the plateau: a drift counts
  as detected if an episode overlaps that, and the delay is counted from the ×1.5 point.
- daily_cycle: business-hours traffic ×4 (1 h ramps) and latency ×1.4 at peak — no anomaly.
- heavy_tail: latency with a Pareto tail (α 1.5) and bursty traffic (per-minute gamma factor)
  — no anomaly.

Scenario classes for what a detector tuned on the seven above tends to get wrong (each series
draws its own rate, magnitude and timing from the seed):
- level_shift: latency or traffic ×1.3 or ×2, up or down, for 45–150 min, at 1–6 requests/s —
  label = the whole shift (a detector should stay firing while it lasts).
- ramp: latency or traffic rises to ×3 over one hour, holds 1–2 h, drops back — label = from
  ×1.5 to the end of the plateau.
- bimodal_steady: cache hits and misses (misses ×8–×15, a constant 1 % of requests), so p99
  flips between the two modes — no anomaly.
- bimodal_shift: the miss share goes 10 % → 40 % for 30–90 min (mean ×2–×3, p99 barely moves)
  — label = the change.
- low_rate: counters at 0.1–1 events/s reporting every second, with outages to zero (the
  counter keeps reporting zeros) of 30–90 min — label = the outage.
- sparse: timers with 1–3 requests a minute that stop for 30–90 min once — label = the stop.
- appear_stop: series that start 2–6 h into the day and stop for good 6–10 h later (beside one
  that keeps reporting, so the partition's event time moves on) — label = from the stop to
  the end.
- long_outage: busy counters (20–50/s) dropping to zero, or busy timers going silent, for
  30–90 min — label = the outage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline.loadgen.spec import DEFAULT_START_MS

SECOND = 1_000
MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000


@dataclass(frozen=True, slots=True)
class Label:
    """A known anomaly of one series: [start, end) in epoch ms."""

    series: str
    start: int
    end: int
    kind: str


@dataclass(slots=True)
class SeriesPlan:
    """One timer series: its time profiles, per second of the scenario."""

    service: str
    rate: float  # requests per second at multiplier 1
    median_ms: float
    sigma: float  # lognormal shape of the fast path
    rate_mult: np.ndarray
    median_mult: np.ndarray
    tail_share: np.ndarray  # share of requests on the slow path
    tail_factor: float = 6.0
    pareto_alpha: float = 0.0  # > 0: the slow path is ×(1 + Pareto(α)) instead of ×tail_factor
    burst_shape: float = 0.0  # > 0: per-minute gamma(shape) factor on the rate (bursty traffic)
    silent: np.ndarray | None = None  # bool per second: nothing reported
    counter: bool = False  # a delta counter: one sample a second, the events of that second


@dataclass(slots=True)
class Scenario:
    name: str
    description: str
    statistic: str  # the statistic the plot shows (what the anomaly moves)
    start_ms: int
    duration_ms: int
    series: list[SeriesPlan]
    labels: list[Label] = field(default_factory=list)
    evaluate_from_ms: int = 0  # before it: learning (the seasonal model's days), reported apart
    seed: int = 0

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.duration_ms

    @property
    def has_anomalies(self) -> bool:
        return bool(self.labels)


@dataclass(slots=True)
class Samples:
    """One series' raw samples, sorted by event time."""

    service: str
    ts: np.ndarray  # int64 epoch ms
    value: np.ndarray  # float64 ms (a timer) or events (a counter)
    counter: bool = False


def draw(plan: SeriesPlan, start_ms: int, rng: np.random.Generator) -> Samples:
    """Every request of one series, vectorized over the whole duration."""
    seconds = len(plan.rate_mult)
    lam = plan.rate * plan.rate_mult
    if plan.burst_shape > 0:
        minutes = -(-seconds // 60)
        burst = rng.gamma(plan.burst_shape, 1.0 / plan.burst_shape, minutes)
        lam = lam * np.repeat(burst, 60)[:seconds]
    counts = rng.poisson(lam)
    if plan.counter:
        reported = np.ones(seconds, bool) if plan.silent is None else ~plan.silent
        second = np.flatnonzero(reported).astype(np.int64)
        ts = start_ms + second * SECOND + rng.integers(0, SECOND, len(second))
        return Samples(plan.service, ts, counts[second].astype(float), counter=True)
    if plan.silent is not None:
        counts[plan.silent] = 0
    second = np.repeat(np.arange(seconds, dtype=np.int64), counts)
    n = len(second)
    ts = start_ms + second * SECOND + rng.integers(0, SECOND, n)
    order = np.argsort(ts, kind="stable")
    ts, second = ts[order], second[order]
    fast = np.exp(rng.normal(0.0, plan.sigma, n))
    slow = rng.random(n) < plan.tail_share[second]
    if plan.pareto_alpha > 0:
        factor = 1.0 + rng.pareto(plan.pareto_alpha, n)
    else:
        factor = np.full(n, plan.tail_factor)
    value = plan.median_ms * plan.median_mult[second] * fast * np.where(slow, factor, 1.0)
    return Samples(plan.service, ts, value)


# -- building blocks -------------------------------------------------------------------------


def _flat(seconds: int, value: float = 1.0) -> np.ndarray:
    return np.full(seconds, value)


def _plan(service: str, seconds: int, rng: np.random.Generator) -> SeriesPlan:
    """A quiet series with its own traffic and latency level."""
    return SeriesPlan(
        service=service,
        rate=float(rng.uniform(4.0, 6.0)),
        median_ms=float(rng.uniform(20.0, 80.0)),
        sigma=0.45,
        rate_mult=_flat(seconds),
        median_mult=_flat(seconds),
        tail_share=_flat(seconds, 0.005),
    )


def _incident_starts(
    rng: np.random.Generator, duration_s: int, count: int, lead_s: int, gap_s: int
) -> list[int]:
    """`count` start seconds after `lead_s`, at least `gap_s` apart, spread over the duration."""
    span = (duration_s - lead_s) // count
    return [lead_s + i * span + int(rng.integers(0, max(1, span - gap_s))) for i in range(count)]


Builder = Callable[[int, float, int], Scenario]


def spike(series: int, days: float, seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    seconds = int(days * DAY) // SECOND
    sc = _scenario("spike", "latency ×3–×6 for 6–20 min (whole distribution)", "p99", seconds)
    for i in range(series):
        plan = _plan(f"spike-{i}", seconds, rng)
        for s in _incident_starts(rng, seconds, max(1, int(3 * days)), 2 * 3600, 3 * 3600):
            length = int(rng.integers(6, 21)) * 60
            plan.median_mult[s : s + length] = rng.uniform(3.0, 6.0)
            sc.labels.append(_label(sc, plan, s, s + length, "spike"))
        sc.series.append(plan)
    return sc


def p99_only(series: int, days: float, seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    seconds = int(days * DAY) // SECOND
    sc = _scenario(
        "p99_only", "slow-path share 0.5 % → 4–6 % (×6) for 20–45 min, p50 unchanged", "p99",
        seconds,
    )  # fmt: skip
    for i in range(series):
        plan = _plan(f"tail-{i}", seconds, rng)
        for s in _incident_starts(rng, seconds, max(1, int(3 * days)), 2 * 3600, 3 * 3600):
            length = int(rng.integers(20, 46)) * 60
            plan.tail_share[s : s + length] = rng.uniform(0.04, 0.06)
            sc.labels.append(_label(sc, plan, s, s + length, "p99_only"))
        sc.series.append(plan)
    return sc


def rate_shift(series: int, days: float, seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    seconds = int(days * DAY) // SECOND
    sc = _scenario("rate_shift", "traffic ×2 or ×0.5 for good, twice per series", "rate", seconds)
    for i in range(series):
        plan = _plan(f"shift-{i}", seconds, rng)
        for s in _incident_starts(rng, seconds, 2, 2 * 3600, 5 * 3600):
            plan.rate_mult[s:] *= 2.0 if rng.random() < 0.5 else 0.5
            sc.labels.append(_label(sc, plan, s, s + 3600, "rate_shift"))
        sc.series.append(plan)
    return sc


def traffic_drop(series: int, days: float, seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    seconds = int(days * DAY) // SECOND
    sc = _scenario("traffic_drop", "the series stops reporting for 25–120 min", "rate", seconds)
    for i in range(series):
        plan = _plan(f"drop-{i}", seconds, rng)
        plan.silent = np.zeros(seconds, bool)
        for s in _incident_starts(rng, seconds, max(1, int(2 * days)), 2 * 3600, 3 * 3600):
            length = int(rng.integers(25, 121)) * 60
            plan.silent[s : s + length] = True
            sc.labels.append(_label(sc, plan, s, s + length, "absence"))
        sc.series.append(plan)
    return sc


def slow_drift(series: int, days: float, seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    seconds = int(days * DAY) // SECOND
    sc = _scenario(
        "slow_drift", "latency rises to ×2 over 1, 3 or 6 h, holds 2 h, drops back", "p99", seconds
    )
    ramps = (1, 3, 6)
    for i in range(series):
        plan = _plan(f"drift-{i}", seconds, rng)
        ramp = ramps[i % len(ramps)] * 3600
        s = 2 * 3600 + int(rng.integers(0, max(1, seconds - ramp - 5 * 3600 - 2 * 3600)))
        hold = 2 * 3600
        plan.median_mult[s : s + ramp] = np.exp(np.log(2.0) * np.arange(ramp) / ramp)
        plan.median_mult[s + ramp : s + ramp + hold] = 2.0
        # Reaches ×1.5 at log(1.5)/log(2) of the ramp.
        half = s + int(ramp * np.log(1.5) / np.log(2.0))
        sc.labels.append(_label(sc, plan, half, s + ramp + hold, f"drift_{ramp // 3600}h"))
        sc.series.append(plan)
    return sc


def daily_cycle(series: int, days: float, seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    seconds = int(days * DAY) // SECOND
    sc = _scenario(
        "daily_cycle", "business hours 08–20 UTC: traffic ×4, latency ×1.4 (1 h ramps)", "rate",
        seconds,
    )  # fmt: skip
    of_day = np.arange(seconds) % 86_400 / 3600.0  # hours
    busy = np.clip(of_day - 7.5, 0, 1) - np.clip(of_day - 19.5, 0, 1)
    for i in range(series):
        plan = _plan(f"cycle-{i}", seconds, rng)
        plan.rate_mult = np.exp(np.log(4.0) * busy)
        plan.median_mult = np.exp(np.log(1.4) * busy)
        sc.series.append(plan)
    # The seasonal model needs min_seasonal_days of profile; earlier days are learning.
    sc.evaluate_from_ms = sc.start_ms + 2 * DAY
    return sc


def heavy_tail(series: int, days: float, seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    seconds = int(days * DAY) // SECOND
    sc = _scenario(
        "heavy_tail", "2 % of requests ×(1 + Pareto(1.5)), bursty traffic (gamma, CV 0.2)", "p99",
        seconds,
    )  # fmt: skip
    for i in range(series):
        plan = _plan(f"heavy-{i}", seconds, rng)
        plan.sigma = 0.7
        plan.tail_share = _flat(seconds, 0.02)
        plan.pareto_alpha = 1.5
        plan.burst_shape = 25.0
        sc.series.append(plan)
    return sc


def _rate_plan(
    service: str, seconds: int, rng: np.random.Generator, low: float, high: float
) -> SeriesPlan:
    plan = _plan(service, seconds, rng)
    plan.rate = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    return plan


def level_shift(series: int, days: float, seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    seconds = int(days * DAY) // SECOND
    sc = _scenario(
        "level_shift", "latency or traffic ×1.3 / ×2, up or down, for 45–150 min (1–6 req/s)",
        "mean", seconds,
    )  # fmt: skip
    for i in range(series):
        plan = _rate_plan(f"level-{i}", seconds, rng, 1.0, 6.0)
        for s in _incident_starts(rng, seconds, 2, 2 * 3600, 4 * 3600):
            length = int(rng.integers(45, 151)) * 60
            factor = float(rng.choice([1.3, 2.0]))
            factor = factor if rng.random() < 0.5 else 1.0 / factor
            target = plan.median_mult if rng.random() < 0.5 else plan.rate_mult
            target[s : s + length] *= factor
            what = "latency" if target is plan.median_mult else "traffic"
            size = max(factor, 1.0 / factor)
            sc.labels.append(_label(sc, plan, s, s + length, f"shift_{what}_x{size:g}"))
        sc.series.append(plan)
    return sc


def ramp(series: int, days: float, seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    seconds = int(days * DAY) // SECOND
    sc = _scenario("ramp", "latency or traffic ×3 over 1 h, holds 1–2 h, back", "mean", seconds)
    for i in range(series):
        plan = _rate_plan(f"ramp-{i}", seconds, rng, 1.0, 6.0)
        target = plan.median_mult if i % 2 == 0 else plan.rate_mult
        s = int(rng.integers(2 * 3600, seconds - 5 * 3600))
        hold = int(rng.integers(60, 121)) * 60
        target[s : s + 3600] = np.exp(np.log(3.0) * np.arange(3600) / 3600)
        target[s + 3600 : s + 3600 + hold] = 3.0
        half = s + int(3600 * np.log(1.5) / np.log(3.0))
        what = "latency" if i % 2 == 0 else "traffic"
        sc.labels.append(_label(sc, plan, half, s + 3600 + hold, f"ramp_{what}"))
        sc.series.append(plan)
    return sc


def _bimodal_plan(service: str, seconds: int, rng: np.random.Generator, share: float) -> SeriesPlan:
    plan = _rate_plan(service, seconds, rng, 1.0, 6.0)
    plan.median_ms = float(rng.uniform(2.0, 8.0))
    plan.sigma = 0.25
    plan.tail_share = _flat(seconds, share)
    plan.tail_factor = float(rng.uniform(8.0, 15.0))
    return plan


def bimodal_steady(series: int, days: float, seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    seconds = int(days * DAY) // SECOND
    sc = _scenario(
        "bimodal_steady", "cache misses ×8–×15 for a constant 1 % of requests", "p99", seconds
    )
    sc.series = [_bimodal_plan(f"cache-{i}", seconds, rng, 0.01) for i in range(series)]
    return sc


def bimodal_shift(series: int, days: float, seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    seconds = int(days * DAY) // SECOND
    sc = _scenario("bimodal_shift", "cache-miss share 10 % → 40 % for 30–90 min", "mean", seconds)
    for i in range(series):
        plan = _bimodal_plan(f"miss-{i}", seconds, rng, 0.10)
        for s in _incident_starts(rng, seconds, 2, 2 * 3600, 4 * 3600):
            length = int(rng.integers(30, 91)) * 60
            plan.tail_share[s : s + length] = 0.40
            sc.labels.append(_label(sc, plan, s, s + length, "miss_share"))
        sc.series.append(plan)
    return sc


def low_rate(series: int, days: float, seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    seconds = int(days * DAY) // SECOND
    sc = _scenario(
        "low_rate", "counters at 0.1–1 events/s, outages to zero for 30–90 min", "rate", seconds
    )
    for i in range(series):
        plan = _rate_plan(f"low-{i}", seconds, rng, 0.1, 1.0)
        plan.counter = True
        for s in _incident_starts(rng, seconds, 2, 2 * 3600, 4 * 3600):
            length = int(rng.integers(30, 91)) * 60
            plan.rate_mult[s : s + length] = 0.0
            sc.labels.append(_label(sc, plan, s, s + length, "outage_low_rate"))
        sc.series.append(plan)
    return sc


def sparse(series: int, days: float, seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    seconds = int(days * DAY) // SECOND
    sc = _scenario("sparse", "1–3 requests a minute; one 30–90 min stop", "rate", seconds)
    for i in range(series):
        plan = _rate_plan(f"sparse-{i}", seconds, rng, 1.0 / 60, 3.0 / 60)
        plan.silent = np.zeros(seconds, bool)
        (s,) = _incident_starts(rng, seconds, 1, 3 * 3600, 3 * 3600)
        length = int(rng.integers(30, 91)) * 60
        plan.silent[s : s + length] = True
        sc.labels.append(_label(sc, plan, s, s + length, "absence_sparse"))
        sc.series.append(plan)
    return sc


def appear_stop(series: int, days: float, seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    seconds = int(days * DAY) // SECOND
    sc = _scenario(
        "appear_stop", "series start 2–6 h in, stop for good 6–10 h later", "rate", seconds
    )
    for i in range(series):
        plan = _rate_plan(f"new-{i}", seconds, rng, 1.0, 6.0)
        plan.counter = i % 2 == 1
        first = int(rng.integers(2 * 3600, 6 * 3600))
        stop = min(first + int(rng.integers(6 * 3600, 10 * 3600)), seconds - 3600)
        plan.silent = np.ones(seconds, bool)
        plan.silent[first:stop] = False
        sc.labels.append(_label(sc, plan, stop, seconds, "stopped"))
        sc.series.append(plan)
    # One series that keeps reporting: the partition's clock moves on after the others stop.
    sc.series.append(_rate_plan("steady", seconds, rng, 1.0, 6.0))
    return sc


def long_outage(series: int, days: float, seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    seconds = int(days * DAY) // SECOND
    sc = _scenario(
        "long_outage", "busy counters to zero, or busy timers silent, for 30–90 min", "rate",
        seconds,
    )  # fmt: skip
    for i in range(series):
        plan = _rate_plan(f"outage-{i}", seconds, rng, 20.0, 50.0)
        plan.counter = i % 2 == 0
        plan.silent = np.zeros(seconds, bool)
        for s in _incident_starts(rng, seconds, 2, 2 * 3600, 4 * 3600):
            length = int(rng.integers(30, 91)) * 60
            if plan.counter:
                plan.rate_mult[s : s + length] = 0.0
            else:
                plan.silent[s : s + length] = True
            kind = "outage_counter" if plan.counter else "outage_silent"
            sc.labels.append(_label(sc, plan, s, s + length, kind))
        sc.series.append(plan)
    return sc


def _scenario(name: str, description: str, statistic: str, seconds: int) -> Scenario:
    return Scenario(name, description, statistic, DEFAULT_START_MS, seconds * SECOND, [])


def _label(sc: Scenario, plan: SeriesPlan, start_s: int, end_s: int, kind: str) -> Label:
    return Label(plan.service, sc.start_ms + start_s * SECOND, sc.start_ms + end_s * SECOND, kind)


@dataclass(frozen=True, slots=True)
class Size:
    series: int
    days: float


#: name → (builder, full size, quick size). Days where the scenario needs them: the daily cycle
#: learns for two days before it is judged; the no-anomaly ones measure a rate per day.
SUITE: dict[str, tuple[Builder, Size, Size]] = {
    "spike": (spike, Size(6, 1.0), Size(2, 0.5)),
    "p99_only": (p99_only, Size(6, 1.0), Size(2, 0.5)),
    "rate_shift": (rate_shift, Size(6, 1.0), Size(2, 0.5)),
    "traffic_drop": (traffic_drop, Size(6, 1.0), Size(2, 0.5)),
    "slow_drift": (slow_drift, Size(6, 1.0), Size(3, 0.75)),
    "daily_cycle": (daily_cycle, Size(4, 4.0), Size(1, 3.0)),
    "heavy_tail": (heavy_tail, Size(6, 2.0), Size(2, 1.0)),
    "level_shift": (level_shift, Size(4, 1.0), Size(2, 0.5)),
    "ramp": (ramp, Size(4, 1.0), Size(2, 0.5)),
    "bimodal_steady": (bimodal_steady, Size(4, 1.0), Size(1, 0.5)),
    "bimodal_shift": (bimodal_shift, Size(4, 1.0), Size(1, 0.5)),
    "low_rate": (low_rate, Size(4, 1.0), Size(2, 0.5)),
    "sparse": (sparse, Size(4, 1.0), Size(2, 0.5)),
    "appear_stop": (appear_stop, Size(4, 1.0), Size(2, 0.6)),
    "long_outage": (long_outage, Size(4, 1.0), Size(2, 0.5)),
}


def build(name: str, quick: bool = False, seed: int = 7) -> Scenario:
    builder, full, small = SUITE[name]
    size = small if quick else full
    scenario = builder(size.series, size.days, seed)
    scenario.seed = seed
    return scenario
