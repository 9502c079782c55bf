"""The forwarding protocol of the core, simulated without Kafka: any partitioner, any speed.

Samples land on random partitions (as with a random or null-key partitioner). Each partition's
aggregator judges them against its own clock, keeps the ones it owns and returns the others;
the simulation appends those to the owner's repartition log, followed by the sender's
watermark, exactly as the worker produces them. A random scheduler then interleaves raw and
repartition consumption in random batch sizes — one partition racing through its backlog while
another lags is the catch-up case — and optionally crashes partitions back to their last
checkpoint. Whatever the schedule: no sample that is on time on its own partition is late,
every (series, window) is exact, and every rollup key carries the same bytes in every run.

With `hand_over`, the simulation is one process owning every partition, as a single worker is:
a sender's watermark is also handed straight to the owners that have read all it sent them
(kafka/local_watermarks.py), with acknowledgements of its records arriving at random later
steps. The rollups must be the same bytes as without the hand-over.
"""

from __future__ import annotations

import random
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.aggregator import FORWARD_STATE, PartitionAggregator, WindowConfig
from pipeline.core.checkpoint import Checkpoint
from pipeline.core.columns import SampleColumns
from pipeline.core.decode import Decoder, RawMessage
from pipeline.core.series import SeriesTable
from pipeline.kafka.forwarding import (
    SAMPLES_PER_FORWARD,
    ForwardDedup,
    decode_forward,
    forward_messages,
    parse_repartition_headers,
)
from pipeline.kafka.local_watermarks import LocalWatermarks

from .helpers import BASE_MS

RES = 10_000
LATE = 5_000
NO_BOUNDARY = -(2**62)


