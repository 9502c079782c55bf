"""A scenario through the pipeline's core, no Kafka: raw batches → 10 s → 1 m → detector.

Each series' samples are sent as one columnar batch message per series per 10 s flush (the form a
batching client sends, schemas/batch-columnar.schema.json), all series on one partition in flush
order. The real stages run on them: `Decoder` → `PartitionAggregator` (10 s rollups) → encoded,
decoded as a consumer would (`decode_rollup`) → `TierAggregator` (1 m) → `PartitionDetector`.
At the end of the input every stage's idle advance closes its open windows, as the idle rule
would after a quiet while.

`TracingDetector` also keeps, for every scored window and every track, the observation and the
model's expected value and band, so a plot can draw the bounds of every window, not only of the
windows that changed an episode's state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from load.detect_scenarios import Samples, Scenario, draw
from pipeline.core.aggregator import PartitionAggregator, WindowConfig
from pipeline.core.decode import Decoder
from pipeline.core.detect.detector import DetectConfig, PartitionDetector
from pipeline.core.detect.models import Scores
from pipeline.core.digest import DigestConfig
from pipeline.core.rollup import Rollup
from pipeline.core.rollup_wire import WireRollup, decode_rollup
from pipeline.core.series import SeriesTable
from pipeline.core.tier import TierAggregator, TierConfig

BASE_MS = 10_000
TIER_MS = 60_000
REGION = "bench"
NAME = b"http.server.duration"
COUNTER_NAME = b"http.server.requests"
TIMER_TYPE = b'"type":"timer","unit":"ms",'
COUNTER_TYPE = b'"type":"counter","temporality":"delta",'
MESSAGES_PER_BATCH = 2_000


@dataclass(slots=True)
class Trace:
    """Per scored 1 m window (`starts`, epoch ms) and per track: value, expected, band (model
    scale, pipeline/core/detect/noise.py) and score; NaN where the track had nothing."""

    starts: list[int] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)  # (tracks, 4) per window

    def track(self, index: int) -> np.ndarray:
        """(windows, 4) for one track, NaN-padded before the track existed."""
        out = np.full((len(self.rows), 4), np.nan)
        for i, row in enumerate(self.rows):
            if index < len(row):
                out[i] = row[index]
        return out


class TracingDetector(PartitionDetector):
    """The detector, unchanged, plus a record of each window's baseline for plots."""

    def __init__(self, config: DetectConfig) -> None:
        super().__init__("bench.rollups.1m", 0, config)
        self.trace = Trace()

    def _scored_window(
        self, index: int, values: np.ndarray, scores: Scores, onset: np.ndarray
    ) -> None:
        self.trace.starts.append(index * self.res)
        self.trace.rows.append(np.stack([values, scores.expected, scores.band, scores.score], 1))


@dataclass(slots=True)
class Rollups:
    """A scenario's 1 m rollups as the detector's consumer reads them, in partition order."""

    records: list[tuple[int, WireRollup]]
    end_offset: int
    samples: int
    base_rollups: int


@dataclass(slots=True)
class RunOutput:
    events: list[dict[str, Any]]  # anomaly event bodies, in emission order
    trace: Trace
    tracks: dict[tuple[str, str], int]  # (service, statistic) → track
    rollups: Rollups


def messages(samples: list[Samples]) -> Iterator[tuple[bytes, int]]:
    """(columnar batch, Kafka timestamp) per series per 10 s flush, in flush order."""
    flushes = []
    for i, s in enumerate(samples):
        flush_of = s.ts // BASE_MS
        cuts = np.flatnonzero(np.diff(flush_of)) + 1
        bounds = np.concatenate(([0], cuts, [len(flush_of)]))
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            if b > a:
                flushes.append((int(flush_of[a]), i, a, b))
    flushes.sort()
    prefixes = [
        b'{"service":"%b","region":"%b","name":"%b",%b'
        % (s.service.encode(), REGION.encode(), COUNTER_NAME if s.counter else NAME,
           COUNTER_TYPE if s.counter else TIMER_TYPE)
        for s in samples
    ]  # fmt: skip
    numpy = orjson.OPT_SERIALIZE_NUMPY
    for flush, i, a, b in flushes:
        s = samples[i]
        body = b'%b"ts":%b,"value":%b}' % (
            prefixes[i],
            orjson.dumps(s.ts[a:b], option=numpy),
            orjson.dumps(s.value[a:b], option=numpy),
        )
        yield body, (flush + 1) * BASE_MS


