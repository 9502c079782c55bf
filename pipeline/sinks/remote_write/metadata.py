"""When to attach remote-write metadata (MetricMetadata: type, family name, help, unit).

Every family is sent with the first request that carries one of its series after the process
starts, and again in the first such request of every later round of `interval` seconds (a TSDB
that keeps metadata in memory forgets it on restart; Prometheus' own remote-write client resends
every minute by default). A family counts as sent only once its request was acknowledged, so a
failed or refused request leaves it due. Per request this costs one integer comparison per
rollup; the protobuf library encodes each family once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pipeline.sinks.remote_write import proto
from pipeline.sinks.remote_write.naming import Family
from pipeline.sinks.remote_write.rollup_encoder import SeriesPlan

_TYPE_NUMBER = {name.lower(): number for number, name in enumerate(proto.METRIC_TYPES)}


def metadata_entry(family: Family) -> bytes:
    """One `metadata` field (3) of a WriteRequest, ready to concatenate to a request body."""
    message = proto.WriteRequest(
        metadata=[
            proto.MetricMetadata(
                type=_TYPE_NUMBER[family.type],
                metric_family_name=family.name,
                help=family.help,
                unit=family.unit,
            )
        ]
    )
    return bytes(message.SerializeToString())


@dataclass(frozen=True, slots=True)
class PendingMetadata:
    """What a request carries; hand it back to `MetadataSchedule.sent` once it is stored."""

    round: int
    plans: list[SeriesPlan]
    families: list[str]
    body: bytes


NOTHING = PendingMetadata(-1, [], [], b"")


class MetadataSchedule:
    """`interval` None: never send metadata."""

    def __init__(self, interval: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._round = 0
        self._round_started = clock()
        self._family_round: dict[str, int] = {}
        self._encoded: dict[Family, bytes] = {}

    def _current_round(self) -> int:
        assert self._interval is not None
        now = self._clock()
        if now - self._round_started >= self._interval:
            self._round += 1
            self._round_started = now
        return self._round

    def pending(self, plans: Iterable[SeriesPlan]) -> PendingMetadata:
        """The metadata due for a request carrying the series of `plans`."""
        if self._interval is None:
            return NOTHING
        current = self._current_round()
        due = [plan for plan in plans if plan.metadata_round != current]
        if not due:
            return NOTHING
        families: dict[str, Family] = {}
        for plan in due:
            for family in plan.families:
                if self._family_round.get(family.name) != current:
                    families.setdefault(family.name, family)
        body = b"".join(self._entry(f) for f in families.values())
        return PendingMetadata(current, due, list(families), body)

    def sent(self, pending: PendingMetadata) -> None:
        for plan in pending.plans:
            plan.metadata_round = pending.round
        for name in pending.families:
            self._family_round[name] = pending.round

    def _entry(self, family: Family) -> bytes:
        found = self._encoded.get(family)
        if found is None:
            found = self._encoded[family] = metadata_entry(family)
        return found
