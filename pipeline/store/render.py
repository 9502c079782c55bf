"""Query results for people (a rich table) and for programs (CSV, JSON)."""

from __future__ import annotations

import csv
from datetime import date, datetime
from typing import Any, TextIO

import orjson
from rich.console import Console
from rich.table import Table

from pipeline.store.query import QueryResult

NUMERIC = ("BIGINT", "INTEGER", "HUGEINT", "SMALLINT", "TINYINT", "DOUBLE", "FLOAT", "DECIMAL")


def print_table(console: Console, result: QueryResult, max_rows: int) -> None:
    """At most `max_rows` rows, numbers right-aligned, then how many rows were left out."""
    table = Table(show_edge=False, header_style="bold")
    for name, kind in zip(result.columns, result.types, strict=True):
        numeric = kind.startswith(NUMERIC) or kind.startswith("UBIGINT")
        table.add_column(name, justify="right" if numeric else "left", overflow="fold")
    for row in result.rows[:max_rows]:
        table.add_row(*(_text(v) for v in row))
    console.print(table)
    hidden = len(result.rows) - max_rows
    suffix = f" ({hidden:,} not shown; use --max-rows or --format csv)" if hidden > 0 else ""
    console.print(f"{len(result.rows):,} row{'s' * (len(result.rows) != 1)}{suffix}", style="dim")


def write_csv(out: TextIO, result: QueryResult) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow(_csv_value(v) for v in row)


def write_json(out: TextIO, result: QueryResult) -> None:
    """A JSON array with one object per row, one row per line."""
    out.write("[")
    for i, row in enumerate(result.rows):
        record = dict(zip(result.columns, row, strict=True))
        out.write(("," if i else "") + "\n" + _dumps(record))
    out.write("\n]\n" if result.rows else "]\n")


def _text(value: Any) -> str:
    if value is None:
        return "∅"
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, datetime):
        return _iso(value).replace("T", " ")
    if isinstance(value, dict | list):
        return _dumps(value)
    return str(value)


def _csv_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, dict | list):
        return _dumps(value)
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back as the same float
    return value


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_UTC_Z).decode()


def _json_default(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    return str(value)  # Decimal, UUID, bytes …
