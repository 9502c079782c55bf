"""Merge a partition's small files into one, de-duplicated by rollup key, atomically.

Each written batch is a file `b-….parquet`; many small files make every query slower. Merging
writes `c-<hash of the inputs>.parquet` (rows in file order, one row per key) with
the same atomic rename as any file, and only then deletes the inputs. A crash in between leaves
rows twice, which the `rollups` view hides and the next compaction removes. A lock file per
partition keeps two compactions (say, the sink's and an operator's) from racing; writers never
need it, because a compaction only deletes the files it merged.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.store.dedup import ROW_ID, redundant_rows_sql, with_row_ids
from pipeline.store.files import (
    ROW_GROUP_ROWS,
    data_files,
    remove_files,
    temp_files,
    write_batches,
)
from pipeline.store.table import SCHEMA

LOCK_NAME = ".compact.lock"
#: Compaction runs inside the sink process: keep DuckDB's memory small (it streams, and spills to
#: its temp directory beyond this) and its progress bar off the sink's terminal.
COMPACTION_DUCKDB: dict[str, str | bool | int | float | list[str]] = {
    "memory_limit": "256MB",
    "threads": 1,
}
#: Temp files older than this are left-overs of a crashed writer (no write takes this long).
STALE_TEMP_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Compaction:
    directory: Path
    files_in: int
    rows_in: int
    rows_out: int


def compact_small_files(directory: Path, threshold: int) -> Compaction | None:
    """Automatic compaction after a write, in two levels so that a busy day's partition is not
    rewritten whole every time: `threshold` batch files merge into one `c-` file, and
    `threshold` `c-` files merge into one. Skips (returns None) if another process compacts."""
    batch_files = sorted(directory.glob("b-*.parquet"))
    merged_files = sorted(directory.glob("c-*.parquet"))
    if len(merged_files) >= threshold:
        return _compact(directory, batch_files + merged_files, wait=False)
    if len(batch_files) >= threshold:
        return _compact(directory, batch_files, wait=False)
    return None


def compact_partition(directory: Path) -> Compaction | None:
    """Merge every file of one partition into one (waits for a running compaction)."""
    files = sorted(directory.glob("*.parquet"))
    return _compact(directory, files, wait=True)


def compact_store(root: Path) -> list[Compaction]:
    """Compact every partition of the store, and remove temp files a crashed writer left."""
    done = []
    for directory in sorted({p.parent for p in data_files(root)}):
        result = compact_partition(directory)
        if result is not None:
            done.append(result)
    remove_stale_temp_files(root)
    return done


def remove_stale_temp_files(root: Path, older_than: float = STALE_TEMP_SECONDS) -> list[Path]:
    now = time.time()
    stale = [p for p in temp_files(root) if now - p.stat().st_mtime > older_than]
    remove_files(stale)
    return stale


def _compact(directory: Path, files: list[Path], wait: bool) -> Compaction | None:
    with _partition_lock(directory, wait) as locked:
        if not locked:
            return None
        files = [f for f in files if f.exists()]  # another compaction may have merged some
        if len(files) < 2 and not _has_duplicates(files):
            return None
        target = directory / _merged_name(files)
        con = duckdb.connect(config=COMPACTION_DUCKDB)
        try:
            con.execute("SET enable_progress_bar = false")
            rows_in = _row_count(con, files)
            reader = con.sql(_dedup_sql(con, files)).to_arrow_reader(ROW_GROUP_ROWS)
            rows_out = write_batches(SCHEMA, _conformed(reader), target)
        finally:
            con.close()
        remove_files([f for f in files if f != target])
        return Compaction(directory, len(files), rows_in, rows_out)


def _conformed(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    # DuckDB hands timestamps back in µs; every file of the store keeps the ms schema.
    for batch in reader:
        yield from pa.Table.from_batches([batch]).cast(SCHEMA).to_batches()


def _has_duplicates(files: list[Path]) -> bool:
    if not files:
        return False
    con = duckdb.connect(config=COMPACTION_DUCKDB)
    try:
        row = con.execute(f"SELECT count(*) - count(DISTINCT key) FROM {_scan(files)}").fetchall()
    finally:
        con.close()
    return bool(row and row[0][0])


def _row_count(con: duckdb.DuckDBPyConnection, files: list[Path]) -> int:
    row = con.execute(f"SELECT count(*) FROM {_scan(files)}").fetchall()
    return int(row[0][0]) if row else 0


def _dedup_sql(con: duckdb.DuckDBPyConnection, files: list[Path]) -> str:
    """Every row of `files` but the redundant copies, in file order (which is window order)."""
    con.execute(f"CREATE TEMP VIEW stored AS {with_row_ids(_scan(files, row_ids=True))}")
    columns = ", ".join(f'"{f.name}"' for f in SCHEMA)
    return (
        f"SELECT {columns} FROM stored "
        f"ANTI JOIN ({redundant_rows_sql('stored')}) AS copies USING ({', '.join(ROW_ID)})"
    )


def _scan(files: list[Path], row_ids: bool = False) -> str:
    paths = ", ".join(sql_string(str(f)) for f in files)
    extra = ", filename = true, file_row_number = true" if row_ids else ""
    return f"read_parquet([{paths}], hive_partitioning = false{extra})"


def sql_string(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _merged_name(files: list[Path]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for f in files:
        digest.update(f.name.encode() + b"\x00")
    return f"c-{digest.hexdigest()}.parquet"


@contextmanager
def _partition_lock(directory: Path, wait: bool) -> Iterator[bool]:
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
