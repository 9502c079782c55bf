"""The local store's commands: `query`, `plot`, `store compact`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from pipeline.errors import PipelineError
from pipeline.options import fail
from pipeline.store import DEFAULT_STORE_PATH

StorePathOpt = Annotated[
    Path,
    typer.Option(
        "--path",
        envvar="METRICS_PIPELINE_STORE_PATH",
        help="Root directory of the local store \\[env METRICS_PIPELINE_STORE_PATH].",
    ),
]


def query(
    sql: Annotated[str, typer.Argument(help="One SQL statement (views: rollups, rollups_all).")],
    path: StorePathOpt = DEFAULT_STORE_PATH,
    output_format: Annotated[
        str, typer.Option("--format", "-f", help="table | csv | json")
    ] = "table",
    max_rows: Annotated[int, typer.Option(help="Rows shown by --format table.")] = 200,
) -> None:
    """Run DuckDB SQL over the local store. `rollups` holds each rollup once (re-deliveries
    de-duplicated by key), `rollups_all` every stored row with its source offset."""
    import sys

    from rich.console import Console

    from pipeline.store.query import run_query
    from pipeline.store.render import print_table, write_csv, write_json

    if output_format not in ("table", "csv", "json"):
        raise fail(PipelineError(f"--format must be table, csv or json, not {output_format!r}"))
    try:
        result = run_query(path, sql)
    except PipelineError as exc:
        raise fail(exc) from exc
    if output_format == "csv":
        write_csv(sys.stdout, result)
    elif output_format == "json":
        write_json(sys.stdout, result)
    else:
        print_table(Console(), result, max_rows)


def plot(
    service: Annotated[str, typer.Option(help="Series service.")],
    region: Annotated[str, typer.Option(help="Series region.")],
    name: Annotated[str, typer.Option(help="Metric name.")],
    out: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("plot.png"),
    resolution: Annotated[str, typer.Option(help="Rollup resolution to draw.")] = "1m",
    since: Annotated[
        datetime | None,
        typer.Option(
            help="Windows starting at or after this time (UTC), e.g. 2026-11-26T14:00:00."
        ),
    ] = None,
    until: Annotated[
        datetime | None,
        typer.Option(help="Windows starting before this time (UTC)."),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(help="name=value; repeat to pick one series among label variants."),
    ] = None,
    metric_type: Annotated[
        str | None,
        typer.Option("--type", help="timer | gauge | counter"),
    ] = None,
    path: StorePathOpt = DEFAULT_STORE_PATH,
) -> None:
    """Draw one series from the local store: p50/p90/p99 and the rate over time (PNG)."""
    from pipeline.store.plot import SeriesQuery, plot_series

    try:
        labels = dict(_label_pair(text) for text in label or [])
        data = plot_series(
            path,
            SeriesQuery(
                service=service,
                region=region,
                name=name,
                resolution=resolution,
                since=_as_utc(since),
                until=_as_utc(until),
                labels=labels,
                type=metric_type,
            ),
            out,
        )
    except PipelineError as exc:
        raise fail(exc) from exc
    typer.echo(f"wrote {out} ({data.windows:,} windows of {data.series_key})")


store_app = typer.Typer(help="Maintenance of the local store.", no_args_is_help=True)


@store_app.command("compact")
def store_compact(path: StorePathOpt = DEFAULT_STORE_PATH) -> None:
    """Merge each partition's files into one, de-duplicated (safe while sinks write)."""
    from pipeline.store.compact import compact_store
    from pipeline.store.query import connect

    try:
        connect(path).close()  # the same checks and messages as query
        done = compact_store(path)
    except PipelineError as exc:
        raise fail(exc) from exc
    for c in done:
        typer.echo(
            f"{c.directory.relative_to(path)}: {c.files_in} files, {c.rows_in:,} rows "
            f"→ 1 file, {c.rows_out:,} rows"
        )
    typer.echo(f"compacted {len(done)} partition{'s' * (len(done) != 1)}")


def _label_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise PipelineError(f"--label takes name=value, not {text!r}")
    return name, value


def _as_utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
