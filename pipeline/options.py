"""The command line's shared options, and its one way to turn a settings value into flags.

A process command's flags are named like the settings fields they set, so `settings_from`
hands every flag given to `load_settings` (flags > env METRICS_PIPELINE_* > --config YAML);
what a command does not offer as a flag is still read from the environment and the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from pipeline.errors import PipelineError

if TYPE_CHECKING:  # pydantic-settings is imported by the commands that need it, not by --help
    from pipeline.common_settings import CommonSettings

S = TypeVar("S", bound="CommonSettings")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML settings file (flags and env win over it)."),
]
BootstrapOpt = Annotated[
    str | None,
    typer.Option(help="Kafka bootstrap servers \\[env METRICS_PIPELINE_BOOTSTRAP_SERVERS]."),
]
GroupOpt = Annotated[str | None, typer.Option(help="Consumer group.")]
HttpPortOpt = Annotated[int | None, typer.Option(help="0 disables.")]
HttpHostOpt = Annotated[str | None, typer.Option()]
TopicsOpt = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated rollup topics, e.g. metrics.rollups.10s,metrics.rollups.1m."
    ),
]
BearerTokenFileOpt = Annotated[Path | None, typer.Option()]


def fail(exc: PipelineError) -> typer.Exit:
    """One line on stderr and exit status 2: what every command does with a PipelineError."""
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


@contextmanager
def exit_on_error() -> Iterator[None]:
    try:
        yield
    except PipelineError as exc:
        raise fail(exc) from exc


def comma_list(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def settings_from(cls: type[S], flags: dict[str, Any]) -> S:
    """`cls` from a command's flags (its `locals()`: `config` is the YAML file, the names of
    settings fields are settings, None = not given; a command's own switches are left out),
    the environment and the file."""
    from pipeline.common_settings import load_settings

    given = {name: value for name, value in flags.items() if name in cls.model_fields}
    return load_settings(cls, flags.get("config"), **given)
