"""How a rollup becomes Prometheus series: names, labels and the sanitizing rules.

A rollup of metric `name` (series labels service, region, its own labels; resolution r) becomes
samples at `window_end` (the value describes the window ending there) of:

    <name>{quantile="0.5"|"0.9"|…, service, region, resolution, own labels}   timers and gauges
    <name>_count, <name>_sum, <name>_min, <name>_max, <name>_rate          every type

Counters have no quantile series (their `_sum` is the increase over the window).

Sanitizing (Prometheus' data model): in a metric name every character outside
`[a-zA-Z0-9_:]` becomes `_`, and a name starting with a digit gets a leading `_`
(`http.server.duration` → `http_server_duration`, `5xx-rate` → `_5xx_rate`). Label names do the
same with `[a-zA-Z0-9_]` (no colon). An own label whose sanitized name is `service`, `region`,
`resolution`, `quantile`, starts with `__` (reserved by Prometheus) or equals a name already
taken gets `exported_` prepended until it is free (`quantile` → `exported_quantile`), taken in
order of the original names so the result is deterministic. Labels with an empty value are
left out (Prometheus treats an empty value as no label).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

Labels = tuple[tuple[str, str], ...]

RESERVED_LABELS = frozenset({"service", "region", "resolution", "quantile"})
EXPORTED_PREFIX = "exported_"
STATISTICS = ("count", "sum", "min", "max", "rate")

_NOT_IN_METRIC_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_NOT_IN_LABEL_NAME = re.compile(r"[^a-zA-Z0-9_]")


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


def base_labels(service: str, region: str, resolution: str, own: dict[str, str]) -> Labels:
    """The labels every series of one rollup shares (no __name__, no quantile), unsorted."""
    labels = {"service": service, "region": region, "resolution": resolution}
    for original in sorted(own):
        value = own[original]
        name = label_name(original)
        while name in RESERVED_LABELS or name.startswith("__") or name in labels:
            name = EXPORTED_PREFIX + name
        labels[name] = value
    return tuple((k, v) for k, v in labels.items() if v != "")


def _sorted(labels: Labels, name: str, *extra: tuple[str, str]) -> Labels:
    return tuple(sorted((("__name__", name), *labels, *extra)))


class SeriesNamer:
    """Turns rollup bodies into (sorted labels, timestamp ms, value) samples.

    The label sets of a series are cached by (series_key, resolution): a rollup stream repeats
    the same series every window. The cache is dropped when it reaches `cache_size` entries.
    """

    def __init__(self, cache_size: int = 200_000) -> None:
        self._cache: dict[tuple[str, str], dict[str, Labels]] = {}
        self._cache_size = cache_size

    def samples(self, body: dict[str, Any]) -> list[tuple[Labels, int, float]]:
        """Raises KeyError, TypeError or ValueError if `body` is not a usable rollup."""
        series = body["series"]
        resolution = str(body["resolution"])
        ts = int(body["window_end"])
        percentiles: dict[str, Any] = body["percentiles"] or {}
        if series["type"] == "counter":
            percentiles = {}
        cache_key = (str(body["series_key"]), resolution)
        names = self._cache.get(cache_key)
        if names is None or any(p not in names for p in percentiles):
            names = self._label_sets(series, resolution, percentiles)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[cache_key] = names
        out = [(names[p], ts, float(v)) for p, v in percentiles.items()]
        out.extend((names[stat], ts, float(body[stat])) for stat in STATISTICS)
        return out

    @staticmethod
    def _label_sets(
        series: dict[str, Any], resolution: str, percentiles: dict[str, Any]
    ) -> dict[str, Labels]:
        labels = series.get("labels") or {}
        if not isinstance(labels, dict):
            raise TypeError("series.labels is not an object")
        base = base_labels(
            str(series["service"]),
            str(series["region"]),
            resolution,
            {str(k): str(v) for k, v in labels.items()},
        )
        name = metric_name(str(series["name"]))
        sets = {p: _sorted(base, name, ("quantile", quantile_value(p))) for p in percentiles}
        sets.update({stat: _sorted(base, f"{name}_{stat}") for stat in STATISTICS})
        return sets
