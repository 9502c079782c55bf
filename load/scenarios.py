"""The benchmark's workloads, and loading them into the broker before anything is timed.

Standard workload (README, Performance): 1,000 timer series (50 services × 4 regions × 5 names), 300
s of event time, 10 s windows, producer key `service|region`, one instance, no labels, no bad input.
The encodings differ only in how samples are packed into messages:

- single: one JSON sample per message, sent 0..2 s after its event time;
- array: JSON arrays of 100 samples (one producer key per flush);
- columnar: one series per message with 1,000 points.

For the batch encodings the flush interval is derived from the per-series rate so that every
message really holds `batch_size` samples, and the send jitter is 0 (the flush delay dominates).
A batch flushed every F ms carries event times up to F ms old, so the worker's allowed lateness is
raised to F + 5 s where F > 5 s (columnar: 155 s); otherwise it stays the default 5 s.

After the workload, one "tick" sample per input partition (series `bench|tick-N/bench.tick`, keyed
so it lands on that partition) moves every partition's watermark past the last workload window, so
every window closes by watermark, not by the idle timeout. The tick windows stay open (not counted).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import orjson

from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.kafka.partitioner import owner_partition
from pipeline.loadgen.build import Workload, generate
from pipeline.loadgen.produce import ProduceStats, produce
from pipeline.loadgen.spec import Encoding, Message, WorkloadSpec

RESOLUTION_MS = 10_000
DEFAULT_LATENESS_MS = 5_000
TICK_NAME = "bench.tick"
TICK_SERVICE = "bench"
STANDARD_SAMPLES = 2_000_000
STANDARD_SERIES = 1_000
ARRAY_BATCH = 100
COLUMNAR_BATCH = 1_000
ENCODINGS: tuple[Encoding, ...] = ("single", "array", "columnar")
# The single encoding again, produced as an unconfigured librdkafka client does: most samples
# land on a partition that does not own their series and are forwarded by the worker.
DEFAULT_PARTITIONER_SCENARIO = "single-default-partitioner"
SCENARIOS: tuple[str, ...] = (*ENCODINGS, DEFAULT_PARTITIONER_SCENARIO)
# The single encoding with labels on every metric name (one or two labels, two values of one of
# them, so twice the series), as most real streams carry. Run by name (`--encoding`); `make
# bench` leaves it out to stay within its time.
LABELLED_SCENARIO = "single-labelled"
EXTRA_SCENARIOS: tuple[str, ...] = (LABELLED_SCENARIO,)

_STANDARD = WorkloadSpec(
    seed=2026,
    services=50,
    regions=4,
    timers=5,
    gauges=0,
    delta_counters=0,
    cumulative_counters=0,
    instances=1,
    labelled_fraction=0.0,
    duration_s=300.0,
    samples=STANDARD_SAMPLES,
)


@dataclass(frozen=True)
class Scenario:
    """A workload plus the worker settings it needs (allowed lateness)."""

    name: str
    spec: WorkloadSpec
    lateness_ms: int
    partitioner: str = "murmur2_random"  # librdkafka's name; murmur2 puts records on the owner

    @property
    def tick_ts_ms(self) -> int:
        """Event time of the tick samples: past the last window end + lateness, with a margin."""
        end = self.spec.start_ms + self.spec.duration_ms
        last_window_end = -(-end // RESOLUTION_MS) * RESOLUTION_MS
        # Within a partition clock's jump limit (1 min), so the tick moves it at once.
        return last_window_end + self.lateness_ms + 1_000


def lateness_for(spec: WorkloadSpec) -> int:
    """Allowed lateness (ms) under which none of the spec's samples is late."""
    if spec.max_disorder_ms <= DEFAULT_LATENESS_MS:
        return DEFAULT_LATENESS_MS
    return math.ceil(spec.max_disorder_ms / 1000) * 1000 + DEFAULT_LATENESS_MS


