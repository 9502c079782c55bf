"""Tier worker throughput: 10 s rollups of the standard workload in, 1 m rollups out.

`python -m load.tier_bench [--samples N]` builds the base rollups of the benchmark's standard
workload with the framework-free core (no Kafka), pre-loads them into a rollup topic on the
embedded broker (routed as the rollup worker routes them), then runs one tier step (10s → 1m) in
this process and times it from its first consumed record to its last rollup acknowledged by
Kafka; CPU is this process's over the same interval. It verifies what it timed: every sample of
the base rollups is in exactly one 1 m rollup. Medians of 3 runs.
"""

from __future__ import annotations

import resource
import statistics
import threading
import time
import uuid
from dataclasses import replace

import typer
from confluent_kafka import Producer

from load.scenarios import standard_scenario, tick_keys
from pipeline.core.aggregator import PartitionAggregator, WindowConfig
from pipeline.core.decode import Decoder, RawMessage
from pipeline.core.rollup import Rollup
from pipeline.core.series import SeriesTable
from pipeline.demo import summary
from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.kafka.broker import EmbeddedBroker
from pipeline.kafka.partitioner import OwnerPartitions
from pipeline.kafka.tier_worker import TierWorker
from pipeline.loadgen.build import generate
from pipeline.settings import TierSettings

PARTITIONS = 8


def base_rollups(samples: int) -> list[Rollup]:
    scenario = standard_scenario("single", samples)
    work = generate(replace(scenario.spec, late_fraction=0.0))
    table = SeriesTable()
    decoder = Decoder(table)
    agg = PartitionAggregator("bench", 0, table, WindowConfig(10_000, scenario.lateness_ms))
    out: list[Rollup] = []
    offset = 0
    for chunk in work.chunks():
        raw = [RawMessage(m.value, offset + i, m.timestamp_ms) for i, m in enumerate(chunk)]
        offset += len(raw)
        out += agg.process(decoder.decode(raw).columns, offset).rollups
    if agg.plan_idle_advance():
        out += agg.apply_idle_advance()
    return out


def with_ticks(rollups: list[Rollup]) -> list[Rollup]:
    """One more rollup per partition, well after the others, so every 1 m window closes by the
    watermark (the idle rule's wall-clock wait would otherwise be timed too)."""
    last = max(r.body["window_start"] for r in rollups)
    ticks = []
    for key in tick_keys(PARTITIONS):
        service, region = key.decode().split("|")
        body = {**rollups[0].body, "window_start": last + 600_000, "window_end": last + 610_000}
        body["series"] = {**body["series"], "service": service, "region": region}
        body["series_key"] = f"tick|{service}|{region}"
        ticks.append(Rollup(f"tick-{service}-{region}", f"{service}|{region}", body))
    return rollups + ticks


def preload(bootstrap: str, topic: str, rollups: list[Rollup]) -> None:
    owner = OwnerPartitions(PARTITIONS)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for r in rollups:
        while True:
            try:
                producer.produce(
                    topic, r.encode(), r.key.encode(), partition=owner(r.routing_key.encode())
                )
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(60)


def run_once(bootstrap: str, prefix: str, expected: int, samples: int) -> tuple[float, float]:
    settings = TierSettings(
        bootstrap_servers=bootstrap,
        group_id=f"bench-tier-{uuid.uuid4().hex[:8]}",
        rollup_topic_prefix=prefix,
        deadletter_topic=prefix + "deadletter",
        checkpoint_topic=prefix + "checkpoints",
        input_resolution="10s",
        resolution="1m",
        idle_timeout="10m",  # the ticks close every window
        session_timeout_ms=6000,
        http_port=0,
        topic_partitions=PARTITIONS,
        create_topics=True,
    )
    worker = TierWorker(settings)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    while not worker.metrics.first_input_time._value.get():
        time.sleep(0.005)
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    while worker.metrics.delivered._value.get() < expected:
        time.sleep(0.005)
        if worker.failed:
            raise RuntimeError("tier worker failed")
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    seconds = (
        worker.metrics.last_delivery_time._value.get()
        - worker.metrics.first_input_time._value.get()
    )
    stop.set()
    thread.join(60)
    cpu = (cpu_end.ru_utime + cpu_end.ru_stime) - (cpu_start.ru_utime + cpu_start.ru_stime)
    outputs = summary.read_outputs(bootstrap, settings.output_topic, settings.deadletter_topic)
    counted = sum(
        r["count"] for r in outputs.rollups.values() if not r["series_key"].startswith("tick|")
    )
    if counted != samples or outputs.conflicting_duplicates:
        raise RuntimeError(f"verification failed: {counted} samples in 1 m rollups of {samples}")
    return seconds, cpu


def main(samples: int = typer.Option(2_000_000, help="Samples of the standard workload.")) -> None:
    rollups = base_rollups(samples)
    total = sum(r.body["count"] for r in rollups)
    minutes = len({(r.body["series_key"], r.body["window_start"] // 60_000) for r in rollups})
    runs: list[tuple[float, float]] = []
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        for _ in range(3):
            prefix = f"bench-tier-{uuid.uuid4().hex[:8]}."
            ensure_topics(bootstrap, [TopicSpec(prefix + "10s", PARTITIONS)])
            preload(bootstrap, prefix + "10s", with_ticks(rollups))
            runs.append(run_once(bootstrap, prefix, minutes, total))
    seconds = statistics.median(s for s, _ in runs)
    cpu = statistics.median(c for _, c in runs)
    print(
        f"tier 10s→1m: {len(rollups):,} rollups ({total:,} samples) → {minutes:,} rollups; "
        f"median of 3: {seconds:.2f} s, {len(rollups) / seconds:,.0f} rollups/s in, "
        f"{total / seconds:,.0f} samples/s represented, "
        f"{len(rollups) / max(cpu, 1e-9):,.0f} rollups per CPU-s"
    )


if __name__ == "__main__":
    typer.run(main)
