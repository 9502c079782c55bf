"""Workload specs the integration tests share."""

from __future__ import annotations

from typing import Any

from pipeline.loadgen.spec import WorkloadSpec

#: Series of every kind per service and region: 2 timers, a gauge, a delta and a cumulative
#: counter, so one run exercises every aggregation path.
EVERY_KIND: dict[str, Any] = {
    "timers": 2,
    "gauges": 1,
    "delta_counters": 1,
    "cumulative_counters": 1,
}


def mixed_spec(**fields: Any) -> WorkloadSpec:
    """A workload with series of every kind; `fields` (seed, services, regions, duration_s,
    samples, ...) set the rest and may change the mix."""
    return WorkloadSpec(**{**EVERY_KIND, **fields})
