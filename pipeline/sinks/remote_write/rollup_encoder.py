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

import bisect
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter, itemgetter, mul, truediv
from typing import Any, NamedTuple

import numpy as np
import orjson

from pipeline.sinks.remote_write.batch import EncodedBatch
from pipeline.sinks.remote_write.fields import RollupFields, parse
from pipeline.sinks.remote_write.naming import Family, Scheme, base_labels, outputs
from pipeline.sinks.remote_write.wire import (
    MAX_TS,
    MIN_TS,
    TAIL_LEN,
    label_field,
    series_head,
    timestamp_tail,
    varint,
)

Getter = Callable[[Any], tuple[Any, ...]]
_CHUNK = 8 + TAIL_LEN  # the hole for a sample's double and timestamp tail
#: A TimeSeries' `samples` field (tag, length, the double's tag) and the zeroed hole after it.
_SAMPLE_HEAD_AND_HOLE = b"\x12" + bytes([1 + _CHUNK]) + b"\x09" + bytes(_CHUNK)
_SAMPLE_FIELD_LEN = 2 + 1 + _CHUNK  # what follows the labels in a TimeSeries body
_SMALL_VARINTS = [bytes([n]) for n in range(128)]
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


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """What every series of one metric (name, type, unit, resolution, percentile keys) shares:
    its outputs' names, how to read their values, their unit conversion and metadata."""

    outputs: tuple[tuple[str, str | None], ...]  # (metric name, quantile) per output
    statistics: Getter  # RollupFields → the statistics' raw values
    quantiles: Getter  # percentiles → the quantiles' raw values
    multipliers: tuple[float, ...]  # value in Prometheus' unit = raw * multiplier / divisor
    divisors: tuple[float, ...]
    #: The same as raw float64 bytes: a batch joins them with one bytes.join (numpy's
    #: concatenate of thousands of tiny arrays costs a microsecond each).
    multiplier_bytes: bytes
    divisor_bytes: bytes
    percentile_keys: frozenset[str] | None  # None for counters, whose percentiles are ignored
    families: tuple[Family, ...]
    #: Per output, its encoded `__name__` label and `quantile` label (b"" without one): every
    #: series of the metric shares them.
    name_fields: tuple[bytes, ...]
    quantile_fields: tuple[bytes, ...]


@lru_cache(maxsize=4096)
def metric_spec(
    name: str, metric_type: str, unit: str, resolution: str, keys: tuple[str, ...], scheme: Scheme
) -> MetricSpec:
    outs = outputs(name, metric_type, unit, resolution, keys, scheme)
    ordered = [o for o in outs if o.quantile is None] + [o for o in outs if o.quantile is not None]
    conversions = [o.unit.multiply_divide for o in ordered]
    multipliers = tuple(m for m, _ in conversions)
    divisors = tuple(d for _, d in conversions)
    return MetricSpec(
        outputs=tuple((o.metric, o.quantile) for o in ordered),
        statistics=_getter([o.statistic for o in ordered if o.quantile is None], attrgetter),
        quantiles=_getter([o.statistic for o in ordered if o.quantile is not None], itemgetter),
        multipliers=multipliers,
        divisors=divisors,
        multiplier_bytes=struct.pack(f"<{len(ordered)}d", *multipliers),
        divisor_bytes=struct.pack(f"<{len(ordered)}d", *divisors),
        percentile_keys=frozenset(keys) if metric_type != "counter" else None,
        families=tuple({o.family.name: o.family for o in outs}.values()),
        name_fields=tuple(label_field("__name__", o.metric) for o in ordered),
        quantile_fields=tuple(
            label_field("quantile", o.quantile) if o.quantile is not None else b"" for o in ordered
        ),
    )


