"""Rollup bodies → pre-encoded remote-write TimeSeries bytes, with the per-series work cached.

A rollup stream repeats the same series every window, so everything that depends only on the
series — names (naming.py), sanitized and sorted labels, their protobuf bytes (wire.py), the unit
conversion, the metadata families — is computed once per (series_key, resolution) and kept in a
`SeriesPlan`. Encoding a rollup is then one list of converted values and one `struct.pack` call
whose format interleaves the cached series heads, the doubles and the window's timestamp bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter, mul, truediv
from typing import Any

from pipeline.sinks.remote_write.naming import Family, Scheme, base_labels, outputs
from pipeline.sinks.remote_write.wire import label_bytes, series_head, timestamp_tail

Getter = Callable[[dict[str, Any]], tuple[Any, ...]]


def _getter(names: list[str]) -> Getter:
    """A C-speed tuple of `d[name]` for `names` (itemgetter returns a bare value for one name)."""
    if len(names) == 1:
        name = names[0]
        return lambda d: (d[name],)
    return itemgetter(*names) if names else (lambda d: ())


@dataclass(frozen=True, slots=True)
class Packer:
    """For one timestamp-varint length: `struct_.pack(*args)` with args = `template` whose
    every 2nd and 3rd slot of three are replaced by a value and the timestamp tail."""

    struct_: struct.Struct
    template: list[bytes | float]


@dataclass(slots=True)
class SeriesPlan:
    """What one (series, resolution) becomes."""

    labels: tuple[bytes, ...]  # encoded label set per output: statistics, then quantiles
    statistics: Getter  # body → the statistics' raw values
    quantiles: Getter  # percentiles → the quantiles' raw values
    multipliers: tuple[float, ...]  # value in Prometheus' unit = raw * multiplier / divisor
    divisors: tuple[float, ...]
    percentile_keys: frozenset[str] | None  # None for counters, whose percentiles are ignored
    families: tuple[Family, ...]
    packers: dict[int, Packer] = field(default_factory=dict)
    #: The metadata round in which this series' families were last sent (metadata.py).
    metadata_round: int = -1
    #: The sink's shard for this series (-1: not yet computed).
    shard: int = -1

    def packer(self, tail_len: int) -> Packer:
        found = self.packers.get(tail_len)
        if found is None:
            heads = [series_head(labels, tail_len - 1) for labels in self.labels]
            fmt = "<" + "".join(f"{len(head)}sd{tail_len}s" for head in heads)
            template: list[bytes | float] = []
            for head in heads:
                template += (head, 0.0, b"")
            found = self.packers[tail_len] = Packer(struct.Struct(fmt), template)
        return found

    @property
    def samples(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, slots=True)
class EncodedRollup:
    payload: bytes  # concatenated TimeSeries entries (field 1 of WriteRequest)
    samples: int
    plan: SeriesPlan


class RollupEncoder:
    """Turns rollup bodies into `EncodedRollup`s. Plans are cached by (series_key, resolution);
    the cache is dropped when it reaches `cache_size` entries (a plan is about a kilobyte)."""

    def __init__(self, scheme: Scheme = "aggregation", cache_size: int = 200_000) -> None:
        self.scheme = scheme
        self._cache: dict[tuple[str, str], SeriesPlan] = {}
        self._cache_size = cache_size
        self._last_ts = -1
        self._last_tail = b""

    def encode(self, body: dict[str, Any]) -> EncodedRollup:
        """Raises KeyError, TypeError, ValueError or AttributeError if `body` is not a usable
        rollup."""
        key = (str(body["series_key"]), str(body["resolution"]))
        percentiles: dict[str, Any] = body["percentiles"] or {}
        plan = self._cache.get(key)
        keys = plan.percentile_keys if plan is not None else None
        if plan is None or (keys is not None and percentiles.keys() != keys):
            plan = self._plan(body, percentiles)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[key] = plan
        ts = body["window_end"]
        if ts != self._last_ts:
            if type(ts) is not int or ts < 0:
                raise TypeError(f"window_end is not an epoch-ms integer: {ts!r}")
            self._last_ts, self._last_tail = ts, timestamp_tail(ts)
        tail = self._last_tail
        raw = plan.statistics(body) + plan.quantiles(percentiles)
        values = list(map(truediv, map(mul, raw, plan.multipliers), plan.divisors))
        packer = plan.packer(len(tail))
        args = packer.template.copy()
        args[1::3] = values
        args[2::3] = [tail] * len(values)
        return EncodedRollup(packer.struct_.pack(*args), len(values), plan)

    def _plan(self, body: dict[str, Any], percentiles: dict[str, Any]) -> SeriesPlan:
        series = body["series"]
        own = series.get("labels") or {}
        if not isinstance(own, dict):
            raise TypeError("series.labels is not an object")
        resolution = str(body["resolution"])
        metric_type = str(series["type"])
        outs = outputs(
            str(series["name"]),
            metric_type,
            str(series.get("unit") or ""),
            resolution,
            tuple(percentiles) if metric_type != "counter" else (),
            self.scheme,
        )
        shared = base_labels(
            str(series["service"]),
            str(series["region"]),
            resolution if self.scheme == "flat" else None,
            {str(k): str(v) for k, v in own.items()},
        )
        stats = [o for o in outs if o.quantile is None]
        quantiles = [o for o in outs if o.quantile is not None]
        labels = []
        for out in stats + quantiles:
            extra = (("quantile", out.quantile),) if out.quantile is not None else ()
            labels.append(label_bytes(tuple(sorted((("__name__", out.metric), *shared, *extra)))))
        conversions = [o.unit.multiply_divide for o in stats + quantiles]
        return SeriesPlan(
            labels=tuple(labels),
            statistics=_getter([o.statistic for o in stats]),
            quantiles=_getter([o.statistic for o in quantiles]),
            multipliers=tuple(m for m, _ in conversions),
            divisors=tuple(d for _, d in conversions),
            percentile_keys=frozenset(percentiles) if metric_type != "counter" else None,
            families=tuple({o.family.name: o.family for o in outs}.values()),
        )
