"""Check what the worker emitted against the workload's ground truth (numpy), rollup by rollup.

A run passes only if: the rollups are exactly the expected (series, window) pairs, each with the
exact count; the sum of counts equals the samples sent (conservation; the tick series ignored);
nothing was dead-lettered; no key was emitted twice with different content; and on a random
sample of windows min/max are exact, the sum matches math.fsum and the p99 matches numpy's
(`np.quantile`, linear): to 1e-9 where the window kept all its values (exact percentiles), and
to `estimate_tolerance` where it passed raw_limit (t-digest estimate).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from load.scenarios import RESOLUTION_MS, TICK_NAME
from pipeline.core.series import SeriesIdentity
from pipeline.demo.summary import OutputSummary
from pipeline.loadgen.workload import GroundTruth

EXACT_TOLERANCE = 1e-9


@dataclass(frozen=True, eq=False)
class Expected:
    """Every (series, window) of the truth: window w holds truth samples
    order[bounds[w]:bounds[w + 1]]."""

    series: NDArray[np.int64]
    start: NDArray[np.int64]
    count: NDArray[np.int64]
    order: NDArray[np.int64]
    bounds: NDArray[np.int64]
    index: dict[tuple[int, int], int]

    def __len__(self) -> int:
        return len(self.count)

    def values(self, truth: GroundTruth, w: int) -> NDArray[np.float64]:
        return truth.value[self.order[self.bounds[w] : self.bounds[w + 1]]]


def expected_windows(truth: GroundTruth) -> Expected:
    on_time = np.flatnonzero(truth.on_time)
    ts = truth.ts[on_time]
    window = (ts - truth.spec.start_ms) // RESOLUTION_MS
    n_windows = int(window.max()) + 1 if len(window) else 1
    code = truth.series_key[on_time].astype(np.int64) * n_windows + window
    by_code = np.argsort(code, kind="stable")
    distinct, first, count = np.unique(code[by_code], return_index=True, return_counts=True)
    series = distinct // n_windows
    start = truth.spec.start_ms + (distinct % n_windows) * RESOLUTION_MS
    bounds = np.append(first, len(by_code)).astype(np.int64)
    index = {
        (s, t): w for w, (s, t) in enumerate(zip(series.tolist(), start.tolist(), strict=True))
    }
    return Expected(series, start, count, on_time[by_code], bounds, index)


@dataclass
class Verification:
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    rollups: int = 0
    expected_rollups: int = 0
    samples_in_rollups: int = 0
    samples_sent: int = 0
    deadlettered: int = 0
    duplicates: int = 0
    windows_checked: int = 0
    max_p99_error_exact: float = 0.0
    max_p99_error_estimated: float = 0.0

    def fail(self, problem: str) -> None:
        self.ok = False
        if len(self.problems) < 20:
            self.problems.append(problem)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def match_rollups(
    summary: OutputSummary, expected: Expected, truth: GroundTruth, report: Verification
) -> dict[int, dict[str, Any]]:
    """Window index → rollup; rollups that match no expected window are reported."""
    # The rollups' canonical series key (every identity field, labels included).
    series_of = {SeriesIdentity.from_json(s.fields(0)).key: i for i, s in enumerate(truth.series)}
    found: dict[int, dict[str, Any]] = {}
    for key, body in summary.rollups.items():
        if body["series"]["name"] == TICK_NAME:
            continue  # the ticks only move watermarks; they are not part of the workload
        sid = series_of.get(body["series_key"])
        w = None if sid is None else expected.index.get((sid, body["window_start"]))
        if w is None:
            report.fail(f"unexpected rollup {key}")
            continue
        found[w] = body
    return found


def verify(
    summary: OutputSummary,
    expected: Expected,
    truth: GroundTruth,
    samples_sent: int,
    raw_limit: int = 1024,
    check_windows: int = 200,
    estimate_tolerance: float = 0.05,
    seed: int = 0,
) -> Verification:
    report = Verification(expected_rollups=len(expected), samples_sent=samples_sent)
    found = match_rollups(summary, expected, truth, report)
    report.rollups = len(found)
    report.duplicates = summary.duplicate_rollups
    if summary.conflicting_duplicates:
        report.fail(f"{summary.conflicting_duplicates} keys emitted with different content")
    if len(found) != len(expected):
        report.fail(f"{len(expected) - len(found):,} expected rollups missing")
    wrong = [w for w, body in found.items() if body["count"] != int(expected.count[w])]
    if wrong:
        report.fail(f"{len(wrong):,} rollups with a wrong count")
    report.samples_in_rollups = sum(body["count"] for body in found.values())
    if report.samples_in_rollups != samples_sent:
        report.fail(
            f"conservation: {report.samples_in_rollups:,} samples in rollups "
            f"!= {samples_sent:,} sent"
        )
    report.deadlettered = sum(summary.deadletter_samples().values())
    if report.deadlettered:
        report.fail(f"{report.deadlettered:,} samples dead-lettered (expected none)")

    rng = np.random.default_rng(seed)
    candidates = sorted(found)
    picked = rng.choice(len(candidates), min(check_windows, len(candidates)), replace=False)
    for i in picked.tolist():
        w = candidates[i]
        body = found[w]
        values = expected.values(truth, w)
        report.windows_checked += 1
        if body["min"] != values.min() or body["max"] != values.max():
            report.fail(f"window {w}: min/max differ from the truth")
        exact_sum = math.fsum(values.tolist())
        if abs(body["sum"] - exact_sum) > EXACT_TOLERANCE * max(abs(exact_sum), 1.0):
            report.fail(f"window {w}: sum {body['sum']} != {exact_sum}")
        error = relative_error(body["percentiles"]["p99"], float(np.quantile(values, 0.99)))
        if len(values) <= raw_limit:
            report.max_p99_error_exact = max(report.max_p99_error_exact, error)
            if error > EXACT_TOLERANCE:
                report.fail(f"window {w}: exact p99 off by {error:.2e}")
        else:
            report.max_p99_error_estimated = max(report.max_p99_error_estimated, error)
            if error > estimate_tolerance:
                report.fail(f"window {w}: estimated p99 off by {error:.2%}")
    return report


def relative_error(got: float, want: float) -> float:
    return abs(got - want) / abs(want) if want else abs(got)


def accuracy(
    summary: OutputSummary, expected: Expected, truth: GroundTruth, min_count: int = 1000
) -> dict[str, Any]:
    """Relative error of p50/p99/p99.9 against numpy over every window with >= min_count samples."""
    scratch = Verification()
    found = match_rollups(summary, expected, truth, scratch)
    quantiles = {"p50": 0.5, "p99": 0.99, "p99.9": 0.999}
    errors: dict[str, list[float]] = {name: [] for name in quantiles}
    for w, body in found.items():
        if body["count"] < min_count:
            continue
        values = expected.values(truth, w)
        for name, q in quantiles.items():
            errors[name].append(relative_error(body["percentiles"][name], np.quantile(values, q)))
    out: dict[str, Any] = {"windows": len(errors["p99"]), "min_count": min_count}
    for name, errs in errors.items():
        out[f"{name}_median_error"] = float(np.median(errs)) if errs else None
        out[f"{name}_max_error"] = float(np.max(errs)) if errs else None
    counts = [body["count"] for body in found.values()]
    out["samples_per_window_min"] = min(counts) if counts else 0
    return out