def standard_scenario(name: str, samples: int = STANDARD_SAMPLES) -> Scenario:
    """The standard workload (scaled to `samples`) in one encoding (or the default-partitioner
    scenario)."""
    if name == DEFAULT_PARTITIONER_SCENARIO:
        single = standard_scenario("single", samples)
        return replace(single, name=name, partitioner="consistent_random")
    if name == LABELLED_SCENARIO:
        return replace(labelled(standard_scenario("single", samples), 1.0), name=name)
    encoding: Encoding = name  # type: ignore[assignment]
    spec = replace(_STANDARD, samples=samples, encoding=encoding)
    if encoding != "single":
        rate = samples / STANDARD_SERIES / spec.duration_s  # samples/s per series
        if encoding == "array":
            per_flush_rate = rate * (STANDARD_SERIES / (spec.services * spec.regions))
            batch = ARRAY_BATCH
        else:
            per_flush_rate = rate
            batch = COLUMNAR_BATCH
        flush_ms = round(batch / per_flush_rate * 1000) if per_flush_rate > 0 else spec.duration_ms
        flush_ms = max(1, min(flush_ms, spec.duration_ms))
        spec = replace(
            spec,
            batch_size=batch,
            flush_interval_ms=flush_ms,
            max_jitter_ms=0,
            late_by_ms=max(spec.late_by_ms, spec.late_guard_ms + flush_ms + 1),
        )
    return Scenario(encoding, spec, lateness_for(spec))


def labelled(scenario: Scenario, fraction: float) -> Scenario:
    """`scenario` with labels on that share of its metric names (loadgen's labelled_fraction)."""
    return replace(scenario, spec=replace(scenario.spec, labelled_fraction=fraction))


def hot_scenario(samples: int = 300_000) -> Scenario:
    """Accuracy: 20 timer series over 60 s (300,000 samples: 2,500 per series-window, so each
    window passes raw_limit=1024 and its percentiles come from the t-digest)."""
    spec = replace(
        _STANDARD,
        seed=99,
        services=5,
        regions=4,
        timers=1,
        duration_s=60.0,
        samples=samples,
        encoding="single",
    )
    return Scenario("hot", spec, lateness_for(spec))


def tick_keys(partitions: int) -> list[bytes]:
    """One producer key per partition, `bench|tick-N`, that Kafka's partitioner sends there."""
    found: dict[int, bytes] = {}
    n = 0
    while len(found) < partitions:
        key = f"{TICK_SERVICE}|tick-{n}".encode()
        found.setdefault(owner_partition(key, partitions), key)
        n += 1
    return [found[p] for p in range(partitions)]


def tick_messages(scenario: Scenario, partitions: int) -> list[Message]:
    """One record per partition, after the workload, that moves the partition's clock past
    every window (see `ticks_at`)."""
    return ticks_at(scenario.tick_ts_ms, partitions)


def ticks_at(ts: int, partitions: int) -> list[Message]:
    """One record per partition (murmur2 keys), event time `ts`, that moves the partition's
    clock there. It holds two tick series: a partition's clock jumps further than its limit
    (one minute) at once only when two series confirm it, and a columnar workload's clock can
    trail the end by minutes (each record spans many minutes of one series)."""
    out = []
    for key in tick_keys(partitions):
        service, region = key.decode().split("|")
        samples = [
            {
                "service": service,
                "region": region,
                "name": TICK_NAME,
                "type": "gauge",
                "unit": "1",
                "labels": {"tick": tick},
                "ts": ts,
                "value": 0,
            }
            for tick in ("a", "b")
        ]
        out.append(Message(key, orjson.dumps(samples), ts))
    return out


@dataclass(frozen=True, eq=False)
class Loaded:
    """A scenario generated and produced to `topic` (workload, then the ticks)."""

    scenario: Scenario
    workload: Workload
    topic: str
    partitions: int
    produce_stats: ProduceStats

    @property
    def samples(self) -> int:
        """Workload samples (the ticks excluded)."""
        return self.workload.manifest.samples_total

    @property
    def messages(self) -> int:
        """Every message on the topic, ticks included."""
        return self.workload.manifest.messages + self.partitions


def preload(
    bootstrap: str,
    scenario: Scenario,
    topic: str,
    partitions: int,
    progress: Callable[[int], None] | None = None,
) -> Loaded:
    """Generate the scenario and produce it, then the ticks; returns once all are delivered."""
    workload = generate(scenario.spec)
    ensure_topics(bootstrap, [TopicSpec(topic, partitions)])
    stats = produce(
        bootstrap,
        topic,
        workload.messages(),
        progress=progress,
        progress_every=max(1, workload.manifest.messages // 50),
        partitioner=scenario.partitioner,
    )
    produce(bootstrap, topic, tick_messages(scenario, partitions))
    return Loaded(scenario, workload, topic, partitions, stats)