def streams_for(seed: int, partitions: int, n: int) -> tuple[list[list[RawMessage]], list[Any]]:
    """Samples of a few series in time order with ≤ 2 s disorder per partition, each put on a
    random partition: on time on the partition it lands on (lateness 5 s)."""
    rng = np.random.default_rng(seed)
    ts = BASE_MS + np.sort(rng.integers(0, 90_000, n)) + rng.integers(-2_000, 1, n)
    kinds = ["timer", "gauge", "counter"]
    streams: list[list[RawMessage]] = [[] for _ in range(partitions)]
    samples = []
    for i in range(n):
        s = int(rng.integers(0, 9))
        sample = {
            "service": f"svc{s % 3}",
            "region": "eu",
            "name": f"m{s // 3}",
            "type": kinds[s // 3],
            "value": float(rng.integers(0, 1000)) / 8,
            "ts": int(ts[i]),
        }
        samples.append(sample)
        p = int(rng.integers(0, partitions))
        streams[p].append(RawMessage(orjson.dumps(sample), len(streams[p]), int(ts[i])))
    return streams, samples


@dataclass
class Partition:
    agg: PartitionAggregator
    raw_pos: int = 0  # index of the next raw message
    fwd_pos: int = 0  # offset of the next repartition record
    dedup: ForwardDedup = field(default_factory=ForwardDedup)
    sent: int = NO_BOUNDARY
    saved: tuple[Checkpoint, dict[str, list[int]]] | None = None


class Simulation:
    def __init__(
        self, streams: list[list[RawMessage]], seed: int, crashes: bool, hand_over: bool = False
    ) -> None:
        self.hand_over = hand_over
        self.local = LocalWatermarks()
        self.unacked: list[tuple[Any, int]] = []  # (acknowledgement callback, offset), in order
        self.streams = streams
        self.n = len(streams)
        self.rng = random.Random(seed)
        self.crashes = crashes
        self.table = SeriesTable()
        n = self.n
        self.table.set_owner_function(lambda key: zlib.crc32(key.encode()) % n)
        self.decoder = Decoder(self.table)
        self.parts = [Partition(self._fresh(p)) for p in range(n)]
        self.logs: list[list[tuple[str, Any]]] = [[] for _ in range(n)]
        self.out: dict[str, bytes] = {}
        self.late = 0

    def _fresh(self, p: int) -> PartitionAggregator:
        return PartitionAggregator(
            "raw", p, self.table, WindowConfig(RES, LATE), sources=self.n, owners=self.table.owners
        )

    def _emit(self, rollups: list[Any]) -> None:
        for r in rollups:
            body = r.encode()
            assert self.out.setdefault(r.key, body) == body, f"{r.key} re-emitted differently"

    def _send_watermark(self, p: int) -> None:
        part = self.parts[p]
        wm = part.agg.source_watermark
        if wm // RES > part.sent:
            part.sent = wm // RES
            for o in range(self.n):
                self._append(o, ("wm", (p, wm)), self.local.watermark_sent(p, o))
            if self.hand_over:
                for o, owner in enumerate(self.parts):
                    if self.local.may_hand_over(p, o, owner.fwd_pos):
                        self._emit(owner.agg.take_local_watermark(p, wm))

    def _append(self, owner: int, record: tuple[str, Any], acknowledged: Any) -> None:
        self.logs[owner].append(record)
        self.unacked.append((acknowledged, len(self.logs[owner]) - 1))

    def _acknowledge_some(self) -> None:
        count = self.rng.randint(0, len(self.unacked))
        for acknowledged, offset in self.unacked[:count]:
            acknowledged(offset)
        del self.unacked[:count]

    def raw_step(self, p: int) -> bool:
        part = self.parts[p]
        batch = self.streams[p][part.raw_pos : part.raw_pos + self.rng.randint(1, 40)]
        if not batch:
            return False
        step = part.agg.process(self.decoder.decode(batch).columns, batch[-1].offset + 1)
        part.raw_pos += len(batch)
        self.late += len(step.late)
        foreign = step.foreign
        owners = self.table.owners(foreign.series)
        for offset in dict.fromkeys(foreign.offset.tolist()):
            for owner in sorted(set(owners[foreign.offset == offset].tolist())):
                mask = (foreign.offset == offset) & (owners == owner)
                self._append(
                    owner,
                    ("samples", (p, (offset, 0), foreign.take(mask))),
                    self.local.forward_sent(p, owner),
                )
        self._emit(step.rollups)
        self._send_watermark(p)
        return True

    def forwarded_step(self, p: int) -> bool:
        part = self.parts[p]
        records = self.logs[p][part.fwd_pos : part.fwd_pos + self.rng.randint(1, 20)]
        if not records:
            return False
        cols: list[SampleColumns] = []
        marks: list[tuple[int, int, int]] = []
        for i, (kind, payload) in enumerate(records):
            offset = part.fwd_pos + i
            if kind == "wm":
                marks.append((offset, *payload))
            else:
                c = payload[2]
                fresh = part.dedup.fresh(offset, payload[0], c.offset, c.index)
                c = c.take(fresh)
                at = np.full(len(c), offset, np.int64)
                cols.append(SampleColumns(c.series, c.ts, c.value, c.instance, at, c.index))
        part.fwd_pos += len(records)
        step = part.agg.process_forwarded(SampleColumns.concat(cols), marks, part.fwd_pos)
        self._emit(step.rollups)
        return True

    def checkpoint(self, p: int) -> None:
        part = self.parts[p]
        checkpoint = part.agg.checkpoint()
        dedup = part.dedup.fold(checkpoint.state[FORWARD_STATE]["offset"])
        part.saved = (Checkpoint.decode(checkpoint.encode()), dedup)

    def crash(self, p: int) -> None:
        """kill -9: back to the last checkpoint; what was produced since stays produced."""
        part = self.parts[p]
        if part.saved is None:
            return
        checkpoint, dedup = part.saved
        self.local.source_assigned(p)
        agg = self._fresh(p)
        agg.restore(checkpoint)
        self.parts[p] = Partition(
            agg,
            raw_pos=next(
                (i for i, m in enumerate(self.streams[p]) if m.offset >= checkpoint.offset),
                len(self.streams[p]),
            ),
            fwd_pos=agg.forwarded_next_offset,
            dedup=ForwardDedup(dedup),
            saved=part.saved,
        )

    def run(self) -> None:
        while True:
            p = self.rng.randrange(self.n)
            roll = self.rng.random()
            if self.rng.random() < 0.3:
                self._acknowledge_some()
            if self.crashes and roll < 0.03:
                self.checkpoint(p)
            elif self.crashes and roll < 0.04:
                self.crash(p)
            elif roll < 0.55:
                self.raw_step(p) or self.forwarded_step(p)
            else:
                self.forwarded_step(p) or self.raw_step(p)
            if self._drained() and not self._idle_round():
                return

    def _drained(self) -> bool:
        return all(
            part.raw_pos >= len(stream) and part.fwd_pos >= len(log)
            for part, stream, log in zip(self.parts, self.streams, self.logs, strict=True)
        )

    def _idle_round(self) -> bool:
        """Every input is read: the idle rule closes what is left (as after idle_timeout)."""
        moved = False
        for p, part in enumerate(self.parts):
            if part.agg.plan_idle_advance():
                self._emit(part.agg.apply_idle_advance())
                self._send_watermark(p)
                moved = True
        return moved


def exact(samples: list[dict[str, Any]]) -> dict[tuple[str, str, int], tuple[int, float, float]]:
    groups: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for s in samples:
        groups[(s["service"], s["name"], s["ts"] - s["ts"] % RES)].append(s["value"])
    return {k: (len(v), min(v), max(v)) for k, v in groups.items()}


def summarize(out: dict[str, bytes]) -> dict[tuple[str, str, int], tuple[int, float, float]]:
    bodies = [orjson.loads(b) for b in out.values()]
    return {
        (b["series"]["service"], b["series"]["name"], b["window_start"]): (
            b["count"],
            b["min"],
            b["max"],
        )
        for b in bodies
    }


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    partitions=st.integers(2, 4),
    schedules=st.tuples(st.integers(0, 2**16), st.integers(0, 2**16)),
)
def test_any_partitioning_and_schedule_gives_the_ideal_rollups(
    seed: int, partitions: int, schedules: tuple[int, int]
) -> None:
    streams, samples = streams_for(seed, partitions, 600)
    runs = []
    for schedule, hand_over in zip(schedules * 2, (False, False, True, True), strict=True):
        sim = Simulation(streams, schedule, crashes=False, hand_over=hand_over)
        sim.run()
        assert sim.late == 0
        runs.append(sim.out)
    assert summarize(runs[0]) == exact(samples)
    # every byte, whatever the interleaving and batching, with or without in-process hand-over
    assert runs[0] == runs[1] == runs[2] == runs[3]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), schedule=st.integers(0, 2**16))
