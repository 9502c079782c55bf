"""Self-metrics every process kind exposes next to its own: process_* and python_* (CPU,
memory, file descriptors, GC), build info, and for consumer-group stages the consumer lag per
partition, the age of the last checkpoint and the watermark lag per partition."""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

from confluent_kafka import Consumer, TopicPartition
from prometheus_client import (
    CollectorRegistry,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)

_PREFIX = "metrics_pipeline_"


def package_version() -> str:
    try:
        return version("metrics-pipeline")
    except PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


def add_process_collectors(registry: CollectorRegistry) -> None:
    """process_*, python_* and metrics_pipeline_build_info{version} on `registry` (the one a
    process serves on /metrics). Idempotent."""
    if registry in _with_process_collectors:
        return
    _with_process_collectors.add(registry)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    Gauge(
        _PREFIX + "build_info", "Always 1; the running version.", ["version"], registry=registry
    ).labels(package_version()).set(1)


_with_process_collectors: weakref.WeakSet[CollectorRegistry] = weakref.WeakSet()


class StageSelfMetrics:
    """The consumer-side truth of one stage, refreshed at every commit tick."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumer_lag = Gauge(
            _PREFIX + "consumer_lag_messages",
            "High watermark minus the consumer's position, per owned input partition.",
            ["topic", "partition"],
            registry=registry,
        )
        self.watermark_lag = Gauge(
            _PREFIX + "partition_watermark_lag_seconds",
            "Wall clock minus the partition's event-time watermark (partitions with data).",
            ["partition"],
            registry=registry,
        )
        self.last_checkpoint = time.time()
        Gauge(
            _PREFIX + "checkpoint_age_seconds",
            "Seconds since this process last wrote checkpoints and committed.",
            registry=registry,
        ).set_function(lambda: time.time() - self.last_checkpoint)
        self._labelled: set[tuple[str, str]] = set()

    def refresh(self, consumer: Consumer, topic: str, watermarks: Mapping[int, int]) -> None:
        """Lag gauges for the partitions owned now; gauges of partitions gone are removed."""
        now = time.time()
        owned = [TopicPartition(topic, p) for p in sorted(watermarks)]
        seen: set[tuple[str, str]] = set()
        for tp in consumer.position(owned) if owned else []:
            low, high = consumer.get_watermark_offsets(tp, cached=True)
            # No position before the first record is consumed: all that is retained is unread.
            position = tp.offset if tp.offset >= 0 else low
            if position >= 0 and high >= 0:  # negative: not fetched yet
                self.consumer_lag.labels(topic, str(tp.partition)).set(max(0, high - position))
                seen.add((topic, str(tp.partition)))
        for gone in self._labelled - seen:
            self.consumer_lag.remove(*gone)
        self._labelled = seen
        self.watermark_lag.clear()
        for partition, watermark in watermarks.items():
            if watermark > 0:
                self.watermark_lag.labels(str(partition)).set(now - watermark / 1000.0)

    def checkpointed(self) -> None:
        self.last_checkpoint = time.time()


_stage_metrics: weakref.WeakKeyDictionary[CollectorRegistry, StageSelfMetrics] = (
    weakref.WeakKeyDictionary()
)


def stage_self_metrics(registry: CollectorRegistry) -> StageSelfMetrics:
    """The stage metrics registered on `registry` (created on first use)."""
    found = _stage_metrics.get(registry)
    if found is None:
        found = _stage_metrics[registry] = StageSelfMetrics(registry)
    return found
