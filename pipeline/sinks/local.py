"""`LocalStoreSink`: the zero-setup store — rollups as Parquet files on a local path.

Durable when `write` returns (see pipeline/store/files.py), idempotent by construction: a
re-delivered rollup is either rewritten under the same file name or stored again and hidden by
the `rollups` view (same key ⇒ same content, by the rollup contract).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.sinks.base import Rejection, RollupSink, SinkRecord
from pipeline.store import DEFAULT_STORE_PATH
from pipeline.store.files import partition_dir
from pipeline.store.table import to_table
from pipeline.store.writer import CONVERSION_ERRORS, InvalidRollup, StoreWriter


class LocalStoreSink:
    """RollupSink writing hive-partitioned Parquet under `path` (created if missing)."""

    name = "local"
    reads_digest = True

    def __init__(self, path: Path | str = DEFAULT_STORE_PATH, compact_after: int = 64) -> None:
        self.path = Path(path)
        self.writer = StoreWriter(self.path, compact_after=compact_after)

    def write(self, batch: Sequence[SinkRecord]) -> list[Rejection]:
        """Store every record that follows the rollup contract; reject the others.

        OSError (disk full, permissions) propagates: the runner must not commit, and retrying
        the same batch is what a full disk needs after an operator frees space.
        """
        try:
            self._store(batch)
            return []
        except InvalidRollup:
            pass  # nothing was written: the writer converts the whole batch first
        good: list[SinkRecord] = []
        rejected: list[Rejection] = []
        for index, record in enumerate(batch):
            try:
                _check(record)
                good.append(record)
            except InvalidRollup as exc:
                rejected.append(Rejection(index, "not_a_rollup", str(exc)))
        if good:
            self._store(good)
        return rejected

    def _store(self, records: Sequence[SinkRecord]) -> None:
        if records:
            self.writer.write(
                [r.key.decode(errors="replace") for r in records],
                [r.body for r in records],
                [(r.topic, r.partition, r.offset) for r in records],
            )

    def close(self) -> None:
        """Nothing is buffered: every write is already on disk."""


def _check(record: SinkRecord) -> None:
    """Raise InvalidRollup if the record cannot be stored."""
    try:
        body = record.body
        key = record.key.decode()
        partition_dir(Path(), body["resolution"], body["window_start"])
        to_table([key], [body], [(record.topic, record.partition, record.offset)])
    except (*CONVERSION_ERRORS, UnicodeDecodeError) as exc:
        raise InvalidRollup(f"{type(exc).__name__}: {exc}") from exc


if TYPE_CHECKING:  # mypy proves the class satisfies the runner's protocol
    _: RollupSink = LocalStoreSink()
