"""`metrics-pipeline`: one command line, a subcommand per process."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from pipeline.errors import PipelineError
from pipeline.ops.commands import config_app, tail, topics_app
from pipeline.store import DEFAULT_STORE_PATH

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from pipeline.settings import TierSettings
    from pipeline.sinks.base import RollupSink
    from pipeline.sinks.settings import SinkSettings

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


def add_process_collectors(registry: CollectorRegistry) -> None:
    from pipeline.selfmetrics import add_process_collectors as add

    add(registry)


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
    processes: Annotated[
        str, typer.Option(help="Group members to run as child processes: N, or auto (one per CPU).")
    ] = "1",
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
        if processes != "1":  # a supervisor of child workers (pipeline/supervise.py)
            from pipeline.supervise import supervise_workers

            raise typer.Exit(supervise_workers(processes, settings.http_host, settings.http_port))
        stop = _stop_on_signals()
        rollup_worker = RollupWorker(settings)
        if settings.http_port:
            add_process_collectors(rollup_worker.metrics.registry)
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
def tier(
    config: ConfigOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    from_resolution: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--from", help="Run one step: the input tier, e.g. 10s (with --to)."),
    ] = None,
    to_resolution: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--to", help="Run one step: the output tier, e.g. 1m (with --from)."),
    ] = None,
    chain: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Comma-separated tiers to run as steps, default 10s,1m,5m,1h."),
    ] = None,
    idle_timeout: Annotated[Optional[str], typer.Option()] = None,  # noqa: UP045
    http_port: Annotated[Optional[int], typer.Option(help="0 disables.")] = None,  # noqa: UP045
    http_host: Annotated[Optional[str], typer.Option()] = None,  # noqa: UP045
) -> None:
    """Merge rollups into coarser tiers: each step consumes one rollup topic and emits the next."""
    from pipeline.errors import ConfigError
    from pipeline.settings import TierSettings, load_settings

    try:
        if (from_resolution is None) != (to_resolution is None):
            raise ConfigError("--from and --to go together")
        settings = load_settings(
            TierSettings,
            config,
            bootstrap_servers=bootstrap_servers,
            chain=None if chain is None else [c.strip() for c in chain.split(",")],
            input_resolution=from_resolution,
            resolution=to_resolution,
            idle_timeout=idle_timeout,
            http_port=http_port,
            http_host=http_host,
        )
        steps = settings.steps() if from_resolution is None else [settings]
        _run_tier_steps(settings, steps)
    except PipelineError as exc:
        raise _fail(exc) from exc


def _run_tier_steps(settings: TierSettings, steps: list[TierSettings]) -> None:
    from prometheus_client import CollectorRegistry

    from pipeline.kafka.tier_worker import TierWorker
    from pipeline.observability import (
        AllHealthy,
        LabelledRegistries,
        configure_logging,
        serve_http,
    )

    configure_logging(settings.log_level, settings.log_format)
    stop = _stop_on_signals()
    workers = {step.resolution: TierWorker(step) for step in steps}
    if settings.http_port:
        registry = CollectorRegistry()
        registry.register(
            LabelledRegistries("tier", {r: w.metrics.registry for r, w in workers.items()})
        )
        health = AllHealthy([w.health for w in workers.values()])
        add_process_collectors(registry)
        serve_http(settings.http_host, settings.http_port, registry, health)
    errors: list[BaseException] = []

    def run(worker: TierWorker) -> None:
        try:
            worker.run(stop)
        except BaseException as exc:  # one failed step stops the others
            errors.append(exc)
            stop.set()

    threads = [
        threading.Thread(target=run, args=(w,), name=f"tier-{r}") for r, w in workers.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


@app.command()
def detect(
    config: ConfigOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    resolution: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Rollup tier to watch (default 1m)."),
    ] = None,
    statistics: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Comma-separated statistics, default p99,rate."),
    ] = None,
    model: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="auto | robust | seasonal (default auto)."),
    ] = None,
    anomaly_topic: Annotated[Optional[str], typer.Option()] = None,  # noqa: UP045
    group_id: Annotated[Optional[str], typer.Option(help="Consumer group.")] = None,  # noqa: UP045
    http_port: Annotated[Optional[int], typer.Option(help="0 disables.")] = None,  # noqa: UP045
    http_host: Annotated[Optional[str], typer.Option()] = None,  # noqa: UP045
) -> None:
    """Score every window of a rollup tier against learnt baselines; anomaly episodes out."""
    from pipeline.kafka.detect_worker import DetectWorker
    from pipeline.observability import configure_logging, serve_http
    from pipeline.settings import DetectSettings, load_settings

    try:
        settings = load_settings(
            DetectSettings,
            config,
            bootstrap_servers=bootstrap_servers,
            resolution=resolution,
            statistics=None if statistics is None else [s.strip() for s in statistics.split(",")],
            model=model,
            anomaly_topic=anomaly_topic,
            group_id=group_id,
            http_port=http_port,
            http_host=http_host,
        )
        configure_logging(settings.log_level, settings.log_format)
        stop = _stop_on_signals()
        detector = DetectWorker(settings)
        if settings.http_port:
            add_process_collectors(detector.metrics.registry)
            serve_http(
                settings.http_host, settings.http_port, detector.metrics.registry, detector.health
            )
        detector.run(stop)
    except PipelineError as exc:
        raise _fail(exc) from exc


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="Loopback port to listen on.")] = 9092,
    host: Annotated[str, typer.Option(help="Loopback address.")] = "127.0.0.1",
    storage: Annotated[
        str,
        typer.Option(
            help="memory://tansu/ (lost on exit) or s3://BUCKET/ on an S3-compatible store "
            "(AWS_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, "
            "AWS_ALLOW_HTTP from the environment): kept across restarts."
        ),
    ] = "memory://tansu/",
) -> None:
    """Run the embedded Kafka-compatible broker (Tansu) until Ctrl-C."""
    from pipeline.kafka.broker import run_embedded_broker

    try:
        run_embedded_broker(port=port, host=host, storage=storage)
    except PipelineError as exc:
        raise _fail(exc) from exc


@app.command()
def load(
    config: ConfigOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    topic: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Raw topic (default: input_topic from --config or env, metrics.raw)."),
    ] = None,
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
    partitions: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Used when the topic must be created (default: topic_partitions, 8)."),
    ] = None,
    partitioner: Annotated[
        str,
        typer.Option(
            help="Imitate a producer: consistent_random (librdkafka's default: Python, Go, "
            ".NET, C), murmur2_random (Java, kafkajs: no forwarding), random, fnv1a (sarama), "
            "null-key (no key at all)."
        ),
    ] = "consistent_random",
    key_format: Annotated[
        str,
        typer.Option(
            help="Record keys: service-region (the contract), instance (the reporting "
            "process), constant (one key)."
        ),
    ] = "service-region",
    manifest: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Also write the manifest (exact counts) to this JSON file."),
    ] = None,
    start: Annotated[
        Optional[datetime],  # noqa: UP045
        typer.Option(help="First event time (UTC); default: --duration before now."),
    ] = None,
) -> None:
    """Generate a deterministic workload, produce it, print the manifest (JSON) of what was sent."""
    # Settings as the worker reads them (flags > env > --config): bootstrap servers, kafka_config
    # (librdkafka settings for the producer, e.g. SASL) and input_topic / topic_partitions as
    # the defaults of --topic / --partitions, so one file serves both.
    import orjson

    from pipeline.errors import ConfigError
    from pipeline.kafka.admin import TopicSpec, ensure_topics
    from pipeline.loadgen.anchor import event_start_ms
    from pipeline.loadgen.build import generate
    from pipeline.loadgen.partitioning import KEY_FORMATS, partitioner_choice, rekeyed
    from pipeline.loadgen.produce import produce
    from pipeline.loadgen.spec import MalformedCounts, WorkloadSpec
    from pipeline.settings import WorkerSettings, load_settings

    try:
        settings = load_settings(
            WorkerSettings,
            config,
            bootstrap_servers=bootstrap_servers,
            input_topic=topic,
            topic_partitions=partitions,
        )
        choice = partitioner_choice(partitioner)
        if key_format not in KEY_FORMATS:
            raise ConfigError(f"--key-format must be one of {', '.join(KEY_FORMATS)}")
        if "partitioner" in settings.kafka_config:  # the manifest must name what was used
            raise ConfigError("set the partitioner with --partitioner, not in kafka_config")
        spec = WorkloadSpec(
            seed=seed,
            services=services,
            regions=regions,
            duration_s=duration,
            start_ms=event_start_ms(duration, start),
            samples=samples,
            encoding=encoding,  # type: ignore[arg-type]  # validated by WorkloadSpec
            batch_size=batch_size,
            late_fraction=late_fraction,
            mismatched_key_fraction=mismatched_key_fraction,
            malformed=MalformedCounts.each(malformed_each),
        )
        servers = settings.client_config()
        # A load generator feeds test clusters: it creates the raw topic if it is missing.
        ensure_topics(
            servers, [TopicSpec(settings.input_topic, settings.topic_partitions)], exact=False
        )
        workload = generate(spec)
        stats = produce(
            servers,
            settings.input_topic,
            rekeyed(workload.messages(), key_format),
            partitioner=choice,
        )
    except PipelineError as exc:
        raise _fail(exc) from exc
    body = workload.manifest.to_dict()
    body["partitioner"] = choice.name
    body["librdkafka_partitioner"] = choice.librdkafka
    body["key_format"] = key_format if choice.keyed else "none"
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
    store_path: Annotated[
        Path, typer.Option("--path", help="Local store the demo fills (query it afterwards).")
    ] = Path("metrics-store"),
    plot: Annotated[Path, typer.Option(help="PNG of the busiest timer.")] = Path(
        "metrics-demo.png"
    ),
    remote_write_url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Also remote-write every tier here, e.g. http://127.0.0.1:9090/api/v1/write."
        ),
    ] = None,
    alertmanager_url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Send the demo's anomaly episodes to this Alertmanager."),
    ] = None,
    start: Annotated[
        Optional[datetime],  # noqa: UP045
        typer.Option(help="First event time (UTC); default: five minutes before now."),
    ] = None,
) -> None:
    """Embedded broker + load + worker + tiers + sinks + detector (one injected incident) +
    summary + plot, all in one process; stops what it started."""
    from pipeline.demo import run_demo
    from pipeline.loadgen.anchor import event_start_ms
    from pipeline.observability import configure_logging

    configure_logging("warning")
    try:
        ok = run_demo(
            bootstrap_servers,
            samples=samples,
            store_path=store_path,
            plot_path=plot,
            remote_write_url=remote_write_url,
            alertmanager_url=alertmanager_url,
            start_ms=None if start is None else event_start_ms(0, start),
        )
    except PipelineError as exc:
        raise _fail(exc) from exc
    raise typer.Exit(0 if ok else 1)


# -- sink: store rollup topics (one sub-command per store; each builds its settings and sink,
# -- then hands both to _run_sink) ------------------------------------------------------------

sink_app = typer.Typer(
    help="Store rollup topics: a Prometheus-compatible TSDB over remote-write, or local files.",
    no_args_is_help=True,
)
app.add_typer(sink_app, name="sink")

TopicsOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        help="Comma-separated rollup topics, e.g. metrics.rollups.10s,metrics.rollups.1m."
    ),
]
SinkGroupOpt = Annotated[Optional[str], typer.Option(help="Consumer group.")]  # noqa: UP045
HttpPortOpt = Annotated[Optional[int], typer.Option(help="0 disables.")]  # noqa: UP045
HttpHostOpt = Annotated[Optional[str], typer.Option()]  # noqa: UP045


def _topic_list(topics: str | None) -> list[str] | None:
    return None if topics is None else [t.strip() for t in topics.split(",") if t.strip()]


def _run_sink(settings: SinkSettings, sink: RollupSink) -> None:
    """Run the sink runner until SIGTERM/SIGINT, serving /metrics /healthz /readyz."""
    from pipeline.observability import configure_logging, serve_http
    from pipeline.sinks.runner import SinkRunner

    configure_logging(settings.log_level, settings.log_format)
    stop = _stop_on_signals()
    runner = SinkRunner(settings, sink)
    server = None
    if settings.http_port:
        add_process_collectors(runner.metrics.registry)
        server = serve_http(
            settings.http_host, settings.http_port, runner.metrics.registry, runner.health
        )
    try:
        runner.run(stop)
    finally:
        sink.close()
        if server is not None:
            server.shutdown()


@sink_app.command("remote-write")
def sink_remote_write(
    config: ConfigOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Remote-write endpoint [env METRICS_PIPELINE_URL]."),
    ] = None,
    topics: TopicsOpt = None,
    group_id: SinkGroupOpt = None,
    concurrency: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Parallel requests (sharded by series)."),
    ] = None,
    timeout: Annotated[Optional[str], typer.Option(help="Per request, e.g. 10s.")] = None,  # noqa: UP045
    bearer_token_file: Annotated[Optional[Path], typer.Option()] = None,  # noqa: UP045
    http_port: HttpPortOpt = None,
    http_host: HttpHostOpt = None,
) -> None:
    """Write rollups to a Prometheus-compatible TSDB (remote-write 1.0) until SIGTERM.

    Every other setting (basic auth, TLS files, headers, batching, retries) comes from the
    environment (METRICS_PIPELINE_*) or the --config YAML file."""
    from pipeline.settings import load_settings
    from pipeline.sinks.remote_write import RemoteWriteSettings, RemoteWriteSink

    try:
        settings = load_settings(
            RemoteWriteSettings,
            config,
            bootstrap_servers=bootstrap_servers,
            url=url,
            topics=_topic_list(topics),
            group_id=group_id,
            concurrency=concurrency,
            timeout=timeout,
            bearer_token_file=bearer_token_file,
            http_port=http_port,
            http_host=http_host,
        )
        _run_sink(settings, RemoteWriteSink(settings))
    except PipelineError as exc:
        raise _fail(exc) from exc


@sink_app.command("local")
def sink_local(
    config: ConfigOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    path: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Store directory (default ./metrics-store) [env METRICS_PIPELINE_PATH]."),
    ] = None,
    topics: TopicsOpt = None,
    group_id: SinkGroupOpt = None,
    http_port: HttpPortOpt = None,
    http_host: HttpHostOpt = None,
) -> None:
    """Write rollups (every tier by default) to the embedded Parquet store until SIGTERM;
    read them with `metrics-pipeline query` and `metrics-pipeline plot`."""
    from pipeline.settings import load_settings
    from pipeline.sinks.local import LocalStoreSink
    from pipeline.sinks.settings import LocalSinkSettings

    try:
        settings = load_settings(
            LocalSinkSettings,
            config,
            bootstrap_servers=bootstrap_servers,
            path=path,
            topics=_topic_list(topics),
            group_id=group_id,
            http_port=http_port,
            http_host=http_host,
        )
        _run_sink(settings, LocalStoreSink(settings.path, compact_after=settings.compact_after))
    except PipelineError as exc:
        raise _fail(exc) from exc


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


# -- alert-bridge: anomaly episodes → Alertmanager ------------------------------------------------


@app.command("alert-bridge")
def alert_bridge(
    config: ConfigOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    alertmanager_url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Alertmanager base URL, e.g. http://127.0.0.1:9093 "
            "[env METRICS_PIPELINE_ALERTMANAGER_URL]."
        ),
    ] = None,
    topic: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Anomaly topic (default metrics.anomalies)."),
    ] = None,
    group_id: Annotated[Optional[str], typer.Option(help="Consumer group.")] = None,  # noqa: UP045
    alertname: Annotated[Optional[str], typer.Option(help="alertname label.")] = None,  # noqa: UP045
    dashboard_url_template: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Dashboard link, e.g. 'https://grafana/d/x?var-service={service}&from={started_at}'."
        ),
    ] = None,
    resend_interval: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Re-send firing alerts this often (default 1m)."),
    ] = None,
    bearer_token_file: Annotated[Optional[Path], typer.Option()] = None,  # noqa: UP045
    http_port: Annotated[Optional[int], typer.Option(help="0 disables.")] = None,  # noqa: UP045
    http_host: Annotated[Optional[str], typer.Option()] = None,  # noqa: UP045
) -> None:
    """Forward anomaly episodes to Alertmanager's v2 API until SIGTERM: firing alerts re-sent
    before they expire, resolved ones with endsAt.

    Every other setting (basic auth, TLS files, headers, retries, extra labels) comes from the
    environment (METRICS_PIPELINE_*) or the --config YAML file."""
    from pipeline.alerting import AlertBridge, AlertBridgeSettings
    from pipeline.observability import configure_logging, serve_http
    from pipeline.settings import load_settings

    try:
        settings = load_settings(
            AlertBridgeSettings,
            config,
            bootstrap_servers=bootstrap_servers,
            alertmanager_url=alertmanager_url,
            anomaly_topic=topic,
            group_id=group_id,
            alertname=alertname,
            dashboard_url_template=dashboard_url_template,
            resend_interval=resend_interval,
            bearer_token_file=bearer_token_file,
            http_port=http_port,
            http_host=http_host,
        )
        configure_logging(settings.log_level, settings.log_format)
        stop = _stop_on_signals()
        bridge = AlertBridge(settings)
        server = None
        if settings.http_port:
            add_process_collectors(bridge.metrics.registry)
            server = serve_http(
                settings.http_host, settings.http_port, bridge.metrics.registry, bridge.health
            )
        try:
            bridge.run(stop)
        finally:
            if server is not None:
                server.shutdown()
    except PipelineError as exc:
        raise _fail(exc) from exc


# -- operators: topics, tail, config show, --version ---------------------------------------------

app.add_typer(topics_app, name="topics")
app.add_typer(config_app, name="config")
app.command()(tail)


def _print_version(requested: bool) -> None:
    if requested:
        from importlib.metadata import version

        typer.echo(f"metrics-pipeline {version('metrics-pipeline')}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Streaming metrics rollups: Kafka in, windowed t-digest rollups out."""


if __name__ == "__main__":
    app()
