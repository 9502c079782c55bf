"""One /metrics for several worker processes: their Prometheus text exposition merged into one.

Every child process is a whole worker with its own registry, so the same series appear once per
child. They are combined sample by sample (same name, same labels): counters, histograms and
most gauges add up (messages consumed, open windows, assigned partitions), while gauges that
are moments or limits take the value that stays meaningful for the group — the earliest first
input, the latest delivery, the worst lag, `kafka_reachable` only if every child reaches Kafka.

A child that dies restarts from zero. Its counters' last scraped values are kept ("retired")
and added to the sum, so a merged counter never goes down when a child is replaced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

_P = "metrics_pipeline_"
Combine = Callable[[float, float], float]


def _min_set(a: float, b: float) -> float:
    """The earliest of two timestamps where 0 means "not yet"."""
    if a == 0:
        return b
    if b == 0:
        return a
    return min(a, b)


# sample name → how two children's values combine (the default is their sum)
_COMBINE: dict[str, Combine] = {
    _P + "first_input_timestamp_seconds": _min_set,
    _P + "last_rollup_delivered_timestamp_seconds": max,
    _P + "kafka_reachable": min,
    _P + "watermark_lag_seconds": max,
    _P + "checkpoint_age_seconds": max,
    _P + "build_info": max,
    "python_info": max,
    "process_start_time_seconds": min,
    "process_max_fds": min,
}
# kinds whose samples only grow during a process's life (kept when their process is replaced)
_MONOTONIC_KINDS = frozenset({"counter", "histogram", "summary"})

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def _combine_for(sample_name: str) -> Combine:
    found = _COMBINE.get(sample_name)
    if found is not None:
        return found
    if sample_name.endswith("_created"):  # creation time of a counter or histogram
        return _min_set
    return _add


def _add(a: float, b: float) -> float:
    return a + b


@dataclass
class Family:
    name: str
    documentation: str
    kind: str
    samples: dict[SampleKey, float] = field(default_factory=dict)


def parse_exposition(text: str) -> dict[str, Family]:
    """Prometheus text (as a worker serves it) → families by name, samples by (name, labels)."""
    out: dict[str, Family] = {}
    for family in text_string_to_metric_families(text):
        merged = out.setdefault(family.name, Family(family.name, family.documentation, family.type))
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            merged.samples[key] = sample.value
    return out


def merge(expositions: Iterable[dict[str, Family]]) -> dict[str, Family]:
    """Several processes' parsed metrics → one set, sample by sample (see the module doc)."""
    out: dict[str, Family] = {}
    for families in expositions:
        for name, family in families.items():
            merged = out.get(name)
            if merged is None:
                out[name] = Family(name, family.documentation, family.kind, dict(family.samples))
                continue
            for key, value in family.samples.items():
                known = merged.samples.get(key)
                merged.samples[key] = value if known is None else _combine_for(key[0])(known, value)
    return out


def monotonic_part(families: dict[str, Family]) -> dict[str, Family]:
    """The counters and histograms of a process (what must survive its replacement)."""
    out: dict[str, Family] = {}
    for name, family in families.items():
        if family.kind not in _MONOTONIC_KINDS:
            continue
        kept = {k: v for k, v in family.samples.items() if not k[0].endswith("_created")}
        out[name] = Family(name, family.documentation, family.kind, kept)
    return out


class MergedChildren(Collector):
    """A collector serving the merge of what `scrape()` returns (one parsed exposition per live
    child) plus what retired children had counted."""

    def __init__(self, scrape: Callable[[], list[dict[str, Family]]]) -> None:
        self._scrape = scrape
        self._retired: dict[str, Family] = {}

    def retire(self, last_seen: dict[str, Family]) -> None:
        """Keep a dead child's last counters in every later sum."""
        self._retired = merge([self._retired, monotonic_part(last_seen)])

    def collect(self) -> Iterator[Metric]:
        for family in merge([self._retired, *self._scrape()]).values():
            metric = Metric(family.name, family.documentation, family.kind)
            for (name, labels), value in family.samples.items():
                metric.add_sample(name, dict(labels), value)
            yield metric
