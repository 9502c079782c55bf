"""Checkpoints written by the release before the one-clock layout still restore after an upgrade.

`tests/data/checkpoints_v1.json` holds, per stage, a checkpoint record exactly as the previous
release wrote it to the checkpoint topic (layout version 1: max_ts/emitted_wm/advances and the
settings at the top level, stage state in `extra`), taken mid-stream, and the digest of what
that release emitted after restoring it and replaying the rest. The records were captured by
running the scenarios below on that release; the inputs are rebuilt here from fixed seeds.
Each scenario restores the old record with today's code and must emit the same bytes in the
same order — and the same as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from pipeline.core.aggregator import PartitionAggregator, WindowConfig
from pipeline.core.checkpoint import Checkpoint
from pipeline.core.columns import SampleColumns
from pipeline.core.decode import Decoder, RawMessage
from pipeline.core.detect.detector import DetectConfig, PartitionDetector
from pipeline.core.detect.drift import DriftConfig
from pipeline.core.detect.novelty import NoveltyConfig
from pipeline.core.digest import DigestConfig
from pipeline.core.rollup import Rollup
from pipeline.core.rollup_wire import WireRollup, decode_rollup
from pipeline.core.series import SeriesTable
from pipeline.core.tier import TierAggregator, TierConfig
from pipeline.errors import CheckpointError
from tests.support.synthetic_rollups import MINUTE, START, stream

from .helpers import BASE_MS, cumulative, messages, timers

FIXTURE = Path(__file__).parents[2] / "data" / "checkpoints_v1.json"
WINDOW = WindowConfig(10_000, 5_000)
TIER = TierConfig(10_000, 60_000, 10_000)


def digest_of(outputs: list[Rollup]) -> str:
    """Order and bytes of everything emitted."""
    h = hashlib.sha256()
    for r in outputs:
        h.update(r.key.encode() + b"\0" + r.encode() + b"\n")
    return h.hexdigest()


# -- the raw aggregator: counters, an unconfirmed clock jump, a planned idle advance ---------


@cache
def raw_messages() -> list[RawMessage]:
    rng = np.random.default_rng(11)
    samples: list[dict[str, Any]] = timers(rng, 1_500, span_ms=240_000, jitter_ms=4_000)
    for i in range(0, 1_500, 5):
        samples.insert(i, cumulative(samples[i]["ts"], float(i // 5 % 40), f"pod-{i % 3}"))
    skew = {"region": "eu", "name": "latency", "type": "timer", "value": 1.0}
    samples.insert(300, {**skew, "service": "ahead", "ts": BASE_MS + 8 * MINUTE})
    return messages(samples)


def raw_fresh() -> tuple[PartitionAggregator, Decoder]:
    table = SeriesTable()
    return PartitionAggregator("raw", 0, table, WINDOW, DigestConfig(raw_limit=16)), Decoder(table)


def raw_feed(agg: PartitionAggregator, dec: Decoder, msgs: list[RawMessage]) -> list[Rollup]:
    out: list[Rollup] = []
    for i in range(0, len(msgs), 97):
        part = msgs[i : i + 97]
        out += agg.process(dec.decode(part).columns, part[-1].offset + 1).rollups
    return out


def raw_until_checkpoint(cut: int) -> tuple[list[Rollup], bytes]:
    agg, dec = raw_fresh()
    msgs = raw_messages()
    out = raw_feed(agg, dec, msgs[:cut])
    agg.plan_idle_advance()  # planned and checkpointed, then the process dies before applying
    return out, agg.checkpoint().encode()


def raw_resume(saved: Checkpoint) -> list[Rollup]:
    agg, dec = raw_fresh()
    agg.restore(saved)
    out = raw_feed(agg, dec, raw_messages()[saved.offset :])
    if agg.plan_idle_advance():
        out += agg.apply_idle_advance()
    return out


# -- the raw aggregator with a repartition stream: forwarded counters, watermarks ------------


@dataclass
class Repartition:
    """Partition 0 of two owns every series but the one ahead (whose samples leave, so no
    window of it holds the resume offset back while its unconfirmed jump is in the checkpoint);
    its cumulative counters come back to it through the repartition log, with both partitions'
    watermarks (partition 1 trails by 3 s)."""

    log: list[tuple[int, SampleColumns, list[tuple[int, int, int]]]] = field(default_factory=list)
    next_offset: int = 0

    def append(self, agg: PartitionAggregator, foreign: SampleColumns) -> None:
        at = self.next_offset
        cols = SampleColumns(
            foreign.series, foreign.ts, foreign.value, foreign.instance,
            np.full(len(foreign), at, np.int64), foreign.index,
        )  # fmt: skip
        wm = agg.source_watermark
        self.log.append((at, cols, [(at + 1, 0, wm), (at + 2, 1, wm - 3_000)]))
        self.next_offset += 3


def forwarding_fresh(table: SeriesTable | None = None) -> tuple[PartitionAggregator, Decoder]:
    """`table`: the first run's, for a replay of its repartition log (which holds its ids)."""
    table = table or SeriesTable()

    def owners(series: np.ndarray) -> np.ndarray:
        return np.array([table.key_of(s).startswith("ahead|") for s in series.tolist()], np.int64)

    agg = PartitionAggregator(
        "raw", 0, table, WINDOW, DigestConfig(raw_limit=16), sources=2, owners=owners
    )
    return agg, Decoder(table)