def minute_rollups(scenario: Scenario) -> Rollups:
    """Raw samples of the scenario → 10 s rollups → 1 m rollups (every stage's real code)."""
    rng = np.random.default_rng(scenario.seed)
    samples = [draw(plan, scenario.start_ms, rng) for plan in scenario.series]
    digest = DigestConfig()
    table = SeriesTable()
    decoder = Decoder(table)
    base = PartitionAggregator("bench.raw", 0, table, WindowConfig(BASE_MS, 5_000), digest)
    tier = TierAggregator("bench.rollups.10s", 0, TierConfig(BASE_MS, TIER_MS, BASE_MS), digest)
    out = Rollups([], 0, sum(len(s.ts) for s in samples), 0)
    offsets = [0, 0, 0]  # next offset of the raw, 10 s and 1 m "topics"

    def to_tier(rollups: list[Rollup]) -> None:
        out.base_rollups += len(rollups)
        step = tier.process(_consume(rollups, BASE_MS, offsets, 1), offsets[1])
        out.records += _consume(step.rollups, TIER_MS, offsets, 2)

    batch: list[tuple[bytes, int]] = []
    for message in messages(samples):
        batch.append(message)
        if len(batch) == MESSAGES_PER_BATCH:
            to_tier(_aggregate(decoder, base, batch, offsets))
            batch = []
    to_tier(_aggregate(decoder, base, batch, offsets))
    # End of input: each stage's idle rule closes what is still open, in pipeline order.
    if base.plan_idle_advance():
        to_tier(base.apply_idle_advance())
    if tier.plan_idle_advance():
        out.records += _consume(tier.apply_idle_advance(), TIER_MS, offsets, 2)
    out.end_offset = offsets[2]
    return out


def detect(rollups: Rollups, config: DetectConfig, batch: int = 500) -> RunOutput:
    """The detector over the 1 m rollups, consumed in batches of `batch` records."""
    detector = TracingDetector(config)
    events: list[dict[str, Any]] = []
    records = rollups.records
    for i in range(0, len(records), batch):
        part = records[i : i + batch]
        end = part[-1][0] + 1 if i + batch < len(records) else rollups.end_offset
        events += [e.body for e in detector.process(part, end).events]
    if detector.plan_idle_advance():
        events += [e.body for e in detector.apply_idle_advance()]
    tracks = {(key.split("|")[0], stat): t for (key, stat), t in detector.tracks.items()}
    return RunOutput(events, detector.trace, tracks, rollups)


def run(scenario: Scenario, config: DetectConfig | None = None) -> RunOutput:
    return detect(minute_rollups(scenario), config or DetectConfig())


def _aggregate(
    decoder: Decoder, base: PartitionAggregator, batch: list[tuple[bytes, int]], offsets: list[int]
) -> list[Rollup]:
    if not batch:
        return []
    first = offsets[0]
    offsets[0] += len(batch)
    result = decoder.decode_lists(
        [m for m, _ in batch], list(range(first, offsets[0])), [t for _, t in batch]
    )
    if result.rejects:
        raise RuntimeError(f"the benchmark's own input was rejected: {result.rejects[0]}")
    step = base.process(result.columns, offsets[0])
    if len(step.late):
        raise RuntimeError(f"{len(step.late)} samples late in an in-order scenario")
    return step.rollups


def _consume(
    rollups: list[Rollup], resolution_ms: int, offsets: list[int], topic: int
) -> list[tuple[int, WireRollup]]:
    """The rollups as the next stage's consumer reads them: encoded, then decoded."""
    first = offsets[topic]
    offsets[topic] += len(rollups)
    return [(first + i, decode_rollup(r.encode(), resolution_ms)) for i, r in enumerate(rollups)]
