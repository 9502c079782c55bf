"""`metrics-pipeline query` and `store compact` through the real CLI (typer's CliRunner)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.sinks.local import LocalStoreSink

from .rollups import rollup_records

runner = CliRunner()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    records = rollup_records()
    sink = LocalStoreSink(tmp_path / "store", compact_after=0)
    sink.write(records)
    sink.write(records[100:180])  # a re-delivery: must not show in `rollups`
    return tmp_path / "store"


PER_SERVICE = (
    "SELECT service, count(*) AS windows, sum(count) AS samples FROM rollups "
    "WHERE type = 'timer' GROUP BY service ORDER BY service"
)


def test_query_prints_a_table_by_default(store: Path) -> None:
    result = runner.invoke(app, ["query", PER_SERVICE, "--path", str(store)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].replace("┃", " ").split() == ["service", "windows", "samples"]
    samples = {
        service: sum(
            r.body["count"]
            for r in rollup_records()
            if r.body["series"]["service"] == service and r.body["series"]["type"] == "timer"
        )
        for service in ("checkout", "search")
    }
    cells = [line.replace("│", " ").split() for line in lines[2:4]]
    assert cells == [
        ["checkout", "120", f"{samples['checkout']:,}"],
        ["search", "60", f"{samples['search']:,}"],
    ]
    assert lines[-1].strip() == "2 rows"


def test_query_csv_and_json_agree_with_the_records(store: Path) -> None:
    records = rollup_records()
    expected = {
        service: sum(
            r.body["count"]
            for r in records
            if r.body["series"]["service"] == service and r.body["series"]["type"] == "timer"
        )
        for service in ("checkout", "search")
    }
    as_csv = runner.invoke(app, ["query", PER_SERVICE, "--path", str(store), "--format", "csv"])
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert {r["service"]: int(r["samples"]) for r in rows} == expected

    as_json = runner.invoke(app, ["query", PER_SERVICE, "--path", str(store), "-f", "json"])
    assert as_json.exit_code == 0, as_json.output
    assert {r["service"]: r["samples"] for r in json.loads(as_json.output)} == expected


def test_json_keeps_timestamps_maps_and_digests_usable(store: Path) -> None:
    sql = (
        "SELECT window_start, labels, percentiles, p99, digest FROM rollups "
        "WHERE service = 'search' ORDER BY window_start LIMIT 1"
    )
    result = runner.invoke(app, ["query", sql, "--path", str(store), "-f", "json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["window_start"] == "2026-11-25T23:30:00Z"
    assert row["labels"] == {"route": "/q"}
    assert row["p99"] == row["percentiles"]["p99"]
    assert set(row["percentiles"]) == {"p50", "p90", "p95", "p99", "p99.9"}
    assert json.loads(row["digest"])["n"] == 40


def test_rollups_all_shows_the_redelivered_rows(store: Path) -> None:
    sql = "SELECT (SELECT count(*) FROM rollups_all), (SELECT count(*) FROM rollups)"
    result = runner.invoke(app, ["query", sql, "--path", str(store), "-f", "csv"])
    assert result.output.splitlines()[1] == "320,240"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELEC * FROM rollups", "syntax error"),
        ("SELECT no_such_column FROM rollups", "no_such_column"),
        ("SELECT * FROM no_such_table", "no_such_table"),
    ],
)
def test_bad_sql_exits_2_with_duckdbs_message(store: Path, sql: str, message: str) -> None:
    result = runner.invoke(app, ["query", sql, "--path", str(store)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_missing_store_exits_2_and_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = runner.invoke(app, ["query", "SELECT 1", "--path", str(missing)])
    assert result.exit_code == 2
    assert f"no store at {missing}" in result.output
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = runner.invoke(app, ["query", "SELECT 1", "--path", str(not_a_dir)])
    assert result.exit_code == 2 and "not a directory" in result.output


def test_an_empty_store_has_empty_views_with_the_full_schema(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["query", "SELECT count(*), max(p99_9) FROM rollups", "--path", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "0" in result.output.splitlines()[2]


def test_an_unknown_format_exits_2(store: Path) -> None:
    result = runner.invoke(app, ["query", "SELECT 1", "--path", str(store), "-f", "xml"])
    assert result.exit_code == 2 and "--format" in result.output


def test_store_compact_command(store: Path) -> None:
    result = runner.invoke(app, ["store", "compact", "--path", str(store)])
    assert result.exit_code == 0, result.output
    assert "compacted 2 partitions" in result.output
    again = runner.invoke(app, ["query", "SELECT count(*) FROM rollups_all", "--path", str(store)])
    assert "240" in again.output
