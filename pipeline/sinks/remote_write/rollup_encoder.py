"""Rollup bodies → pre-encoded remote-write TimeSeries bytes, with the per-series work cached.

A rollup stream repeats the same series every window, so everything that depends only on the
series — names (naming.py), sanitized and sorted labels, their protobuf bytes (wire.py), the unit
conversion, the metadata families — is computed once per (series_key, resolution) and kept in a
`SeriesPlan`, including a template of its TimeSeries bytes with holes for the values and the
timestamp. A batch is encoded by reading each rollup's statistics (one C-level itemgetter per
rollup), then converting all values and writing them and the timestamps into the concatenated
templates with numpy. A timestamp outside 2004–2039 (another varint length) or a value that is
not a number takes the per-rollup `struct` path, which is strict about types.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter, mul, truediv
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from pipeline.sinks.remote_write.naming import Family, Scheme, base_labels, outputs
from pipeline.sinks.remote_write.wire import (
    MAX_TS,
    MIN_TS,
    TAIL_LEN,
    label_bytes,
    series_head,
    timestamp_tail,
    timestamp_tails,
)

_CHUNK = np.arange(8 + TAIL_LEN)

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


@dataclass(frozen=True, slots=True)
class Template:
    """The plan's TimeSeries entries for 7-byte timestamp tails, with zeroed holes for the
    doubles (at `value_offsets`) and the tails (`value_offsets + 8`), for the batched path."""

    data: bytes
    #: As raw int64/float64 bytes: a batch joins them with one bytes.join (numpy's concatenate
    #: of thousands of tiny arrays costs a microsecond each).
    value_offsets: bytes
    multipliers: bytes
    divisors: bytes


@dataclass(slots=True)
class SeriesPlan:
    """What one (series, resolution) becomes."""

    labels: tuple[bytes, ...]  # encoded label set per output: statistics, then quantiles
    statistics: Getter  # body → the statistics' raw values
    quantiles: Getter  # percentiles → the quantiles' raw values
    multipliers: NDArray[np.float64]  # value in Prometheus' unit = raw * multiplier / divisor
    divisors: NDArray[np.float64]
    percentile_keys: frozenset[str] | None  # None for counters, whose percentiles are ignored
    families: tuple[Family, ...]
    packers: dict[int, Packer] = field(default_factory=dict)
    template: Template | None = None
    #: The metadata round in which this series' families were last sent (metadata.py).
    metadata_round: int = -1
    #: The sink's shard for this series (-1: not yet computed).
    shard: int = -1
    samples: int = field(init=False)
    has_quantiles: bool = field(init=False)
    quantile_count: int = field(init=False)

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

    def batch_template(self) -> Template:
        if self.template is None:
            parts: list[bytes] = []
            offsets: list[int] = []
            size = 0
            for labels in self.labels:
                head = series_head(labels, TAIL_LEN - 1)
                offsets.append(size + len(head))
                parts += (head, bytes(8 + TAIL_LEN))
                size += len(head) + 8 + TAIL_LEN
            self.template = Template(
                b"".join(parts),
                np.array(offsets, dtype=np.int64).tobytes(),
                self.multipliers.tobytes(),
                self.divisors.tobytes(),
            )
        return self.template

    def __post_init__(self) -> None:
        # Plain attributes, not properties: read for every rollup.
        self.samples = len(self.labels)
        self.has_quantiles = self.percentile_keys is not None
        self.quantile_count = len(self.percentile_keys or ())


class EncodedRollup(NamedTuple):
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

    def encode(self, body: dict[str, Any]) -> EncodedRollup:
        """Raises KeyError, TypeError, ValueError or AttributeError if `body` is not a usable
        rollup."""
        result = self.encode_batch([body])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def encode_batch(self, bodies: Sequence[dict[str, Any]]) -> list[EncodedRollup | Exception]:
        """One result per body, in order: the encoded rollup, or the error that makes the body
        unusable (KeyError, TypeError, ValueError or AttributeError).

        Per body only the plan lookup and the reading of its statistics run in Python; the unit
        conversion and the writing of doubles and timestamps into the plans' templates are numpy
        operations over the whole batch (`_fill`)."""
        results: list[EncodedRollup | Exception | None] = [None] * len(bodies)
        plans: list[SeriesPlan] = []
        values: list[Any] = []
        stamps: list[int] = []
        where: list[int] = []
        cache = self._cache
        for i, body in enumerate(bodies):
            try:
                percentiles = body["percentiles"] or {}
                plan = cache.get((body["series_key"], body["resolution"]))
                # A changed percentile list shows as another count or a missing key (KeyError).
                if plan is None or (plan.quantile_count != len(percentiles) and plan.has_quantiles):
                    plan, percentiles = self._plan_for(body)
                ts = body["window_end"]
                if type(ts) is not int or not MIN_TS <= ts < MAX_TS:
                    results[i] = self._encode_one(plan, body, percentiles, ts)
                    continue
                try:
                    raw = plan.statistics(body) + plan.quantiles(percentiles)
                except KeyError:
                    plan, percentiles = self._plan_for(body, rebuild=True)
                    raw = plan.statistics(body) + plan.quantiles(percentiles)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                results[i] = exc
                continue
            plans.append(plan)
            values += raw
            stamps.append(ts)
            where.append(i)
        if plans:
            array = np.asarray(values)
            if array.dtype.kind in "fi":
                for i, plan, payload in zip(where, plans, _fill(plans, array, stamps), strict=True):
                    results[i] = EncodedRollup(payload, plan.samples, plan)
            else:  # a value that is not a number: find it body by body
                for i, plan in zip(where, plans, strict=True):
                    body = bodies[i]
                    try:
                        percentiles = body["percentiles"] or {}
                        results[i] = self._encode_one(plan, body, percentiles, body["window_end"])
                    except (TypeError, ValueError) as exc:
                        results[i] = exc
        done = [r for r in results if r is not None]
        assert len(done) == len(bodies), "every body has a result"
        return done

    def _plan_for(
        self, body: dict[str, Any], rebuild: bool = False
    ) -> tuple[SeriesPlan, dict[str, Any]]:
        key = (body["series_key"], body["resolution"])
        if type(key[0]) is not str or type(key[1]) is not str:
            raise TypeError(f"series_key and resolution must be strings, not {key!r}")
        percentiles: dict[str, Any] = body["percentiles"] or {}
        plan = self._cache.get(key)
        keys = plan.percentile_keys if plan is not None else None
        if rebuild or plan is None or (keys is not None and percentiles.keys() != keys):
            plan = self._plan(body, percentiles)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[key] = plan
        return plan, percentiles

    @staticmethod
    def _encode_one(
        plan: SeriesPlan, body: dict[str, Any], percentiles: dict[str, Any], ts: Any
    ) -> EncodedRollup:
        """One body with `struct` (any timestamp length; strict about value types)."""
        if type(ts) is not int or ts < 0:
            raise TypeError(f"window_end is not an epoch-ms integer: {ts!r}")
        tail = timestamp_tail(ts)
        raw = plan.statistics(body) + plan.quantiles(percentiles)
        values = list(
            map(truediv, map(mul, raw, plan.multipliers.tolist()), plan.divisors.tolist())
        )
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
            multipliers=np.array([m for m, _ in conversions], dtype=np.float64),
            divisors=np.array([d for _, d in conversions], dtype=np.float64),
            percentile_keys=frozenset(percentiles) if metric_type != "counter" else None,
            families=tuple({o.family.name: o.family for o in outs}.values()),
        )


def _fill(plans: list[SeriesPlan], values: NDArray[Any], stamps: list[int]) -> list[bytes]:
    """The payload of each plan's rollup: its template with the converted doubles and the
    timestamp tail written into the holes, for all rollups at once."""
    templates = [plan.template or plan.batch_template() for plan in plans]
    counts = np.array([plan.samples for plan in plans], dtype=np.int64)
    lengths = np.array([len(t.data) for t in templates], dtype=np.int64)
    starts = np.zeros(len(plans), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    multipliers = np.frombuffer(b"".join([t.multipliers for t in templates]), dtype=np.float64)
    divisors = np.frombuffer(b"".join([t.divisors for t in templates]), dtype=np.float64)
    doubles = (values.astype(np.float64) * multipliers / divisors).astype("<f8")
    rollup_of_sample = np.repeat(np.arange(len(plans)), counts)
    offsets = np.frombuffer(b"".join([t.value_offsets for t in templates]), dtype=np.int64)
    value_at = offsets + starts[rollup_of_sample]
    buffer = np.frombuffer(b"".join([t.data for t in templates]), dtype=np.uint8).copy()
    # Each sample's double and timestamp tail are adjacent: one 15-byte scatter per sample.
    chunks = np.empty((len(doubles), 8 + TAIL_LEN), dtype=np.uint8)
    chunks[:, :8] = doubles.view(np.uint8).reshape(-1, 8)
    chunks[:, 8:] = timestamp_tails(np.asarray(stamps, dtype=np.int64))[rollup_of_sample]
    buffer[value_at[:, None] + _CHUNK] = chunks
    data = buffer.tobytes()
    return [data[a:b] for a, b in zip(starts.tolist(), (starts + lengths).tolist(), strict=True)]
