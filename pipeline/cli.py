"""`metrics-pipeline`: one command line, a subcommand per process.

Each process command declares its flags (named like the settings fields they set) and what to
run; `pipeline.runtime.serve` does the rest the same way for all of them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.errors import ConfigError
from pipeline.ops.commands import config_app, tail, topics_app
from pipeline.ops.store_commands import plot, query, store_app
from pipeline.ops.tools import broker, demo, load
from pipeline.options import (
    BearerTokenFileOpt,
    BootstrapOpt,
    ConfigOpt,
    GroupOpt,
    HttpHostOpt,
    HttpPortOpt,
    TopicsOpt,
    comma_list,
    exit_on_error,
    settings_from,
)

app = typer.Typer(
    help="Streaming metrics rollups: Kafka in, windowed t-digest rollups out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


# -- the pipeline's processes: run until SIGTERM, serving /metrics /healthz /readyz -----------


@app.command()
def worker(
    config: ConfigOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    group_id: GroupOpt = None,
    input_topic: Annotated[str | None, typer.Option()] = None,
    resolution: Annotated[str | None, typer.Option(help="Base window size, e.g. 10s.")] = None,
    allowed_lateness: Annotated[str | None, typer.Option()] = None,
    idle_timeout: Annotated[
        str | None,
        typer.Option(help="Close a quiet partition's windows after this much wall time."),
    ] = None,
    http_port: HttpPortOpt = None,
    http_host: HttpHostOpt = None,
    processes: Annotated[
        str, typer.Option(help="Group members to run as child processes: N, or auto (one per CPU).")
    ] = "1",
) -> None:
    """Consume raw samples, emit base-resolution rollups (runs until SIGTERM)."""
    from pipeline.kafka.worker import RollupWorker
    from pipeline.runtime import serve
    from pipeline.settings import WorkerSettings

    with exit_on_error():
        settings = settings_from(WorkerSettings, locals())
        if processes != "1":  # a supervisor of child workers (pipeline/supervise.py)
            from pipeline.observability import configure_logging
            from pipeline.supervise import supervise_workers

            configure_logging(settings.log_level, settings.log_format)
            raise typer.Exit(supervise_workers(processes, settings.http_host, settings.http_port))
        serve(settings, lambda: {"worker": RollupWorker(settings)})


@app.command()
def tier(
    config: ConfigOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    input_resolution: Annotated[
        str | None,
        typer.Option("--from", help="Run one step: the input tier, e.g. 10s (with --to)."),
    ] = None,
    resolution: Annotated[
        str | None,
        typer.Option("--to", help="Run one step: the output tier, e.g. 1m (with --from)."),
    ] = None,
    chain: Annotated[
        str | None,
        typer.Option(help="Comma-separated tiers to run as steps, default 10s,1m,5m,1h."),
    ] = None,
    idle_timeout: Annotated[str | None, typer.Option()] = None,
    http_port: HttpPortOpt = None,
    http_host: HttpHostOpt = None,
) -> None:
    """Merge rollups into coarser tiers: each step consumes one rollup topic and emits the next."""
    from pipeline.core.durations import format_duration
    from pipeline.kafka.tier_worker import TierWorker
    from pipeline.runtime import serve
    from pipeline.settings import TierSettings

    with exit_on_error():
        if (input_resolution is None) != (resolution is None):
            raise ConfigError("--from and --to go together")
        settings = settings_from(TierSettings, {**locals(), "chain": comma_list(chain)})
        steps = settings.steps() if resolution is None else [settings]
        # One labelled /metrics for every step (tier="1m", ...); ready when every step is.
        serve(
            settings,
            lambda: {format_duration(s.resolution): TierWorker(s) for s in steps},
            label="tier",
        )


@app.command()
def detect(
    config: ConfigOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    resolution: Annotated[
        str | None, typer.Option(help="Rollup tier to watch (default 1m).")
    ] = None,
    statistics: Annotated[
        str | None, typer.Option(help="Comma-separated statistics, default p99,rate.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="auto | robust | seasonal (default auto).")
    ] = None,
    anomaly_topic: Annotated[str | None, typer.Option()] = None,
    group_id: GroupOpt = None,
    http_port: HttpPortOpt = None,
    http_host: HttpHostOpt = None,
) -> None:
    """Score every window of a rollup tier against learnt baselines; anomaly episodes out."""
    from pipeline.kafka.detect_worker import DetectWorker
    from pipeline.runtime import serve
    from pipeline.settings import DetectSettings

    with exit_on_error():
        settings = settings_from(DetectSettings, {**locals(), "statistics": comma_list(statistics)})
        serve(settings, lambda: {"detect": DetectWorker(settings)})


def alert_bridge(
    config: ConfigOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    alertmanager_url: Annotated[
        str | None,
        typer.Option(
            help="Alertmanager base URL, e.g. http://127.0.0.1:9093 "
            "\\[env METRICS_PIPELINE_ALERTMANAGER_URL]."
        ),
    ] = None,
    anomaly_topic: Annotated[
        str | None, typer.Option("--topic", help="Anomaly topic (default metrics.anomalies).")
    ] = None,
    group_id: GroupOpt = None,
    alertname: Annotated[str | None, typer.Option(help="alertname label.")] = None,
    dashboard_url_template: Annotated[
        str | None,
        typer.Option(
            help="Dashboard link, e.g. 'https://grafana/d/x?var-service={service}&from={started_at}'."
        ),
    ] = None,
    resend_interval: Annotated[
        str | None, typer.Option(help="Re-send firing alerts this often (default 1m).")
    ] = None,
    bearer_token_file: BearerTokenFileOpt = None,
    http_port: HttpPortOpt = None,
    http_host: HttpHostOpt = None,
) -> None:
    """Forward anomaly episodes to Alertmanager's v2 API until SIGTERM: firing alerts re-sent
    before they expire, resolved ones with endsAt.

    Every other setting (basic auth, TLS files, headers, retries, extra labels) comes from the
    environment (METRICS_PIPELINE_*) or the --config YAML file."""
    from pipeline.alerting import AlertBridge, AlertBridgeSettings
    from pipeline.runtime import serve

    with exit_on_error():
        settings = settings_from(AlertBridgeSettings, locals())
        serve(settings, lambda: {"alert-bridge": AlertBridge(settings)})


# -- sink: store rollup topics, one sub-command per store ------------------------------------

sink_app = typer.Typer(
    help="Store rollup topics: a Prometheus-compatible TSDB over remote-write, or local files.",
    no_args_is_help=True,
)


@sink_app.command("remote-write")
def sink_remote_write(
    config: ConfigOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    url: Annotated[
        str | None, typer.Option(help="Remote-write endpoint \\[env METRICS_PIPELINE_URL].")
    ] = None,
    topics: TopicsOpt = None,
    group_id: GroupOpt = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Parallel requests (sharded by series).")
    ] = None,
    timeout: Annotated[str | None, typer.Option(help="Per request, e.g. 10s.")] = None,
    bearer_token_file: BearerTokenFileOpt = None,
    http_port: HttpPortOpt = None,
    http_host: HttpHostOpt = None,
) -> None:
    """Write rollups to a Prometheus-compatible TSDB (remote-write 1.0) until SIGTERM.

    Every other setting (basic auth, TLS files, headers, batching, retries) comes from the
    environment (METRICS_PIPELINE_*) or the --config YAML file."""
    from pipeline.runtime import Closing, serve
    from pipeline.sinks.remote_write import RemoteWriteSettings, RemoteWriteSink
    from pipeline.sinks.runner import SinkRunner

    with exit_on_error():
        settings = settings_from(RemoteWriteSettings, {**locals(), "topics": comma_list(topics)})

        def build() -> dict[str, Closing]:
            sink = RemoteWriteSink(settings)
            return {"sink": Closing(SinkRunner(settings, sink), sink.close)}

        serve(settings, build)


@sink_app.command("local")
def sink_local(
    config: ConfigOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    path: Annotated[
        Path | None,
        typer.Option(
            help="Store directory (default ./metrics-store) \\[env METRICS_PIPELINE_PATH]."
        ),
    ] = None,
    topics: TopicsOpt = None,
    group_id: GroupOpt = None,
    http_port: HttpPortOpt = None,
    http_host: HttpHostOpt = None,
) -> None:
    """Write rollups (every tier by default) to the embedded Parquet store until SIGTERM;
    read them with `metrics-pipeline query` and `metrics-pipeline plot`."""
    from pipeline.runtime import Closing, serve
    from pipeline.sinks.local import LocalStoreSink
    from pipeline.sinks.runner import SinkRunner
    from pipeline.sinks.settings import LocalSinkSettings

    with exit_on_error():
        settings = settings_from(LocalSinkSettings, {**locals(), "topics": comma_list(topics)})

        def build() -> dict[str, Closing]:
            sink = LocalStoreSink(settings.path, compact_after=settings.compact_after)
            return {"sink": Closing(SinkRunner(settings, sink), sink.close)}

        serve(settings, build)


# -- tools, the local store, operators ---------------------------------------------------------

app.command()(broker)
app.command()(load)
app.command()(demo)
app.add_typer(sink_app, name="sink")
app.command()(query)
app.command()(plot)
app.add_typer(store_app, name="store")
app.command("alert-bridge")(alert_bridge)
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
