"""Real rollups from the real worker, a sink runner in a thread, and what a TSDB must hold."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from load.tsdb import Stored
from pipeline.kafka.admin import TopicSpec, ensure_topics, high_watermarks
from pipeline.loadgen.build import generate
from pipeline.loadgen.produce import produce
from pipeline.loadgen.spec import WorkloadSpec
from pipeline.sinks.remote_write import RemoteWriteSettings, RemoteWriteSink
from pipeline.sinks.runner import SinkRunner
from tests.support.kafka_helpers import Record, read_all

from ..harness import stage_thread, wait_for, worker_settings, worker_thread

PARTITIONS = 4
#: Written out here rather than derived, so the naming code is checked against the README.
QUANTILE_LABEL = {"p50": "0.5", "p90": "0.9", "p95": "0.95", "p99": "0.99", "p99.9": "0.999"}
FLAT_STATISTICS = ("count", "sum", "min", "max", "rate")


def recent_spec(seed: int = 3, minutes_ago: int = 10, **overrides: Any) -> WorkloadSpec:
    """A small workload whose event times lie a few minutes before now (TSDBs accept them)."""
    start = (int(time.time() * 1000) - minutes_ago * 60_000) // 60_000 * 60_000
    values: dict[str, Any] = {
        "seed": seed,
        "services": 3,
        "regions": 2,
        "timers": 1,
        "gauges": 1,
        "delta_counters": 1,
        "cumulative_counters": 1,
        "start_ms": start,
        "duration_s": 120.0,
        "samples": 12_000,
    }
    values.update(overrides)
    return WorkloadSpec(**values)


def real_rollups(
    bootstrap: str, name: str, spec: WorkloadSpec, resolutions: Iterable[str] = ("10s",)
) -> list[str]:
    """Run the real worker (one per resolution) on the workload; returns the rollup topics."""
    workload = generate(spec)
    raw = f"raw-{name}"
    ensure_topics(bootstrap, [TopicSpec(raw, PARTITIONS)])
    produce(bootstrap, raw, workload.messages())
    topics = []
    for resolution in resolutions:
        settings = worker_settings(
            bootstrap,
            f"{name}-{resolution}",
            input_topic=raw,
            resolution=resolution,
            rollup_topic_prefix=f"rollups-{name}.",
        )
        with worker_thread(settings):
            outputs = wait_for(settings, PARTITIONS, workload.manifest.samples_total)
        assert outputs.samples_accounted == workload.manifest.samples_total
        topics.append(settings.output_topic)
    return topics


def copy_records(bootstrap: str, topic: str, records: Iterable[Record]) -> None:
    """Produce records to `topic` on the partition they came from, in order."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for r in records:
        producer.produce(topic, r.value, r.key, partition=r.partition)
    assert producer.flush(30) == 0


def sink_settings(
    bootstrap: str, name: str, url: str, topics: list[str], **overrides: Any
) -> RemoteWriteSettings:
    values: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "url": url,
        "topics": topics,
        "group_id": f"sink-{name}",
        "deadletter_topic": f"sink-deadletter-{name}",
        "topic_partitions": PARTITIONS,
        "batch_records": 500,
        "batch_interval": "200ms",
        "retry_initial": "100ms",
        "retry_max": "1s",
        "session_timeout_ms": 6000,
        "http_port": 0,
        "concurrency": 2,
        "timeout": "5s",
        "request_retries": 1,
        "request_retry_initial": "50ms",
        "request_retry_max": "200ms",
    }
    values.update(overrides)
    return RemoteWriteSettings(**values)


@contextmanager
def runner_thread(settings: RemoteWriteSettings) -> Iterator[SinkRunner]:
    sink = RemoteWriteSink(settings)
    try:
        with stage_thread(SinkRunner(settings, sink)) as runner:
            yield runner
    finally:
        sink.close()


