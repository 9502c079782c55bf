"""Series identity and the process-wide table that interns it to small integer ids.

A series is (service, region, name, kind, unit, labels). The metric kind includes the counter
temporality, so a name reported both as a delta and as a cumulative counter (or as a timer and a
gauge) becomes two series instead of one silently wrong aggregate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
import orjson

from pipeline.core.columns import GrowableArray


class MetricKind(IntEnum):
    TIMER = 0
    GAUGE = 1
    COUNTER_DELTA = 2
    COUNTER_CUMULATIVE = 3

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES[self]

    @property
    def temporality(self) -> str | None:
        if self is MetricKind.COUNTER_DELTA:
            return "delta"
        if self is MetricKind.COUNTER_CUMULATIVE:
            return "cumulative"
        return None

    @property
    def is_counter(self) -> bool:
        return self >= MetricKind.COUNTER_DELTA

    @staticmethod
    def parse(type_name: str, temporality: str | None) -> MetricKind | None:
        """The kind for a sample's `type` and `temporality`, or None if they are not valid."""
        if type_name == "counter":
            if temporality is None or temporality == "delta":
                return MetricKind.COUNTER_DELTA
            if temporality == "cumulative":
                return MetricKind.COUNTER_CUMULATIVE
            return None
        if temporality is not None:
            return None
        if type_name == "timer":
            return MetricKind.TIMER
        if type_name == "gauge":
            return MetricKind.GAUGE
        return None


_TYPE_NAMES = {
    MetricKind.TIMER: "timer",
    MetricKind.GAUGE: "gauge",
    MetricKind.COUNTER_DELTA: "counter",
    MetricKind.COUNTER_CUMULATIVE: "counter",
}

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class SeriesIdentity:
    service: str
    region: str
    name: str
    kind: MetricKind
    unit: str = ""
    labels: Labels = ()

    @property
    def routing_key(self) -> str:
        """The producer key that owns this series: "<service>|<region>"."""
        return f"{self.service}|{self.region}"

    @property
    def key(self) -> str:
        """Canonical identity string, stable across processes and releases.

        Fields are "|"-separated; only the labels (last field, compact sorted JSON) may contain
        "|", because identifiers are restricted to [A-Za-z0-9_.:/-].
        """
        kind = self.kind.type_name
        if self.kind.temporality is not None:
            kind = f"{kind}.{self.kind.temporality}"
        labels = orjson.dumps(dict(self.labels)).decode() if self.labels else ""
        return f"{self.service}|{self.region}|{self.name}|{kind}|{self.unit}|{labels}"

    def to_json(self) -> dict[str, Any]:
        """The `series` object of the rollup contract."""
        out: dict[str, Any] = {
            "service": self.service,
            "region": self.region,
            "name": self.name,
            "type": self.kind.type_name,
            "labels": dict(self.labels),
        }
        if self.kind.temporality is not None:
            out["temporality"] = self.kind.temporality
        if self.unit:
            out["unit"] = self.unit
        return out

    @staticmethod
    def from_json(obj: dict[str, Any]) -> SeriesIdentity:
        kind = MetricKind.parse(obj["type"], obj.get("temporality"))
        if kind is None:
            raise ValueError(f"not a metric kind: {obj['type']!r}/{obj.get('temporality')!r}")
        labels = tuple(sorted((str(k), str(v)) for k, v in obj.get("labels", {}).items()))
        return SeriesIdentity(
            obj["service"], obj["region"], obj["name"], kind, obj.get("unit", ""), labels
        )


class LookupCache(dict[Any, int]):
    """The decoder's (raw identity fields → series id) cache, which also remembers the keys of
    each id so that forgetting a series removes them: a stale entry would hand a reused id to
    another series."""

    def __init__(self) -> None:
        super().__init__()
        self._keys_of: dict[int, list[Any]] = {}

    def __setitem__(self, key: Any, sid: int) -> None:
        super().__setitem__(key, sid)
        self._keys_of.setdefault(sid, []).append(key)

    def drop(self, sid: int) -> None:
        for key in self._keys_of.pop(sid, ()):
            if self.get(key) == sid:
                del self[key]

    def compact(self) -> None:
        """Re-pack after many deletions (a dict never shrinks its table on delete)."""
        kept = dict(self)
        keys_of = dict(self._keys_of)
        self.clear()
        self.update(kept)
        self._keys_of = keys_of


# What a forgotten id's slots hold until the id is reused.
_FORGOTTEN = SeriesIdentity("", "", "", MetricKind.GAUGE)
_NO_JSON: dict[str, Any] = {}


