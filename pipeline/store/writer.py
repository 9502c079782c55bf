"""Write batches of rollups into the store: one file per (resolution, UTC date) of the batch.

File names are a function of what the file holds — the offset range of its rows plus a hash of
each row's source position and key — so a batch delivered again with the same boundaries
replaces its own file, and one delivered with other boundaries adds rows that the `rollups` view
de-duplicates by key (and compaction removes).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import structlog

from pipeline.errors import PipelineError
from pipeline.store.compact import compact_small_files
from pipeline.store.files import partition_dir, write_file
from pipeline.store.table import to_table

#: (topic, partition, offset) of the Kafka record a rollup came from.
Source = tuple[str, int, int]
#: What converting a body that breaks the rollup contract raises (pyarrow's errors subclass these).
CONVERSION_ERRORS = (KeyError, TypeError, ValueError, AttributeError, OverflowError)

DAY_MS = 86_400_000

log = structlog.get_logger("store")


class InvalidRollup(PipelineError):
    """A record's body does not follow rollup.schema.json closely enough to be stored."""


@dataclass(frozen=True, slots=True)
class WrittenFile:
    path: Path
    rows: int


class StoreWriter:
    """Appends rollups to the store at `root`; durable when `write` returns.

    `compact_after`: when a partition directory holds this many batch files, they are merged into
    one (see compact.py); 0 turns automatic compaction off.
    """

    def __init__(self, root: Path, compact_after: int = 64) -> None:
        self.root = root
        self.compact_after = compact_after

    def write(
        self,
        keys: Sequence[str],
        bodies: Sequence[dict[str, Any]],
        sources: Sequence[Source],
    ) -> list[WrittenFile]:
        """Store the rollups (same-length sequences).

        Raises InvalidRollup, before anything of the batch is written, if a body breaks the
        rollup contract; OSError if the disk refuses. A failed automatic compaction is only
        logged: the batch is stored by then.
        """
        try:
            tables = self._tables(keys, bodies, sources)
        except CONVERSION_ERRORS as exc:
            raise InvalidRollup(f"{type(exc).__name__}: {exc}") from exc
        written = []
        for directory, (idx, table) in tables.items():
            path = directory / file_name([keys[i] for i in idx], [sources[i] for i in idx])
            write_file(table, path)
            written.append(WrittenFile(path, table.num_rows))
        if self.compact_after:
            for directory in tables:
                try:
                    compact_small_files(directory, self.compact_after)
                except (OSError, duckdb.Error, pa.ArrowException) as exc:
                    log.warning("compaction failed", directory=str(directory), error=str(exc))
        return written

    def _tables(
        self,
        keys: Sequence[str],
        bodies: Sequence[dict[str, Any]],
        sources: Sequence[Source],
    ) -> dict[Path, tuple[list[int], pa.Table]]:
        days = [(b["resolution"], b["window_start"] // DAY_MS) for b in bodies]
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        if days and days.count(days[0]) == len(days):  # the usual case: one partition
            groups[days[0]] = list(range(len(days)))
        else:
            for i, day in enumerate(days):
                groups[day].append(i)
        return {
            directory: (
                idx,
                to_table(
                    [keys[i] for i in idx], [bodies[i] for i in idx], [sources[i] for i in idx]
                ),
            )
            for (resolution, day), idx in groups.items()
            for directory in [partition_dir(self.root, resolution, day * DAY_MS)]
        }


def file_name(keys: Sequence[str], sources: Sequence[Source]) -> str:
    """`b-p<partition>-<first offset>-<last offset>-<hash>.parquet` when the rows come from one
    source partition, `b-mixed-<hash>.parquet` otherwise; the hash covers every row's source
    and key. The prefix is only there for people; the 128-bit hash makes names collision-free.
    """
    digest = hashlib.blake2b(digest_size=16)
    for (topic, partition, offset), key in zip(sources, keys, strict=True):
        digest.update(f"{topic}\x00{partition}\x00{offset}\x00{key}\x01".encode())
    origins = {(s[0], s[1]) for s in sources}
    if len(origins) != 1:
        return f"b-mixed-{digest.hexdigest()}.parquet"
    offsets = [s[2] for s in sources]
    partition = sources[0][1]
    return f"b-p{partition}-{min(offsets)}-{max(offsets)}-{digest.hexdigest()}.parquet"
