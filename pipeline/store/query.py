"""DuckDB over the store: the `rollups` view (one row per rollup key) and `rollups_all` (every
stored row, re-deliveries included, with where it came from — source topic/partition/offset —
and where it is stored — source_file, source_row). `redundant_copies` lists the rows that
`rollups` leaves out."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from pipeline.errors import PipelineError
from pipeline.store.compact import sql_string
from pipeline.store.dedup import ROW_ID, redundant_rows_sql, with_row_ids
from pipeline.store.files import DATA_GLOB, data_files
from pipeline.store.table import SCHEMA

SOURCE_COLUMNS = ("source_topic", "source_partition", "source_offset")
#: A compaction may delete files between DuckDB's listing and its read; the next try sees the
#: merged file instead.
READ_ATTEMPTS = 3


class StoreError(PipelineError):
    """The store path does not exist or is not a directory."""


class QueryError(PipelineError):
    """DuckDB rejected the query (syntax, unknown column, type error …)."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]


def connect(path: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB session (time zone UTC) with the views `rollups_all` and `rollups`.

    Raises StoreError if `path` is not a directory. A store without files gives empty views.
    """
    if not path.exists():
        raise StoreError(f"no store at {path} (the directory does not exist)")
    if not path.is_dir():
        raise StoreError(f"{path} is not a directory (--path takes the store's root directory)")
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")  # the output may be a program's input
    con.execute("SET TimeZone = 'UTC'")
    if data_files(path):
        glob = sql_string(str(path.resolve() / DATA_GLOB))
        scan = with_row_ids(
            f"read_parquet({glob}, hive_partitioning = true, hive_types = {{'date': DATE}}, "
            "filename = true, file_row_number = true)"
        )
    else:
        empty = SCHEMA.empty_table()
        for name, kind in (("date", pa.date32()), ("source_file", pa.string()),
                           ("source_row", pa.int64())):  # fmt: skip
            empty = empty.append_column(name, pa.array([], type=kind))
        con.register("empty_store", empty)
        scan = "SELECT * FROM empty_store"
    con.execute(f"CREATE VIEW rollups_all AS {scan}")
    con.execute(f"CREATE VIEW redundant_copies AS {redundant_rows_sql('rollups_all')}")
    hidden = ", ".join((*SOURCE_COLUMNS, *ROW_ID))
    con.execute(
        f"CREATE VIEW rollups AS SELECT * EXCLUDE ({hidden}) FROM rollups_all "
        f"ANTI JOIN redundant_copies USING ({', '.join(ROW_ID)})"
    )
    return con


def run_query(path: Path, sql: str, parameters: Sequence[Any] | None = None) -> QueryResult:
    """Run one SQL statement over the store. Raises StoreError or QueryError."""
    for attempt in range(READ_ATTEMPTS):
        con = connect(path)
        try:
            cursor = con.execute(sql, parameters) if parameters else con.execute(sql)
            if cursor.description is None:
                return QueryResult([], [], [])
            columns = [d[0] for d in cursor.description]
            types = [str(d[1]) for d in cursor.description]
            return QueryResult(columns, types, cursor.fetchall())
        except duckdb.IOException as exc:
            if attempt + 1 == READ_ATTEMPTS:
                raise QueryError(str(exc)) from exc
            time.sleep(0.1)
        except duckdb.Error as exc:
            raise QueryError(str(exc)) from exc
        finally:
            con.close()
    raise AssertionError("unreachable")
