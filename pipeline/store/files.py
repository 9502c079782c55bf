"""Where rollup files live and how they become visible: atomically, durably, under stable names.

A file is written to a hidden temp name in its partition directory, fsynced, renamed onto its
final name (atomic on POSIX) and the directory is fsynced, so after `write_file` returns the file
survives a power cut, and a crash at any point leaves either the whole file or no visible file.
Temp files start with "." and end in ".tmp", so the store's glob (`*.parquet`) never sees them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

#: Every data file of a store, relative to its root (what DuckDB reads).
DATA_GLOB = "resolution=*/date=*/*.parquet"
TEMP_SUFFIX = ".tmp"
COMPRESSION = "zstd"
#: Rows per Parquet row group: ~25 MB of rollups with their digests — large enough to compress
#: well, small enough to skip by statistics and to keep a compaction's memory low.
ROW_GROUP_ROWS = 16 * 1024


def partition_dir(root: Path, resolution: str, window_start_ms: int) -> Path:
    """`<root>/resolution=<res>/date=<UTC date of window_start>`."""
    day = datetime.fromtimestamp(window_start_ms / 1000, tz=UTC).date().isoformat()
    return root / f"resolution={resolution}" / f"date={day}"


def data_files(root: Path) -> list[Path]:
    return sorted(root.glob(DATA_GLOB))


def temp_files(root: Path) -> list[Path]:
    return sorted(root.glob(f"resolution=*/date=*/.*{TEMP_SUFFIX}"))


def ensure_dir(directory: Path) -> None:
    """Create `directory` and make each new entry durable in its parent."""
    missing = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        fsync_dir(new.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(table: pa.Table, path: Path) -> None:
    """Write `table` as Parquet at `path`, atomically and durably (replacing any file there)."""
    write_batches(table.schema, table.to_batches(), path)


def write_batches(schema: pa.Schema, batches: Iterable[pa.RecordBatch], path: Path) -> int:
    """Stream record batches into one Parquet file at `path`, atomically and durably.

    Returns the number of rows written. Nothing is visible at `path` until every batch is on disk.
    """
    ensure_dir(path.parent)
    temp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}"
    rows = 0
    try:
        with open(temp, "wb") as sink:
            with pq.ParquetWriter(sink, schema, compression=COMPRESSION) as writer:
                for batch in batches:
                    writer.write_batch(batch, row_group_size=ROW_GROUP_ROWS)
                    rows += batch.num_rows
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return rows


def remove_files(paths: list[Path]) -> None:
    """Delete files and make the deletions durable (one fsync per directory)."""
    for path in paths:
        path.unlink(missing_ok=True)
    for directory in {p.parent for p in paths}:
        fsync_dir(directory)
