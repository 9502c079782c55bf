"""Rollup records → remote-write TimeSeries bytes, with the per-series work cached.

A rollup stream repeats the same series every window, so everything that depends only on the
series — names (naming.py), sanitized and sorted labels, their protobuf bytes (wire.py), the unit
conversion, the metadata families — is computed once per (series_key, resolution) and kept in a
`SeriesPlan`, including a template of its TimeSeries bytes with holes for the values and the
timestamp. Per record, Python only parses the fields (fields.py), looks up the plan and reads the
statistics with one C-level getter; the unit conversion and the writing of doubles and timestamps
into the concatenated templates are numpy operations over the whole batch (batch.py). A timestamp
outside 2004–2039 (another varint length) takes the per-rollup `struct` path.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter, mul, truediv
from typing import Any, NamedTuple

import numpy as np
import orjson
from numpy.typing import NDArray

from pipeline.sinks.remote_write.batch import EncodedBatch
from pipeline.sinks.remote_write.fields import RollupFields, parse
from pipeline.sinks.remote_write.naming import Family, Scheme, base_labels, outputs
from pipeline.sinks.remote_write.wire import (
    MAX_TS,
    MIN_TS,
    TAIL_LEN,
    label_bytes,
    series_head,
    timestamp_tail,
)

Getter = Callable[[Any], tuple[Any, ...]]
_NO_PERCENTILES: dict[str, float] = {}


def _getter(names: list[str], make: Callable[..., Any]) -> Getter:
    """A C-speed tuple of `names` read by `make` (attrgetter or itemgetter), which returns a
    bare value for one name."""
    if len(names) == 1:
        one = make(names[0])
        return lambda d: (one(d),)
    return make(*names) if names else (lambda d: ())


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
    statistics: Getter  # RollupFields → the statistics' raw values
    quantiles: Getter  # percentiles → the quantiles' raw values
    multipliers: NDArray[np.float64]  # value in Prometheus' unit = raw * multiplier / divisor
    divisors: NDArray[np.float64]
    percentile_keys: frozenset[str] | None  # None for counters, whose percentiles are ignored
    families: tuple[Family, ...]
    packers: dict[int, Packer] = field(default_factory=dict)
    #: The plan's TimeSeries entries for 7-byte timestamp tails with zeroed holes for the
    #: doubles (at `value_offsets`) and the tails (`value_offsets + 8`). The offsets and the
    #: conversion factors are raw int64/float64 bytes: a batch joins them with one bytes.join
    #: (numpy's concatenate of thousands of tiny arrays costs a microsecond each).
    template: bytes = b""
    value_offsets: bytes = b""
    multiplier_bytes: bytes = b""
    divisor_bytes: bytes = b""
    #: The metadata round in which this series' families were last sent (metadata.py).
    metadata_round: int = -1
    #: crc32 of the series_key: the sink's shard is this modulo its concurrency.
    key_hash: int = 0
    samples: int = field(init=False)
    has_quantiles: bool = field(init=False)
    quantile_count: int = field(init=False)

    def __post_init__(self) -> None:
        # Plain attributes, not properties: read for every rollup.
        self.samples = len(self.labels)
        self.has_quantiles = self.percentile_keys is not None
        self.quantile_count = len(self.percentile_keys or ())
        parts: list[bytes] = []
        offsets: list[int] = []
        size = 0
        for labels in self.labels:
            head = series_head(labels, TAIL_LEN - 1)
            offsets.append(size + len(head))
            parts += (head, bytes(8 + TAIL_LEN))
            size += len(head) + 8 + TAIL_LEN
        self.template = b"".join(parts)
        self.value_offsets = np.array(offsets, dtype=np.int64).tobytes()
        self.multiplier_bytes = self.multipliers.tobytes()
        self.divisor_bytes = self.divisors.tobytes()

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


class EncodedRollup(NamedTuple):
    """One rollup on its own (tests, tools): its TimeSeries entries."""

    payload: bytes
    samples: int
    plan: SeriesPlan


class RollupEncoder:
    """Turns rollup records into an `EncodedBatch`. Plans are cached by (series_key,
    resolution); the cache is dropped when it reaches `cache_size` entries (a plan is about a
    kilobyte)."""

    def __init__(self, scheme: Scheme = "aggregation", cache_size: int = 200_000) -> None:
        self.scheme = scheme
        self._cache: dict[tuple[str, str], SeriesPlan] = {}
        self._cache_size = cache_size

    def encode(self, body: dict[str, Any]) -> EncodedRollup:
        """One rollup body (a dict); raises the error that makes it unusable (ValueError,
        TypeError, KeyError or AttributeError)."""
        batch = self.encode_batch([orjson.dumps(body)])
        if batch.errors:
            raise batch.errors[0][1]
        layout = batch.layout(np.zeros(1, dtype=np.int64), 1)
        return EncodedRollup(bytes(layout.body(0, 1)), layout.samples(0, 1), batch.plans[0])

    def encode_batch(self, raws: Sequence[bytes]) -> EncodedBatch:
        """Every record of `raws` (rollup JSON) encoded, or the error that makes it unusable.

        Per record only the parsing, the plan lookup and the reading of its statistics run in
        Python; everything per sample is numpy work over the batch (`EncodedBatch.assemble`)."""
        errors: list[tuple[int, Exception]] = []
        plans: list[SeriesPlan] = []
        values: list[float] = []
        stamps: list[int] = []
        positions: list[int] = []
        one_offs: dict[int, bytes] = {}
        cache = self._cache
        for i, raw in enumerate(raws):
            fields = parse(raw)
            if isinstance(fields, ValueError):
                errors.append((i, fields))
                continue
            try:
                percentiles = fields.percentiles or _NO_PERCENTILES
                plan = cache.get((fields.series_key, fields.resolution))
                # A changed percentile list shows as another count or a missing key (KeyError).
                if plan is None or (plan.quantile_count != len(percentiles) and plan.has_quantiles):
                    plan = self._plan_for(fields, percentiles)
                try:
                    found = plan.statistics(fields) + plan.quantiles(percentiles)
                except KeyError:
                    plan = self._plan_for(fields, percentiles, rebuild=True)
                    found = plan.statistics(fields) + plan.quantiles(percentiles)
                ts = fields.window_end
                if not MIN_TS <= ts < MAX_TS:
                    one_offs[len(plans)] = self._encode_one(plan, found, ts)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                errors.append((i, exc))
                continue
            plans.append(plan)
            values += found
            stamps.append(ts)
            positions.append(i)
        return EncodedBatch(plans, values, stamps, positions, errors, one_offs)

    def _plan_for(
        self, fields: RollupFields, percentiles: dict[str, float], rebuild: bool = False
    ) -> SeriesPlan:
        key = (fields.series_key, fields.resolution)
        plan = self._cache.get(key)
        keys = plan.percentile_keys if plan is not None else None
        if rebuild or plan is None or (keys is not None and percentiles.keys() != keys):
            plan = self._plan(fields, percentiles)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[key] = plan
        return plan

    @staticmethod
    def _encode_one(plan: SeriesPlan, found: tuple[float, ...], ts: int) -> bytes:
        """One rollup with `struct` (any timestamp varint length)."""
        if ts < 0:
            raise TypeError(f"window_end is not an epoch-ms time: {ts!r}")
        tail = timestamp_tail(ts)
        converted = list(
            map(truediv, map(mul, found, plan.multipliers.tolist()), plan.divisors.tolist())
        )
        packer = plan.packer(len(tail))
        args = packer.template.copy()
        args[1::3] = converted
        args[2::3] = [tail] * len(converted)
        return packer.struct_.pack(*args)

    def _plan(self, fields: RollupFields, percentiles: dict[str, float]) -> SeriesPlan:
        series = orjson.loads(memoryview(fields.series))
        if not isinstance(series, dict):
            raise TypeError(f"series is not an object but {type(series).__name__}")
        own = series.get("labels") or {}
        if not isinstance(own, dict):
            raise TypeError("series.labels is not an object")
        resolution = fields.resolution
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
            statistics=_getter([o.statistic for o in stats], attrgetter),
            quantiles=_getter([o.statistic for o in quantiles], itemgetter),
            multipliers=np.array([m for m, _ in conversions], dtype=np.float64),
            divisors=np.array([d for _, d in conversions], dtype=np.float64),
            percentile_keys=frozenset(percentiles) if metric_type != "counter" else None,
            families=tuple({o.family.name: o.family for o in outs}.values()),
            key_hash=zlib.crc32(fields.series_key.encode()),
        )
