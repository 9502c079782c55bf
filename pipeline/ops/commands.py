"""The operator's commands: `topics create|describe|check`, `tail`, `config show`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer

from pipeline.errors import PipelineError
from pipeline.options import BootstrapOpt, ConfigOpt, fail

if TYPE_CHECKING:
    from pipeline.kafka.topology import TopicPlan

# -- topics ----------------------------------------------------------------------------------

topics_app = typer.Typer(
    help="Create, describe or check every topic of the pipeline (from the same settings).",
    no_args_is_help=True,
)


def _topology(
    config: Path | None,
    bootstrap_servers: str | None,
    partitions: int | None,
    replication_factor: int | None,
) -> tuple[dict[str, str], TopicPlan]:
    from pipeline.common_settings import load_settings
    from pipeline.kafka.topology import TopicPlan
    from pipeline.settings import TopologySettings

    settings = load_settings(
        TopologySettings,
        config,
        bootstrap_servers=bootstrap_servers,
        topic_partitions=partitions,
        topic_replication_factor=replication_factor,
    )
    return settings.client_config(), TopicPlan(settings)


PartitionsOpt = Annotated[
    int | None,
    typer.Option(help="Partitions of every topic \\[topic_partitions, default 8]."),
]
ReplicationOpt = Annotated[
    int | None,
    typer.Option(help="Replicas of every topic \\[topic_replication_factor, default 3]."),
]


def _describe(connection: dict[str, str], topology: TopicPlan, as_json: bool) -> str | None:
    from pipeline.ops.topics import describe_topology, problems_summary

    states = describe_topology(connection, topology)
    for state in states:
        spec = state.topic.spec
        if as_json:
            row = {
                "role": state.topic.role,
                "topic": spec.name,
                "exists": state.exists,
                "partitions": state.partitions,
                "wanted_partitions": spec.partitions,
                "replication": state.replication,
                "config": state.config,
                "problems": state.problems,
                "notes": state.notes,
            }
            typer.echo(orjson.dumps(row).decode())
            continue
        found = (
            f"{state.partitions:>3} partitions  {state.replication} replica(s)  "
            + " ".join(f"{k}={v}" for k, v in sorted(state.config.items()))
            if state.exists
            else "missing"
        )
        remarks = "; ".join(state.problems + state.notes)
        typer.echo(
            f"{state.topic.role:<13} {spec.name:<44} {found}"
            + (f"  — {remarks}" if remarks else "")
        )
    return problems_summary(states)


@topics_app.command("create")
def topics_create(
    config: ConfigOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    partitions: PartitionsOpt = None,
    replication_factor: ReplicationOpt = None,
) -> None:
    """Create every missing topic (existing ones are kept as they are), then check them all."""
    from pipeline.ops.topics import create_topology

    try:
        connection, topology = _topology(config, bootstrap_servers, partitions, replication_factor)
        create_topology(connection, topology)
        problems = _describe(connection, topology, as_json=False)
    except PipelineError as exc:
        raise fail(exc) from exc
    if problems:
        raise fail(PipelineError(problems))


@topics_app.command("describe")
def topics_describe(
    config: ConfigOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per topic.")] = False,
) -> None:
    """Show every topic of the topology as the cluster has it (exit 0 whatever it finds)."""
    try:
        connection, topology = _topology(config, bootstrap_servers, None, None)
        _describe(connection, topology, as_json=json_lines)
    except PipelineError as exc:
        raise fail(exc) from exc


@topics_app.command("check")
def topics_check(config: ConfigOpt = None, bootstrap_servers: BootstrapOpt = None) -> None:
    """Exit non-zero (with one line naming each problem) unless every topic is usable."""
    try:
        connection, topology = _topology(config, bootstrap_servers, None, None)
        problems = _describe(connection, topology, as_json=False)
    except PipelineError as exc:
        raise fail(exc) from exc
    if problems:
        raise fail(PipelineError(problems))
    typer.echo("ok")


# -- tail ------------------------------------------------------------------------------------


def tail(
    topic: Annotated[str, typer.Argument(help="Topic: a rollup tier, anomalies, dead letters.")],
    config: ConfigOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep reading.")] = False,
    from_beginning: Annotated[bool, typer.Option(help="Start at the first record.")] = False,
    last: Annotated[
        int | None,
        typer.Option(help="Start N records before each partition's end (default 10; 0 with -f)."),
    ] = None,
    series: Annotated[
        str | None,
        typer.Option(help="Only records whose series_key contains this."),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option(help="Only this dead-letter reason (or anomaly state/severity)."),
    ] = None,
    output: Annotated[str, typer.Option("--format", help="table | json")] = "table",
) -> None:
    """Print a topic's records as a table or JSON lines (never joins a consumer group)."""
    from pipeline.common_settings import CommonSettings, load_settings
    from pipeline.ops.tail import TableWriter, TailOptions, json_line, tail_records
    from pipeline.runtime import stop_on_signals

    try:
        if output not in ("table", "json"):
            raise PipelineError(f"--format must be table or json, not {output!r}")
        if from_beginning and last is not None:
            raise PipelineError("--from-beginning and --last exclude each other")
        settings = load_settings(CommonSettings, config, bootstrap_servers=bootstrap_servers)
        options = TailOptions(follow, from_beginning, last, series, reason)
        table = TableWriter(typer.echo)
        with stop_on_signals() as stop:
            for record in tail_records(settings.client_config(), topic, options, stop):
                if output == "json":
                    typer.echo(json_line(record))
                else:
                    table.write(record)
    except PipelineError as exc:
        raise fail(exc) from exc


# -- config show -----------------------------------------------------------------------------

config_app = typer.Typer(help="Inspect settings.", no_args_is_help=True)


@config_app.command("show")
def config_show(
    command: Annotated[
        str,
        typer.Argument(
            help="worker, tier, detect, sink-remote-write, sink-local, alert-bridge, topics, load."
        ),
    ] = "worker",
    config: ConfigOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    json_lines: Annotated[
        bool, typer.Option("--json", help="One JSON object per setting.")
    ] = False,
) -> None:
    """Every setting COMMAND would run with, and where it came from (flag, env, file, default);
    passwords, tokens and secrets masked."""
    from pipeline.ops.config_show import effective_settings, settings_class

    try:
        shown = effective_settings(
            settings_class(command), config, {"bootstrap_servers": bootstrap_servers}
        )
    except PipelineError as exc:
        raise fail(exc) from exc
    for item in shown:
        value = orjson.dumps(item.value, default=str).decode()
        if json_lines:
            typer.echo(
                orjson.dumps(
                    {"name": item.name, "value": item.value, "source": item.source}, default=str
                ).decode()
            )
        else:
            typer.echo(f"{item.name:<28} {item.source:<8} {value}")
