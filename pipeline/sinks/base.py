"""What every sink implements, and what the sink runner hands it.

The runner (consume → decode → `write` → commit) owns Kafka; a sink only stores a batch. Offsets
are committed after `write` returns, so a sink must have made the batch durable by then. A sink
that cannot store a batch *now* raises `RetryableSinkError` (the runner backs off and retries the
same batch without consuming more, which bounds memory during an outage); records it can never
store are returned as `Rejection`s and go to the dead-letter topic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress
from typing import Any, NamedTuple, Protocol, overload


class SinkRecord(NamedTuple):
    """One decoded rollup with where it came from (rollup.schema.json is the body's contract).
    `body` is empty for a sink with `parses_records = True`, which parses `raw` itself (and
    gets its batch as `RecordColumns`). A
    tuple: built faster than a dataclass, and one holding only strings, ints, bytes and an empty
    dict is dropped from the cyclic GC's watch at its first collection (a batch of dataclasses
    survived into the oldest generation and made full collections frequent)."""

    topic: str
    partition: int
    offset: int
    key: bytes
    raw: bytes
    body: dict[str, Any]


#: The body of every record handed unparsed to a sink that parses records itself; never
#: written to (such a sink reads `raw`).
UNPARSED: dict[str, Any] = {}


class RecordColumns(Sequence[SinkRecord]):
    """A batch of unparsed records (`body` empty), kept as one list per field: what the runner
    hands a sink with `parses_records = True`. Building a tuple per record cost the runner
    0.8 µs a record, mostly in the young collections the tuples set off; a sink reads `raws`
    whole, and the rare record looked at alone (a dead letter) becomes a `SinkRecord` then."""

    __slots__ = ("keys", "offsets", "partitions", "raws", "topics")

    def __init__(self) -> None:
        self.topics: list[str] = []
        self.partitions: list[int] = []
        self.offsets: list[int] = []
        self.keys: list[bytes] = []
        self.raws: list[bytes] = []

    def extend(
        self,
        topics: list[str],
        partitions: list[int],
        offsets: list[int],
        keys: list[bytes],
        raws: list[bytes],
    ) -> None:
        self.topics += topics
        self.partitions += partitions
        self.offsets += offsets
        self.keys += keys
        self.raws += raws

    def without(self, partitions: set[tuple[str, int]]) -> RecordColumns:
        """The records of every partition but `partitions` (topic, partition), in order."""
        keep = [where not in partitions for where in zip(self.topics, self.partitions, strict=True)]
        kept = RecordColumns()
        kept.extend(
            list(compress(self.topics, keep)),
            list(compress(self.partitions, keep)),
            list(compress(self.offsets, keep)),
            list(compress(self.keys, keep)),
            list(compress(self.raws, keep)),
        )
        return kept

    def __len__(self) -> int:
        return len(self.raws)

    @overload
    def __getitem__(self, index: int) -> SinkRecord: ...

    @overload
    def __getitem__(self, index: slice) -> list[SinkRecord]: ...

    def __getitem__(self, index: int | slice) -> SinkRecord | list[SinkRecord]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return SinkRecord(
            self.topics[index],
            self.partitions[index],
            self.offsets[index],
            self.keys[index],
            self.raws[index],
            UNPARSED,
        )


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record the sink can never store: `index` into the batch, a reason code, the detail
    (e.g. the TSDB's error message)."""

    index: int
    reason: str
    detail: str


class RetryableSinkError(Exception):
    """The store is unavailable or overloaded (5xx, 429, timeout, connection refused)."""


class RollupSink(Protocol):
    name: str
    # False: the runner may hand the sink bodies without their `digest` (cheaper to parse).
    reads_digest: bool

    def write(self, batch: Sequence[SinkRecord]) -> list[Rejection]:
        """Store the batch durably, or raise RetryableSinkError. Must be idempotent: after a
        crash the runner re-delivers records that may already be stored."""
        ...

    def close(self) -> None: ...