def topic_ends(bootstrap: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    return {
        (topic, p): end
        for topic in topics
        for p, end in high_watermarks(bootstrap, topic).items()
        if end > 0
    }


def wait_committed(
    runner: SinkRunner, ends: dict[tuple[str, int], int], timeout: float = 90.0
) -> None:
    """Until the runner has committed every partition up to `ends`."""
    deadline = time.monotonic() + timeout
    while True:
        committed = dict(runner.totals.committed)
        if all(committed.get(tp, 0) >= end for tp, end in ends.items()):
            return
        assert time.monotonic() < deadline, f"committed {committed}, want {ends}"
        time.sleep(0.2)


def group_committed(bootstrap: str, group: str, partitions: Iterable[tuple[str, int]]) -> dict:
    """The group's committed offsets as Kafka holds them (an OffsetFetch; joins nothing)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=15)
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): tp.offset for tp in found}


def rollup_bodies(bootstrap: str, topics: Iterable[str]) -> list[dict[str, Any]]:
    import orjson

    return [orjson.loads(r.value or b"") for t in topics for r in read_all(bootstrap, t)]


def _identity(value: float) -> float:
    return value


#: unit → (name suffix, value conversion) for the units the workload generator reports; written
#: out here rather than derived, so the naming code is checked against docs/remote-write.md.
UNITS: dict[str, tuple[str, Callable[[float], float]]] = {
    "ms": ("_seconds", lambda v: v / 1000),
    "MiBy": ("_bytes", lambda v: v * 1048576),
    "By": ("_bytes", _identity),
    "%": ("_percent", _identity),
    "1": ("_ratio", _identity),
    "": ("", _identity),
}


def _aggregation_values(r: dict[str, Any]) -> dict[tuple[str, str | None], float]:
    s = r["series"]
    name = s["name"].replace(".", "_")
    suffix, convert = UNITS[s["unit"]]
    if s["type"] == "counter" and suffix == "_ratio":
        suffix = ""  # `1` is a ratio for gauges only
    if suffix[1:] in name.split("_"):
        suffix = ""  # bytes_sent in By stays bytes_sent
    res = r["resolution"]
    if s["type"] == "counter":
        base = f"{name}{suffix}_total:{res}"
        return {
            (f"{base}_increase", None): convert(r["sum"]),
            (f"{base}_rate", None): convert(r["rate"]),
            (f"{base}_count_samples", None): r["count"],
        }
    base = f"{name}{suffix}:{res}"
    values: dict[tuple[str, str | None], float] = {
        (f"{base}_count_samples", None): r["count"],
        (f"{base}_min", None): convert(r["min"]),
        (f"{base}_max", None): convert(r["max"]),
    }
    if s["type"] == "timer":
        values[(f"{base}_sum_samples", None)] = convert(r["sum"])
    else:
        values[(f"{base}_avg", None)] = convert(r["mean"])
    for key, value in r["percentiles"].items():
        values[(f"{base}_quantiles", QUANTILE_LABEL[key])] = convert(value)
    return values


def _flat_values(r: dict[str, Any]) -> dict[tuple[str, str | None], float]:
    s = r["series"]
    name = s["name"].replace(".", "_")
    values: dict[tuple[str, str | None], float] = {
        (f"{name}_{stat}", None): r[stat] for stat in FLAT_STATISTICS
    }
    if s["type"] != "counter":
        for key, value in r["percentiles"].items():
            values[(name, QUANTILE_LABEL[key])] = value
    return values


def expected_points(rollups: Iterable[dict[str, Any]], naming: str = "aggregation") -> Stored:
    """What the TSDB must hold for these rollups, per docs/remote-write.md (written out)."""
    points: dict[frozenset[tuple[str, str]], dict[int, float]] = {}
    for r in rollups:
        s = r["series"]
        base = {"service": s["service"], "region": s["region"]}
        if naming == "flat":
            base["resolution"] = r["resolution"]
        base.update(s["labels"])
        values = _flat_values(r) if naming == "flat" else _aggregation_values(r)
        for (metric, quantile), value in values.items():
            labels = {**base, "__name__": metric}
            if quantile is not None:
                labels["quantile"] = quantile
            points.setdefault(frozenset(labels.items()), {})[r["window_end"]] = float(value)
    return {k: sorted(v.items()) for k, v in points.items()}


def differences(stored: Stored, expected: Stored, rel: float = 0.0) -> list[str]:
    """What differs between stored and expected samples (repeats of one value allowed)."""
    problems: list[str] = []
    for key in expected.keys() - stored.keys():
        problems.append(f"missing series {dict(key)}")
    for key in stored.keys() - expected.keys():
        problems.append(f"unexpected series {dict(key)}")
    for key in expected.keys() & stored.keys():
        want = dict(expected[key])
        got: dict[int, list[float]] = {}
        for ts, value in stored[key]:
            got.setdefault(ts, []).append(value)
        if set(got) != set(want):
            problems.append(f"{dict(key)}: timestamps {sorted(got)} != {sorted(want)}")
            continue
        for ts, values in got.items():
            if not all(math.isclose(v, want[ts], rel_tol=rel, abs_tol=0.0) for v in values):
                problems.append(f"{dict(key)} @ {ts}: {values} != {want[ts]}")
    return problems