def test_crashes_back_to_checkpoints_change_nothing(seed: int, schedule: int) -> None:
    streams, samples = streams_for(seed, 3, 600)
    calm = Simulation(streams, schedule, crashes=False)
    calm.run()
    for hand_over in (False, True):
        stormy = Simulation(streams, schedule + 1, crashes=True, hand_over=hand_over)
        stormy.run()
        assert stormy.late == 0
        assert summarize(stormy.out) == exact(samples)
        assert stormy.out == calm.out


def test_a_lagging_partition_holds_windows_instead_of_losing_its_samples() -> None:
    """Catch-up: partition 0 reads its whole backlog before partition 1 reads anything."""
    streams, samples = streams_for(7, 2, 800)
    sim = Simulation(streams, 0, crashes=False)
    while sim.raw_step(0):
        pass
    while sim.forwarded_step(0):
        pass
    held = sim.parts[0].agg.open_windows
    assert held > 0  # nothing from partition 1 yet: its windows cannot close
    sim.run()
    assert sim.late == 0
    assert summarize(sim.out) == exact(samples)


def test_forwards_are_split_and_replays_are_dropped_sample_by_sample() -> None:
    table = SeriesTable()
    decoder = Decoder(table)
    n = SAMPLES_PER_FORWARD * 2 + 7
    batch = [
        {"service": "a", "region": "eu", "name": "m", "type": "gauge", "value": float(i),
         "ts": BASE_MS + i}
        for i in range(n)
    ]  # fmt: skip
    cols: SampleColumns = decoder.decode_lists([orjson.dumps(batch)], [42], [BASE_MS]).columns
    records = forward_messages(cols, np.full(n, 3), table, 0)
    assert [r["partition"] for r in records] == [3, 3, 3]
    got = [decode_forward(r["value"], table) for r in records]
    assert [len(g.ts) for g in got] == [SAMPLES_PER_FORWARD, SAMPLES_PER_FORWARD, 7]
    assert np.concatenate([g.value for g in got]).tolist() == [float(i) for i in range(n)]
    assert {parse_repartition_headers(r["headers"]) for r in records} == {("samples", (0,))}
    dedup = ForwardDedup()
    taken = [dedup.fresh(i, 0, g.source_offset, g.source_index).sum() for i, g in enumerate(got)]
    assert taken == [SAMPLES_PER_FORWARD, SAMPLES_PER_FORWARD, 7]
    # A replaying source forwards again, batched differently: only what is new is taken.
    more = decoder.decode_lists([orjson.dumps(batch[:3])], [43], [BASE_MS]).columns
    again = forward_messages(SampleColumns.concat([cols, more]), np.full(n + 3, 3), table, 0)
    fresh = [
        int(dedup.fresh(10 + i, 0, g.source_offset, g.source_index).sum())
        for i, g in enumerate(decode_forward(r["value"], table) for r in again)
    ]
    assert sum(fresh) == 3


def test_a_record_that_is_no_forward_is_refused() -> None:
    with pytest.raises(ValueError):
        decode_forward(b'{"series": [], "s": [0]}', SeriesTable())


@pytest.mark.parametrize("header", [b"garbage", b"1:2", b"x:y:z", b""])
def test_unparsable_repartition_header_is_unexpected(header: bytes) -> None:
    assert parse_repartition_headers([("mp-fwd", header)]) == ("unexpected", ())
