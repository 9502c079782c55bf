"""One way to declare a process's Prometheus metrics: a prefix, a registry, and the labels every
metric of the set carries already bound (a sink's `sink="local"`), so each declaration is one
line saying what is counted."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

M = TypeVar("M", Counter, Gauge, Histogram)


class MetricDeclarations:
    """Metrics named `<prefix><name>` in `registry`. With `bound` labels, a metric without
    labels of its own comes back as its child for those values; one `by` further labels comes
    back as the family (label it with the bound values first)."""

    def __init__(
        self, registry: CollectorRegistry, prefix: str, bound: Mapping[str, str] | None = None
    ) -> None:
        self.registry = registry
        self.prefix = prefix
        self.bound = dict(bound or {})

    def counter(self, name: str, documentation: str, by: Sequence[str] = ()) -> Counter:
        return self._declare(
            Counter(*self._args(name, documentation, by), registry=self.registry), by
        )

    def gauge(self, name: str, documentation: str, by: Sequence[str] = ()) -> Gauge:
        return self._declare(
            Gauge(*self._args(name, documentation, by), registry=self.registry), by
        )

    def histogram(
        self, name: str, documentation: str, buckets: Sequence[float], by: Sequence[str] = ()
    ) -> Histogram:
        metric = Histogram(
            *self._args(name, documentation, by), buckets=buckets, registry=self.registry
        )
        return self._declare(metric, by)

    def _args(self, name: str, documentation: str, by: Sequence[str]) -> tuple[str, str, list[str]]:
        return self.prefix + name, documentation, [*self.bound, *by]

    def _declare(self, metric: M, by: Sequence[str]) -> M:
        if self.bound and not by:
            return metric.labels(*self.bound.values())
        return metric
