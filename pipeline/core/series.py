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


class SeriesTable:
    """Interns series identities to dense int32 ids and keeps per-series columns.

    One table serves every partition of a process, so ids are only meaningful inside it;
    anything persisted (checkpoints, rollups) uses `SeriesIdentity.key` instead.
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

    def __len__(self) -> int:
        return len(self.identities)

    def intern(self, identity: SeriesIdentity) -> int:
        sid = self._ids.get(identity)
        if sid is None:
            sid = len(self.identities)
            self._ids[identity] = sid
            self.identities.append(identity)
            self.kinds.append(int(identity.kind))
            owner = self._owner_fn(identity.routing_key) if self._owner_fn else -1
            self._owner.append(owner)
            self._keys.append(identity.key)
            self._json.append(identity.to_json())
        return sid

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
