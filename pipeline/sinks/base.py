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
from typing import Any, NamedTuple, Protocol


class SinkRecord(NamedTuple):
    """One decoded rollup with where it came from (rollup.schema.json is the body's contract).
    `body` is empty for a sink with `parses_records = True`, which parses `raw` itself. A
    tuple: built faster than a dataclass, and one holding only strings, ints, bytes and an empty
    dict is dropped from the cyclic GC's watch at its first collection (a batch of dataclasses
    survived into the oldest generation and made full collections frequent)."""

    topic: str
    partition: int
    offset: int
    key: bytes
    raw: bytes
    body: dict[str, Any]


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
