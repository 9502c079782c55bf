"""What a synthetic workload looks like: the spec, the malformed-input counts, the series catalogue.

Everything here is plain data; the numbers are drawn in `workload.py` and serialized in `encode.py`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from pipeline.errors import ConfigError

MetricKind = Literal["timer", "gauge", "delta_counter", "cumulative_counter"]
Encoding = Literal["single", "array", "columnar"]

#: Kind codes used in numpy arrays (`GroundTruth.kind`, `Catalogue.kind`).
TIMER, GAUGE, DELTA, CUMULATIVE = 0, 1, 2, 3
KIND_CODES: dict[str, int] = {
    "timer": TIMER,
    "gauge": GAUGE,
    "delta_counter": DELTA,
    "cumulative_counter": CUMULATIVE,
}

#: 2026-01-01T00:00:00Z in epoch milliseconds: a fixed start keeps the output reproducible.
DEFAULT_START_MS = 1_767_225_600_000
MIB = 1_048_576
DAY_MS = 86_400_000

_SERVICES = (
    "api-gateway", "auth", "billing", "cart", "catalog", "checkout", "inventory",
    "notifications", "orders", "payments", "recommendations", "search", "shipping", "users",
)  # fmt: skip
_REGIONS = (
    "us-east-1", "eu-west-1", "ap-southeast-1", "us-west-2",
    "eu-central-1", "ap-northeast-1", "sa-east-1", "ca-central-1",
)  # fmt: skip
# (name, unit) pools per kind; names beyond a pool get a numeric suffix.
_NAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "timer": (
        ("http.server.duration", "ms"), ("db.query.duration", "ms"),
        ("rpc.client.duration", "ms"), ("cache.get.duration", "ms"),
        ("queue.publish.duration", "ms"),
    ),
    "gauge": (
        ("process.memory.rss", "MiBy"), ("queue.depth", "1"), ("cpu.utilization", "%"),
        ("connections.active", "1"), ("thread.count", "1"),
    ),
    "delta_counter": (("http.requests", "1"), ("errors", "1"), ("bytes.received", "By")),
    "cumulative_counter": (("bytes.sent", "By"), ("jobs.processed", "1"), ("gc.collections", "1")),
}  # fmt: skip
WireType = Literal["timer", "gauge", "counter"]
Temporality = Literal["delta", "cumulative"]
_WIRE: dict[str, tuple[WireType, Temporality | None]] = {
    "timer": ("timer", None),
    "gauge": ("gauge", None),
    "delta_counter": ("counter", "delta"),
    "cumulative_counter": ("counter", "cumulative"),
}
_UNITS = {"timer": "ms", "gauge": "1", "delta_counter": "1", "cumulative_counter": "1"}
# Label variants: the first label tells variants of one name apart, the second is constant per name.
_LABEL_KEYS = ("method", "status_class", "route", "shard")
_LABEL_VALUES = ("GET", "POST", "PUT", "DELETE", "2xx", "4xx", "5xx", "a", "b", "c", "d", "e")


class Message(NamedTuple):
    """One Kafka record to produce: key "service|region", JSON value, timestamp (epoch ms)."""

    key: bytes
    value: bytes
    timestamp_ms: int


@dataclass(frozen=True)
class MalformedCounts:
    """Exact number of bad messages to mix in, per dead-letter reason code (each >= 0).

    Every bad message is a standalone message in the single-sample form (also under the batch
    encodings), so each accounts for exactly 1 sample, like the dead-letter record's `samples`.
    """

    malformed_json: int = 0
    wrong_type: int = 0
    missing_field: int = 0
    non_finite_value: int = 0
    negative_delta_counter: int = 0
    ts_too_old: int = 0
    ts_in_future: int = 0
    oversize_message: int = 0
    unknown_metric_type: int = 0
    too_many_labels: int = 0

    @classmethod
    def each(cls, n: int) -> MalformedCounts:
        """`n` messages of every kind."""
        return cls(**dict.fromkeys(cls.reasons(), n))

    @staticmethod
    def reasons() -> tuple[str, ...]:
        """The reason codes, in field order (they match schemas/deadletter.schema.json)."""
        return tuple(f.name for f in dataclasses.fields(MalformedCounts))

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @property
    def total(self) -> int:
        return sum(self.as_dict().values())


@dataclass(frozen=True)
class WorkloadSpec:
    """A reproducible workload: same spec, byte-identical messages.

    Series are services × regions × metric names (× label variants for labelled names). Event times
    `ts` are spread evenly per series over [start_ms, start_ms + duration_s); each sample is sent
    ("now", the producer's clock, which becomes the Kafka message timestamp) 0..`max_jitter_ms`
    after its event time, and messages go out in order of "now".

    Attributes:
        seed: root of every random draw.
        services, regions: how many of each (names come from a fixed pool, then `svc-NNN`).
        timers, gauges, delta_counters, cumulative_counters: metric names per kind per
            (service, region); ignored when `metric_names` is given.
        metric_names: explicit (name, kind) pairs used by every (service, region).
        instances: reporting processes per series, >= 1 (cumulative counters are monotone per
            instance).
        labelled_fraction: share of metric names (0..1) that carry 1-2 labels; each such name
            becomes `label_variants` series that differ in one label value.
        start_ms: first event time, epoch ms. duration_s: event-time span in seconds (> 0).
        samples: valid samples in total; `rate_per_series` (samples/s per series), if set, wins.
        encoding: "single" (one sample per message), "array" (JSON array of <= `batch_size` samples
            of one producer key per flush) or "columnar" (one (series, instance) per flush with
            `ts[]`/`value[]` of <= `batch_size` points). Flushes happen every `flush_interval_ms`.
        max_jitter_ms: send delay 0..this ms after the event time (the out-of-order bound).
        late_fraction: share (0..1) of valid samples sent `late_by_ms` behind "now", chosen only
            where an earlier message on the same producer key carried an event time at least
            `late_guard_ms` ahead, so they are late for any window + allowed lateness <= the guard.
        mismatched_key_fraction: share (0..1) of valid samples (columnar: of (series, instance)
            flushes) sent with another service's producer key.
        counter_reset_probability: per-sample chance (0..1) that a cumulative counter restarts at 0.
        malformed: bad messages to mix in. bad_ts_offset_ms: how far before/after the message
            timestamp the ts_too_old / ts_in_future samples are. oversize_bytes: size of an
            oversize message (> 1 MiB by default).
    """

    seed: int = 7
    services: int = 10
    regions: int = 4
    timers: int = 3
    gauges: int = 2
    delta_counters: int = 1
    cumulative_counters: int = 1
    metric_names: tuple[tuple[str, MetricKind], ...] | None = None
    instances: int = 3
    labelled_fraction: float = 0.25
    label_variants: int = 2
    start_ms: int = DEFAULT_START_MS
    duration_s: float = 300.0
    samples: int = 300_000
    rate_per_series: float | None = None
    encoding: Encoding = "single"
    batch_size: int = 100
    flush_interval_ms: int = 1_000
    max_jitter_ms: int = 2_000
    late_fraction: float = 0.0
    late_by_ms: int = 60_000
    late_guard_ms: int = 30_000
    mismatched_key_fraction: float = 0.0
    counter_reset_probability: float = 0.002
    malformed: MalformedCounts = field(default_factory=MalformedCounts)
    bad_ts_offset_ms: int = 2 * DAY_MS
    oversize_bytes: int = MIB + 1_024

    def __post_init__(self) -> None:
        checks = {
            "services >= 1": self.services >= 1,
            "regions >= 1": self.regions >= 1,
            "instances >= 1": self.instances >= 1,
            "label_variants >= 1": self.label_variants >= 1,
            "duration_s > 0": self.duration_s > 0,
            "samples >= 0": self.samples >= 0,
            "batch_size >= 1": self.batch_size >= 1,
            "flush_interval_ms >= 1": self.flush_interval_ms >= 1,
            "max_jitter_ms >= 0": self.max_jitter_ms >= 0,
            "encoding is single|array|columnar": self.encoding in ("single", "array", "columnar"),
            "0 <= fractions <= 1": all(
                0.0 <= f <= 1.0
                for f in (
                    self.labelled_fraction,
                    self.late_fraction,
                    self.mismatched_key_fraction,
                    self.counter_reset_probability,
                )
            ),
            "late_by_ms > late_guard_ms + max_jitter_ms + flush window": (
                self.late_by_ms > self.late_guard_ms + self.max_jitter_ms + self.flush_window_ms
            ),
            "start_ms - bad_ts_offset_ms - late_by_ms >= 0": (
                self.start_ms - self.bad_ts_offset_ms - self.late_by_ms >= 0
            ),
            "oversize_bytes > 1 MiB": self.oversize_bytes > MIB,
            "malformed counts >= 0": all(v >= 0 for v in self.malformed.as_dict().values()),
            "mismatched keys need >= 2 keys": (
                self.mismatched_key_fraction == 0.0 or self.services * self.regions >= 2
            ),
            "metric names given": bool(self.metric_names)
            or self.timers + self.gauges + self.delta_counters + self.cumulative_counters > 0,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ConfigError(f"invalid WorkloadSpec: {', '.join(failed)}")
        if self.rate_per_series is not None and self.rate_per_series < 0:
            raise ConfigError("invalid WorkloadSpec: rate_per_series >= 0")

    @property
    def duration_ms(self) -> int:
        return round(self.duration_s * 1000)

    @property
    def flush_window_ms(self) -> int:
        """Longest time a sample waits in the producer before it is sent: 0 for "single"."""
        return 0 if self.encoding == "single" else self.flush_interval_ms

    @property
    def max_disorder_ms(self) -> int:
        """Bound on how far a non-late sample's ts is behind the largest ts sent before it."""
        return self.max_jitter_ms + self.flush_window_ms

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form (tuples become lists)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SeriesId:
    """Identity of one series. `type` is the wire type; `temporality` is set for counters only."""

    service: str
    region: str
    name: str
    type: WireType
    temporality: Temporality | None
    unit: str
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        """The producer key, "service|region"."""
        return f"{self.service}|{self.region}"

    def instance_name(self, instance: int) -> str:
        """The `instance` field for instance index 0..instances-1."""
        return f"{self.service}.{self.region}.{instance}"

    def fields(self, instance: int) -> dict[str, Any]:
        """The identity fields of a sample, in wire order (`ts` and `value` follow)."""
        out: dict[str, Any] = {
            "service": self.service,
            "region": self.region,
            "name": self.name,
            "type": self.type,
            "unit": self.unit,
        }
        if self.temporality is not None:
            out["temporality"] = self.temporality
        if self.labels:
            out["labels"] = dict(self.labels)
        out["instance"] = self.instance_name(instance)
        return out


@dataclass(frozen=True)
class Catalogue:
    """The series of a spec: identities, kind code per series and producer key index per series."""

    series: tuple[SeriesId, ...]
    kind: tuple[int, ...]
    key_index: tuple[int, ...]
    keys: tuple[str, ...]


def service_names(n: int) -> list[str]:
    return [_SERVICES[i] if i < len(_SERVICES) else f"svc-{i:03d}" for i in range(n)]


def region_names(n: int) -> list[str]:
    return [_REGIONS[i] if i < len(_REGIONS) else f"region-{i:02d}" for i in range(n)]


def _metric_defs(spec: WorkloadSpec) -> list[tuple[str, MetricKind, str]]:
    """(name, kind, unit) for every metric name a (service, region) reports."""
    if spec.metric_names:
        defs = [
            (name, kind, dict(_NAMES[kind]).get(name, _UNITS[kind]))
            for name, kind in spec.metric_names
        ]
    else:
        defs = []
        counts: tuple[tuple[MetricKind, int], ...] = (
            ("timer", spec.timers),
            ("gauge", spec.gauges),
            ("delta_counter", spec.delta_counters),
            ("cumulative_counter", spec.cumulative_counters),
        )
        for kind, n in counts:
            pool = _NAMES[kind]
            for i in range(n):
                name, unit = (
                    pool[i] if i < len(pool) else (f"{pool[i % len(pool)][0]}.{i}", _UNITS[kind])
                )
                defs.append((name, kind, unit))
    if len({d[0] for d in defs}) != len(defs):
        raise ConfigError("invalid WorkloadSpec: metric names must be unique")
    return defs


def build_catalogue(spec: WorkloadSpec) -> Catalogue:
    """All series of `spec`, ordered by service, region, metric name, label variant."""
    defs = _metric_defs(spec)
    # Which names carry labels is fixed per name (not per service) so every service looks alike.
    n_labelled = round(spec.labelled_fraction * len(defs))
    labelled = set(range(n_labelled))
    services, regions = service_names(spec.services), region_names(spec.regions)
    series: list[SeriesId] = []
    kind: list[int] = []
    key_index: list[int] = []
    for si, service in enumerate(services):
        for ri, region in enumerate(regions):
            for di, (name, mkind, unit) in enumerate(defs):
                wire, temporality = _WIRE[mkind]
                variants: list[tuple[tuple[str, str], ...]] = [()]
                if di in labelled:
                    k1, k2 = (
                        _LABEL_KEYS[di % len(_LABEL_KEYS)],
                        _LABEL_KEYS[(di + 1) % len(_LABEL_KEYS)],
                    )
                    variants = []
                    for v in range(spec.label_variants):
                        lab = {k1: _label_value(v)}
                        if (
                            di % 2 == 0
                        ):  # every other labelled name carries a second, constant label
                            lab[k2] = "x"
                        variants.append(tuple(sorted(lab.items())))
                for labels in variants:
                    series.append(SeriesId(service, region, name, wire, temporality, unit, labels))
                    kind.append(KIND_CODES[mkind])
                    key_index.append(si * spec.regions + ri)
    keys = tuple(f"{s}|{r}" for s in services for r in regions)
    return Catalogue(tuple(series), tuple(kind), tuple(key_index), keys)


def _label_value(v: int) -> str:
    return _LABEL_VALUES[v] if v < len(_LABEL_VALUES) else f"v{v}"