class SeriesPlan:
    """What one (series, resolution) becomes: its metric's spec and its own label sets, as a
    template of its TimeSeries entries for 7-byte timestamp tails with zeroed holes for the
    doubles (at `value_offsets`, raw int64 bytes) and the tails (`value_offsets + 8`)."""

    __slots__ = (
        "divisor_bytes",
        "families",
        "has_quantiles",
        "key_hash",
        "labels",
        "metadata_round",
        "multiplier_bytes",
        "packers",
        "percentile_keys",
        "quantile_count",
        "quantiles",
        "samples",
        "spec",
        "statistics",
        "template",
        "value_offsets",
    )

    def __init__(self, spec: MetricSpec, labels: tuple[bytes, ...], key_hash: int) -> None:
        self.spec = spec
        self.labels = labels  # encoded label set per output: statistics, then quantiles
        #: crc32 of the series_key: the sink's shard is this modulo its concurrency.
        self.key_hash = key_hash
        #: The metadata round in which this series' families were last sent (metadata.py).
        self.metadata_round = -1
        self.packers: dict[int, Packer] = {}
        # Plain attributes copied from the spec: read for every rollup.
        self.statistics = spec.statistics
        self.quantiles = spec.quantiles
        self.percentile_keys = spec.percentile_keys
        self.families = spec.families
        self.multiplier_bytes = spec.multiplier_bytes
        self.divisor_bytes = spec.divisor_bytes
        self.samples = len(labels)
        self.has_quantiles = spec.percentile_keys is not None
        self.quantile_count = len(spec.percentile_keys or ())
        # series_head() per label set, unrolled: a cold start builds thousands of plans.
        parts: list[bytes] = []
        offsets: list[int] = []
        size = 0
        for label_set in labels:
            body_len = len(label_set) + _SAMPLE_FIELD_LEN
            length = _SMALL_VARINTS[body_len] if body_len < 128 else varint(body_len)
            parts += (b"\x0a", length, label_set, _SAMPLE_HEAD_AND_HOLE)
            size += 1 + len(length) + len(label_set) + 3
            offsets.append(size)
            size += _CHUNK
        self.template = b"".join(parts)
        self.value_offsets = struct.pack(f"<{len(offsets)}q", *offsets)

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
        one_offs: dict[int, bytes] = {}
        cached, add_plan, add_stamp = self._cache.get, plans.append, stamps.append
        for i, raw in enumerate(raws):
            fields = parse(raw)
            if isinstance(fields, ValueError):
                errors.append((i, fields))
                continue
            try:
                percentiles = fields.percentiles or _NO_PERCENTILES
                plan = cached((fields.series_key, fields.resolution))
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
            add_plan(plan)
            values += found
            add_stamp(ts)
        # The batch index of each encoded rollup: all of them but the unusable ones.
        if errors:
            unusable = {i for i, _ in errors}
            positions = [i for i in range(len(raws)) if i not in unusable]
        else:
            positions = list(range(len(raws)))
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
        converted = list(map(truediv, map(mul, found, plan.spec.multipliers), plan.spec.divisors))
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
        spec = metric_spec(
            str(series["name"]),
            metric_type,
            str(series.get("unit") or ""),
            resolution,
            tuple(percentiles) if metric_type != "counter" else (),
            self.scheme,
        )
        shared = sorted(
            base_labels(
                str(series["service"]),
                str(series["region"]),
                resolution if self.scheme == "flat" else None,
                {str(k): str(v) for k, v in own.items()},
            )
        )
        # Labels go sorted by name on the wire: the shared ones are encoded once and
        # `__name__` and `quantile` inserted where they sort (both names are reserved, so
        # no shared label has them).
        names = [name for name, _ in shared]
        encoded = [label_field(name, value) for name, value in shared]
        name_at = bisect.bisect(names, "__name__")
        quantile_at = bisect.bisect(names, "quantile")
        before, middle, after = (
            b"".join(encoded[:name_at]),
            b"".join(encoded[name_at:quantile_at]),
            b"".join(encoded[quantile_at:]),
        )
        labels = tuple(
            [
                b"".join((before, name, middle, quantile, after))
                for name, quantile in zip(spec.name_fields, spec.quantile_fields, strict=True)
            ]
        )
        return SeriesPlan(spec, labels, zlib.crc32(fields.series_key.encode()))