class SeriesTable:
    """Interns series identities to dense int32 ids and keeps per-series columns.

    One table serves every partition of a process, so ids are only meaningful inside it;
    anything persisted (checkpoints, rollups) uses `SeriesIdentity.key` instead.

    Series can be forgotten (`forget`) once nothing refers to their id any more; the id then
    goes to a free list and is handed to the next new series. Callers decide what "nothing
    refers" means (see core/cardinality.py); `last_seen` helps them tell idle series.
    """

    def __init__(self) -> None:
        self._ids: dict[SeriesIdentity, int] = {}
        self.identities: list[SeriesIdentity] = []
        self.kinds = GrowableArray(np.int8)
        self._owner = GrowableArray(np.int32)
        self._owner_fn: Callable[[str], int] | None = None
        self._keys: list[str] = []
        self._json: list[dict[str, Any]] = []
        self.instances: dict[str, int] = {}
        self.instance_names: list[str] = []
        self.lookup_cache = LookupCache()
        self.last_seen = GrowableArray(np.float64)  # caller's clock; see touch()
        self._free: list[int] = []
        self._deleted_since_compact = 0
        self.forgotten_total = 0

    def __len__(self) -> int:
        """Series currently known (interned and not forgotten)."""
        return len(self.identities) - len(self._free)

    @property
    def capacity(self) -> int:
        """One more than the largest id ever handed out."""
        return len(self.identities)

    def intern(self, identity: SeriesIdentity) -> int:
        sid = self._ids.get(identity)
        if sid is not None:
            return sid
        owner = self._owner_fn(identity.routing_key) if self._owner_fn else -1
        if self._free:
            sid = self._free.pop()
            self.identities[sid] = identity
            self.kinds.view()[sid] = int(identity.kind)
            self._owner.view()[sid] = owner
            self._keys[sid] = identity.key
            self._json[sid] = identity.to_json()
            self.last_seen.view()[sid] = -np.inf
        else:
            sid = len(self.identities)
            self.identities.append(identity)
            self.kinds.append(int(identity.kind))
            self._owner.append(owner)
            self._keys.append(identity.key)
            self._json.append(identity.to_json())
            self.last_seen.append(-np.inf)
        self._ids[identity] = sid
        return sid

    def touch(self, series_ids: np.ndarray, now: float) -> None:
        """Record that these series had samples at `now`."""
        self.last_seen.view()[series_ids] = now

    def live(self) -> np.ndarray:
        """Bool per id below `capacity`: True for ids that hold a series."""
        alive = np.ones(self.capacity, dtype=bool)
        alive[self._free] = False
        return alive

    def forget(self, series_ids: list[int]) -> None:
        """Drop these series; their ids are reused. Only for ids nothing refers to any more."""
        dropped = 0
        for sid in series_ids:
            identity = self.identities[sid]
            if identity is _FORGOTTEN:
                continue
            dropped += 1
            del self._ids[identity]
            self.lookup_cache.drop(sid)
            self.identities[sid] = _FORGOTTEN
            self._keys[sid] = ""
            self._json[sid] = _NO_JSON
            self._free.append(sid)
        self.forgotten_total += dropped
        self._deleted_since_compact += dropped
        if self._deleted_since_compact > max(1024, len(self._ids)):
            self._ids = dict(self._ids)
            self.lookup_cache.compact()
            self._deleted_since_compact = 0

    def key_of(self, sid: int) -> str:
        return self._keys[sid]

    def json_of(self, sid: int) -> dict[str, Any]:
        """The rollup's `series` object (shared: do not mutate)."""
        return self._json[sid]

    def instance_id(self, name: str) -> int:
        """Dense id of a reporting instance name (cumulative counters are tracked per instance)."""
        iid = self.instances.get(name)
        if iid is None:
            iid = len(self.instance_names)
            self.instances[name] = iid
            self.instance_names.append(name)
        return iid

    def set_owner_function(self, owner_of_routing_key: Callable[[str], int]) -> None:
        """Install the rule that maps a routing key to the input partition owning its series."""
        self._owner_fn = owner_of_routing_key
        owners = [owner_of_routing_key(i.routing_key) for i in self.identities]
        self._owner = GrowableArray(np.int32)
        for owner in owners:
            self._owner.append(owner)

    def owners(self, series_ids: np.ndarray) -> np.ndarray:
        """Owning input partition per series id (-1 when no owner function is installed)."""
        owners: np.ndarray = self._owner.view()[series_ids]
        return owners