@cache
def forwarding_log() -> tuple[list[Rollup], Repartition, PartitionAggregator, Decoder]:
    """The straight run up to the end: what partition 0 emitted, and its repartition log (the
    inputs are built once: every run only reads them)."""
    agg, dec = forwarding_fresh()
    log = Repartition()
    out: list[Rollup] = []
    msgs = raw_messages()
    for i in range(0, len(msgs), 97):
        part = msgs[i : i + 97]
        step = agg.process(dec.decode(part).columns, part[-1].offset + 1)
        out += step.rollups
        if len(step.foreign):
            log.append(agg, step.foreign)
            at, cols, marks = log.log[-1]
            out += agg.process_forwarded(cols, marks, at + 3).rollups
    return out, log, agg, dec


def forwarding_until_checkpoint(cut: int) -> tuple[list[Rollup], bytes]:
    agg, dec = forwarding_fresh()
    log = Repartition()
    out: list[Rollup] = []
    msgs = raw_messages()[:cut]
    for i in range(0, len(msgs), 97):
        part = msgs[i : i + 97]
        step = agg.process(dec.decode(part).columns, part[-1].offset + 1)
        out += step.rollups
        if len(step.foreign):
            log.append(agg, step.foreign)
            at, cols, marks = log.log[-1]
            out += agg.process_forwarded(cols, marks, at + 3).rollups
    return out, agg.checkpoint().encode()


def forwarding_resume(saved: Checkpoint) -> list[Rollup]:
    """Own input from the checkpoint's offset; the repartition log (as the first run wrote it)
    from the checkpoint's forwarded offset, each record once the own input has re-reached it."""
    _, log, first, _ = forwarding_log()
    agg, dec = forwarding_fresh(first.series)
    agg.restore(saved)
    pending = [r for r in log.log if r[0] >= agg.forwarded_next_offset]
    out: list[Rollup] = []
    msgs = raw_messages()[saved.offset :]
    for i in range(0, len(msgs), 97):
        part = msgs[i : i + 97]
        out += agg.process(dec.decode(part).columns, part[-1].offset + 1).rollups
        if pending:
            at, cols, marks = pending.pop(0)
            out += agg.process_forwarded(cols, marks, at + 3).rollups
    for at, cols, marks in pending:
        out += agg.process_forwarded(cols, marks, at + 3).rollups
    return out


# -- the tier: open coarse windows and a planned idle advance --------------------------------


@cache
def tier_children() -> list[tuple[int, WireRollup]]:
    agg, dec = raw_fresh()
    base = raw_feed(agg, dec, raw_messages())
    return [(i, decode_rollup(r.encode(), TIER.input_resolution_ms)) for i, r in enumerate(base)]


def tier_feed(tier: TierAggregator, children: list[tuple[int, WireRollup]]) -> list[Rollup]:
    out: list[Rollup] = []
    for i in range(0, len(children), 37):
        part = children[i : i + 37]
        out += tier.process(part, part[-1][0] + 1).rollups
    return out


def tier_until_checkpoint(cut: int) -> tuple[list[Rollup], bytes]:
    tier = TierAggregator("rollups", 0, TIER, DigestConfig())
    out = tier_feed(tier, tier_children()[:cut])
    tier.plan_idle_advance()
    return out, tier.checkpoint().encode()


