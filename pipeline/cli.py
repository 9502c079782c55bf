"""`metrics-pipeline`: one command line, a subcommand per process."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Optional

import typer

from pipeline.errors import PipelineError
from pipeline.store import DEFAULT_STORE_PATH

app = typer.Typer(
    help="Streaming metrics rollups: Kafka in, windowed t-digest rollups out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

ConfigOpt = Annotated[
    Optional[Path],  # noqa: UP045 - typer needs Optional on 3.11
    typer.Option("--config", "-c", help="YAML settings file (flags and env win over it)."),
]
BootstrapOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="Kafka bootstrap servers [env METRICS_PIPELINE_BOOTSTRAP_SERVERS]."),
]


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


def _fail(exc: PipelineError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


@app.command()
def worker(
    config: ConfigOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    group_id: Annotated[Optional[str], typer.Option(help="Consumer group.")] = None,  # noqa: UP045
    input_topic: Annotated[Optional[str], typer.Option()] = None,  # noqa: UP045
    resolution: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Base window size, e.g. 10s."),
    ] = None,
    allowed_lateness: Annotated[Optional[str], typer.Option()] = None,  # noqa: UP045
    idle_timeout: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Close a quiet partition's windows after this much wall time."),
    ] = None,
    http_port: Annotated[Optional[int], typer.Option(help="0 disables.")] = None,  # noqa: UP045
    http_host: Annotated[Optional[str], typer.Option()] = None,  # noqa: UP045
) -> None:
    """Consume raw samples, emit base-resolution rollups (runs until SIGTERM)."""
    from pipeline.kafka.worker import RollupWorker
    from pipeline.observability import configure_logging, serve_http
    from pipeline.settings import WorkerSettings, load_settings

    try:
        settings = load_settings(
            WorkerSettings,
            config,
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            input_topic=input_topic,
            resolution=resolution,
            allowed_lateness=allowed_lateness,
            idle_timeout=idle_timeout,
            http_port=http_port,
            http_host=http_host,
        )
        configure_logging(settings.log_level, settings.log_format)
        stop = _stop_on_signals()
        rollup_worker = RollupWorker(settings)
        if settings.http_port:
            serve_http(
                settings.http_host,
                settings.http_port,
                rollup_worker.metrics.registry,
                rollup_worker.health,
            )
        rollup_worker.run(stop)
    except PipelineError as exc:
        raise _fail(exc) from exc


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="Loopback port to listen on.")] = 9092,
    host: Annotated[str, typer.Option(help="Loopback address.")] = "127.0.0.1",
) -> None:
    """Run the embedded Kafka-compatible broker (Tansu, memory only) until Ctrl-C."""
    from pipeline.kafka.broker import run_embedded_broker

    try:
        run_embedded_broker(port=port, host=host)
    except PipelineError as exc:
        raise _fail(exc) from exc


@app.command()
def load(
    bootstrap_servers: Annotated[str, typer.Option(help="Kafka bootstrap servers.")] = (
        "localhost:9092"
    ),
    topic: Annotated[str, typer.Option(help="Raw topic.")] = "metrics.raw",
    samples: Annotated[int, typer.Option(help="Valid samples to send.")] = 300_000,
    services: Annotated[int, typer.Option()] = 10,
    regions: Annotated[int, typer.Option()] = 4,
    duration: Annotated[float, typer.Option(help="Seconds of event time.")] = 300.0,
    encoding: Annotated[str, typer.Option(help="single | array | columnar")] = "single",
    batch_size: Annotated[int, typer.Option(help="Samples per batch message.")] = 100,
    late_fraction: Annotated[float, typer.Option(help="Share of samples sent late.")] = 0.0,
    malformed_each: Annotated[int, typer.Option(help="Bad messages of every kind.")] = 0,
    mismatched_key_fraction: Annotated[float, typer.Option()] = 0.0,
    seed: Annotated[int, typer.Option()] = 7,
    partitions: Annotated[int, typer.Option(help="Used when the topic must be created.")] = 8,
    manifest: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Also write the manifest (exact counts) to this JSON file."),
    ] = None,
) -> None:
    """Generate a deterministic workload, produce it, print the manifest (JSON) of what was sent."""
    import orjson

    from pipeline.kafka.admin import TopicSpec, ensure_topics
    from pipeline.loadgen.build import generate
    from pipeline.loadgen.produce import produce
    from pipeline.loadgen.spec import MalformedCounts, WorkloadSpec

    try:
        spec = WorkloadSpec(
            seed=seed,
            services=services,
            regions=regions,
            duration_s=duration,
            samples=samples,
            encoding=encoding,  # type: ignore[arg-type]  # validated by WorkloadSpec
            batch_size=batch_size,
            late_fraction=late_fraction,
            mismatched_key_fraction=mismatched_key_fraction,
            malformed=MalformedCounts.each(malformed_each),
        )
        ensure_topics(bootstrap_servers, [TopicSpec(topic, partitions)])
        workload = generate(spec)
        stats = produce(bootstrap_servers, topic, workload.messages())
    except PipelineError as exc:
        raise _fail(exc) from exc
    body = workload.manifest.to_dict()
    body["produce_seconds"] = round(stats.seconds, 3)
    text = orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
    if manifest is not None:
        manifest.write_text(text + "\n")
    typer.echo(text)


@app.command()
def demo(
    bootstrap_servers: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Use this cluster instead of starting the embedded broker."),
    ] = None,
    samples: Annotated[int, typer.Option(help="Valid samples to send.")] = 300_000,
) -> None:
    """Embedded broker + load + worker + summary, all in one process; stops what it started."""
    from pipeline.demo import run_demo
    from pipeline.observability import configure_logging

    configure_logging("warning")
    try:
        ok = run_demo(bootstrap_servers, samples=samples)
    except PipelineError as exc:
        raise _fail(exc) from exc
    raise typer.Exit(0 if ok else 1)


# --- local store: query, plot, store compact -----------------------------------------------------

StorePathOpt = Annotated[
    Path,
    typer.Option(
        "--path",
        envvar="METRICS_PIPELINE_STORE_PATH",
        help="Root directory of the local store [env METRICS_PIPELINE_STORE_PATH].",
    ),
]


@app.command()
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
        raise _fail(PipelineError(f"--format must be table, csv or json, not {output_format!r}"))
    try:
        result = run_query(path, sql)
    except PipelineError as exc:
        raise _fail(exc) from exc
    if output_format == "csv":
        write_csv(sys.stdout, result)
    elif output_format == "json":
        write_json(sys.stdout, result)
    else:
        print_table(Console(), result, max_rows)


@app.command()
def plot(
    service: Annotated[str, typer.Option(help="Series service.")],
    region: Annotated[str, typer.Option(help="Series region.")],
    name: Annotated[str, typer.Option(help="Metric name.")],
    out: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("plot.png"),
    resolution: Annotated[str, typer.Option(help="Rollup resolution to draw.")] = "1m",
    since: Annotated[
        Optional[datetime],  # noqa: UP045
        typer.Option(
            help="Windows starting at or after this time (UTC), e.g. 2026-11-26T14:00:00."
        ),
    ] = None,
    until: Annotated[
        Optional[datetime],  # noqa: UP045
        typer.Option(help="Windows starting before this time (UTC)."),
    ] = None,
    label: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(help="name=value; repeat to pick one series among label variants."),
    ] = None,
    metric_type: Annotated[
        Optional[str],  # noqa: UP045
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
        raise _fail(exc) from exc
    typer.echo(f"wrote {out} ({data.windows:,} windows of {data.series_key})")


store_app = typer.Typer(help="Maintenance of the local store.", no_args_is_help=True)
app.add_typer(store_app, name="store")


@store_app.command("compact")
def store_compact(path: StorePathOpt = DEFAULT_STORE_PATH) -> None:
    """Merge each partition's files into one, de-duplicated (safe while sinks write)."""
    from pipeline.store.compact import compact_store
    from pipeline.store.query import connect

    try:
        connect(path).close()  # the same checks and messages as query
        done = compact_store(path)
    except PipelineError as exc:
        raise _fail(exc) from exc
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


if __name__ == "__main__":
    app()
