"""How a rollup becomes Prometheus series: names, labels, units and metadata (docs/remote-write.md).

Two schemes (setting `naming`):

`aggregation` (default) follows Prometheus' recording-rule convention `level:metric:operations`
as VictoriaMetrics' stream aggregation applies it to the same job, `<metric>:<interval>_<output>`:

    timer   pNN   <base>:<res>_quantiles{quantile="0.99"}   in the base unit
            count <base>:<res>_count_samples                samples in the window
            sum   <base>:<res>_sum_samples                  in the base unit
            min, max  <base>:<res>_min, <base>:<res>_max     in the base unit
    gauge   pNN, count, min, max as timers; mean <base>:<res>_avg (a sum of gauge values is
            meaningless on its own)
    counter sum   <base>_total:<res>_increase              increase over the window (delta and
            rate  <base>_total:<res>_rate                  cumulative alike), increase per second
            count <base>_total:<res>_count_samples         reports in the window

`<base>` is the sanitized name plus the unit word (units.py: `http.server.duration` in `ms` →
`http_server_duration_seconds`, values divided by 1000). Not sent, because they follow from
what is: a timer's mean (`sum_samples / count_samples`, which also averages correctly across
series), samples per second of timers and gauges (`count_samples` / window seconds), a
counter's min/max/mean (of the reported deltas or running totals: no property of what is
counted). No `resolution` label: the interval is in the name. No name ends in `_count`,
`_sum`, `_bucket` or `_total`, whose Prometheus meaning (cumulative) these per-window values
do not have.

`flat` is the earlier scheme, kept for existing dashboards: `<name>{quantile}`, `<name>_count`,
`_sum`, `_min`, `_max`, `_rate` with a `resolution` label and the values in the reported unit.

Labels (both schemes): `service`, `region`, the series' own labels, `quantile` for quantiles,
and `resolution` for `flat`. Sanitizing follows Prometheus' data model: in a metric name every
character outside `[a-zA-Z0-9_:]` becomes `_`, a leading digit gets a `_` prefix; label names
the same with `[a-zA-Z0-9_]`. An own label whose sanitized name is `service`, `region`,
`resolution`, `quantile`, starts with `__` or is already taken gets `exported_` prepended until
it is free (in order of the original names: deterministic). Empty label values are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Literal

from pipeline.sinks.remote_write.units import NO_UNIT, PromUnit, prom_unit

Labels = tuple[tuple[str, str], ...]
Scheme = Literal["aggregation", "flat"]
SCHEMES: tuple[Scheme, ...] = ("aggregation", "flat")

RESERVED_LABELS = frozenset({"service", "region", "resolution", "quantile"})
EXPORTED_PREFIX = "exported_"
#: The rollup fields every scheme may send (percentiles come as keys like "p99").
STATISTICS = ("count", "sum", "min", "max", "mean", "rate")

_NOT_IN_METRIC_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_NOT_IN_LABEL_NAME = re.compile(r"[^a-zA-Z0-9_]")

# (rollup statistic, output suffix, value in the series' unit?) per type, aggregation scheme.
_VALUE_OUTPUTS = {"count": ("count_samples", False), "min": ("min", True), "max": ("max", True)}
_AGGREGATION: dict[str, dict[str, tuple[str, bool]]] = {
    "timer": {**_VALUE_OUTPUTS, "sum": ("sum_samples", True)},
    "gauge": {**_VALUE_OUTPUTS, "mean": ("avg", True)},
    "counter": {
        "count": ("count_samples", False),
        "sum": ("increase", True),
        "rate": ("rate", True),
    },
}
_FLAT = ("count", "sum", "min", "max", "rate")
_HELP = {
    "quantiles": "Quantiles (label quantile, t-digest) of the values",
    "count_samples": "Number of samples reported",
    "sum_samples": "Sum of the values",
    "min": "Smallest value",
    "max": "Largest value",
    "avg": "Mean of the values",
    "increase": "Increase of the counter",
    "rate": "Increase of the counter per second",
}


class NotExported(ValueError):
    """The statistic is not sent under this scheme (the message says how to derive it)."""


@dataclass(frozen=True, slots=True)
class Family:
    """Remote-write metadata of one metric family (every family here is a gauge: each sample
    describes one window, nothing accumulates across windows)."""

    name: str
    help: str
    unit: str
    type: str = "gauge"


@dataclass(frozen=True, slots=True)
class Output:
    """One series a rollup statistic becomes: `statistic` is the rollup field ("count",
    "sum", "min", "max", "mean", "rate") or a percentile key ("p99")."""

    statistic: str
    metric: str
    quantile: str | None
    unit: PromUnit
    family: Family


def metric_name(name: str) -> str:
    """A valid Prometheus metric name for `name` (see the module docstring)."""
    clean = _NOT_IN_METRIC_NAME.sub("_", name)
    return "_" + clean if not clean or clean[0].isdigit() else clean


def label_name(name: str) -> str:
    """A valid Prometheus label name for `name` (reserved-name handling is separate)."""
    clean = _NOT_IN_LABEL_NAME.sub("_", name)
    return "_" + clean if not clean or clean[0].isdigit() else clean


def quantile_value(percentile_key: str) -> str:
    """ "p50" → "0.5", "p99.9" → "0.999" (decimal arithmetic: no float noise in the label)."""
    if not percentile_key.startswith("p"):
        raise ValueError(f"not a percentile key: {percentile_key!r}")
    try:
        fraction = Decimal(percentile_key[1:]) / 100
    except InvalidOperation:
        raise ValueError(f"not a percentile key: {percentile_key!r}") from None
    if not 0 < fraction < 1:
        raise ValueError(f"percentile out of range: {percentile_key!r}")
    return format(fraction.normalize(), "f")


def base_labels(service: str, region: str, resolution: str | None, own: dict[str, str]) -> Labels:
    """The labels every series of one rollup shares (no __name__, no quantile), unsorted;
    `resolution` None leaves that label out."""
    labels = {"service": service, "region": region}
    if resolution is not None:
        labels["resolution"] = resolution
    for original in sorted(own):
        value = own[original]
        name = label_name(original)
        while name in RESERVED_LABELS or name.startswith("__") or name in labels:
            name = EXPORTED_PREFIX + name
        labels[name] = value
    return tuple((k, v) for k, v in labels.items() if v != "")


def base_name(name: str, metric_type: str, unit: str) -> str:
    """`<sanitized name>[_<unit word>][_total]`, OpenTelemetry's rules: the unit word is not
    repeated when the name already has it as a `_`-separated part (`bytes.sent` in `By` stays
    `bytes_sent`), counters end in `_total` exactly once."""
    clean = metric_name(name)
    word = prom_unit(unit, metric_type).word
    parts = clean.split("_")
    if word and word not in parts and not clean.endswith("_" + word):
        clean = f"{clean}_{word}"
    if metric_type == "counter":
        clean = clean.removesuffix("_total") + "_total"
    return clean


def _check_type(metric_type: str) -> None:
    if metric_type not in _AGGREGATION:
        raise ValueError(f"unknown metric type {metric_type!r}")


@lru_cache(maxsize=4096)
def outputs(
    name: str,
    metric_type: str,
    unit: str,
    resolution: str,
    percentile_keys: tuple[str, ...] = (),
    scheme: Scheme = "aggregation",
) -> tuple[Output, ...]:
    """Every series one rollup of this metric becomes, statistics first, then quantiles in
    the order of `percentile_keys` (counters have none). Cached: many series share a metric."""
    _check_type(metric_type)
    keys = () if metric_type == "counter" else percentile_keys
    quantiles = [(key, quantile_value(key)) for key in keys]
    described = f"{name} ({metric_type}, reported in {unit or 'no unit'})"
    if scheme == "flat":
        flat = metric_name(name)
        help_end = f" of {described} per window (label resolution), in the reported unit."
        out = [
            Output(
                stat, f"{flat}_{stat}", None, NO_UNIT, Family(f"{flat}_{stat}", stat + help_end, "")
            )
            for stat in _FLAT
        ]
        family = Family(flat, "Quantiles" + help_end, "")
        return (*out, *(Output(key, flat, q, NO_UNIT, family) for key, q in quantiles))
    base = base_name(name, metric_type, unit)
    converted = prom_unit(unit, metric_type)
    interval = _NOT_IN_METRIC_NAME.sub("_", resolution)  # `10s` may start with a digit here
    out = []
    for stat, (suffix, in_unit) in _AGGREGATION[metric_type].items():
        metric = f"{base}:{interval}_{suffix}"
        unit_word = converted.word if in_unit and suffix != "rate" else ""
        family = Family(
            metric, f"{_HELP[suffix]} of {described} per {resolution} window.", unit_word
        )
        out.append(Output(stat, metric, None, converted if in_unit else NO_UNIT, family))
    if quantiles:
        metric = f"{base}:{interval}_quantiles"
        family = Family(
            metric, f"{_HELP['quantiles']} of {described} per {resolution} window.", converted.word
        )
        out.extend(Output(key, metric, q, converted, family) for key, q in quantiles)
    return tuple(out)


def series_name(
    name: str,
    metric_type: str,
    unit: str,
    statistic: str,
    resolution: str,
    scheme: Scheme = "aggregation",
) -> str:
    """The Prometheus metric name one statistic of a metric is stored under — the one place
    dashboards and alert rules should take names from. `statistic`: "count", "sum", "min",
    "max", "mean", "rate" or a percentile key like "p99" (the series then also carries
    `quantile_value(statistic)` as its `quantile` label, see `selector`).

    >>> series_name("http.server.duration", "timer", "ms", "p99", "1m")
    'http_server_duration_seconds:1m_quantiles'
    >>> series_name("http.requests", "counter", "1", "rate", "1m")
    'http_requests_total:1m_rate'

    Raises NotExported for a statistic the scheme does not send, ValueError for an unknown
    type or statistic.
    """
    percentiles = (statistic,) if statistic.startswith("p") else ()
    if not percentiles and statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}")
    if percentiles and metric_type == "counter":
        raise NotExported("counters have no percentiles")
    for output in outputs(name, metric_type, unit, resolution, percentiles, scheme):
        if output.statistic == statistic:
            return output.metric
    raise NotExported(_not_exported(metric_type, statistic, scheme))


def selector(
    name: str,
    metric_type: str,
    unit: str,
    statistic: str,
    resolution: str,
    scheme: Scheme = "aggregation",
) -> str:
    """A PromQL selector for one statistic: the series name, with the quantile matcher for
    percentiles (`http_server_duration_seconds:1m_quantiles{quantile="0.99"}`)."""
    metric = series_name(name, metric_type, unit, statistic, resolution, scheme)
    if statistic.startswith("p"):
        return f'{metric}{{quantile="{quantile_value(statistic)}"}}'
    return metric


def _not_exported(metric_type: str, statistic: str, scheme: Scheme) -> str:
    if scheme == "flat":
        return "the flat scheme sends no mean: divide _sum by _count"
    if statistic == "mean" and metric_type == "timer":
        return "a timer's mean is <base>:<res>_sum_samples / <base>:<res>_count_samples"
    if statistic == "rate":
        return "samples per second: <base>:<res>_count_samples divided by the window's seconds"
    if metric_type == "gauge" and statistic == "sum":
        return "a gauge's sum is not sent: use <base>:<res>_avg (× _count_samples)"
    return f"a counter's {statistic} is not sent (of the reported values, not what is counted)"