def tier_resume(saved: Checkpoint) -> list[Rollup]:
    tier = TierAggregator("rollups", 0, TIER, DigestConfig())
    tier.restore(saved)
    out = tier_feed(tier, tier_children()[saved.offset :])
    if tier.plan_idle_advance():
        out += tier.apply_idle_advance()
    return out


# -- the detector: mid-incident, with an open episode and hysteresis flags -------------------


@cache
def detect_records() -> list[tuple[int, WireRollup]]:
    return stream(
        300,
        p99=lambda s, m, v: v * 5 if s == "b" and 100 <= m < 130 else v,
        silent=lambda s, m: s == "c" and m >= 250,
    )


def detect_feed(detector: PartitionDetector, records: list[tuple[int, WireRollup]]) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(records), 50):
        part = records[i : i + 50]
        out += detector.process(part, part[-1][0] + 1).events
    return out


# The release that wrote the fixture let a track's envelope fire onsets only from 300 windows;
# today's young envelope would make b's spike at window 100 an onset on its own window (a
# different, earlier episode), so these scenarios keep that release's onset warm-up.
AS_RELEASED = DetectConfig(
    novelty=NoveltyConfig(envelope_warmup=NoveltyConfig().warmup),
    drift=DriftConfig(enabled=False),  # that release had no CUSUM of small persistent shifts
)


def detect_until_checkpoint(cut: int) -> tuple[list[Rollup], bytes]:
    detector = PartitionDetector("rollups.1m", 0, AS_RELEASED)
    records = detect_records()
    crash_at = next(i for i, r in records if r.window_start >= START + cut * MINUTE)
    out = detect_feed(detector, records[:crash_at])
    return out, detector.checkpoint().encode()


def detect_resume(saved: Checkpoint) -> list[Rollup]:
    detector = PartitionDetector("rollups.1m", 0, AS_RELEASED)
    detector.restore(saved)
    out = detect_feed(detector, detect_records()[saved.offset :])
    if detector.plan_idle_advance():
        out += detector.apply_idle_advance()
    return out


@dataclass(frozen=True)
class Scenario:
    cut: int
    until_checkpoint: Callable[[int], tuple[list[Rollup], bytes]]
    resume: Callable[[Checkpoint], list[Rollup]]


SCENARIOS = {
    "raw": Scenario(1_000, raw_until_checkpoint, raw_resume),
    "raw-forwarding": Scenario(1_000, forwarding_until_checkpoint, forwarding_resume),
    "tier": Scenario(70, tier_until_checkpoint, tier_resume),
    "detect": Scenario(117, detect_until_checkpoint, detect_resume),
}


def capture() -> dict[str, Any]:
    """What the fixture holds, computed by the code at hand (run on the old release)."""
    fixture: dict[str, Any] = {}
    for name, scenario in SCENARIOS.items():
        _, raw = scenario.until_checkpoint(scenario.cut)
        after = scenario.resume(Checkpoint.decode(raw))
        fixture[name] = {"record": raw.decode(), "after": digest_of(after), "emitted": len(after)}
    return fixture


@pytest.fixture(scope="module")
def stored() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(FIXTURE.read_bytes())
    return doc


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_an_old_checkpoint_restores_to_the_same_output(name: str, stored: dict[str, Any]) -> None:
    scenario, old = SCENARIOS[name], stored[name]
    record = old["record"].encode()
    assert orjson.loads(record)["version"] == 1  # the previous release's layout
    after = scenario.resume(Checkpoint.decode(record))
    assert len(after) == old["emitted"] > 0
    assert digest_of(after) == old["after"]
    # ... which is also what today's own checkpoint, taken at the same point, replays to: it
    # resumes at the same offset with the same clock.
    _, raw_today = scenario.until_checkpoint(scenario.cut)
    today, upgraded = Checkpoint.decode(raw_today), Checkpoint.decode(record)
    assert (today.offset, today.clock) == (upgraded.offset, upgraded.clock)
    assert digest_of(scenario.resume(today)) == old["after"]


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"version": 3, "topic": "t"}', b'{"version": 2, "topic": "t"}', b"[]"],
    ids=["not-json", "unknown-version", "missing-fields", "not-an-object"],
)
def test_an_unreadable_checkpoint_is_refused_not_guessed(raw: bytes) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.decode(raw)
