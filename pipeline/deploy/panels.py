"""Dashboard panels as data (title, unit, queries), turned into Grafana JSON with the
grafana-foundation-sdk builders. Each query says what a healthy run shows, so a test can run
every expression against a real Prometheus and know what to expect."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus as gp
from grafana_foundation_sdk.builders import timeseries as gt
from grafana_foundation_sdk.models.dashboard import DataSourceRef

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")

# data: returns series in a healthy run. zero: every series exists at 0 in a healthy run (a
# failure counter or flag the process exports from the start). parse: may be empty in a healthy
# run and is only parsed; `why` says why.
Expect = Literal["data", "zero", "parse"]


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str
    expect: Expect = "data"
    why: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: Sequence[Query]
    description: str = ""
    width: int = 12


@dataclass(frozen=True)
class Row:
    title: str
    panels: Sequence[Panel]
    repeat: str | None = None


def timeseries(panel: Panel) -> gt.Panel:
    built = (
        gt.Panel()
        .title(panel.title)
        .description(panel.description)
        .unit(panel.unit)
        .datasource(DATASOURCE)
        .height(8)
        .span(panel.width)
    )
    for index, query in enumerate(panel.queries):
        built = built.with_target(
            gp.Dataquery()
            .expr(query.expr)
            .legend_format(query.legend)
            .ref_id(chr(ord("A") + index))
        )
    return built


def datasource_variable() -> gd.DatasourceVariable:
    return gd.DatasourceVariable("datasource").label("Data source").type("prometheus")


def build_dashboard(
    uid: str,
    title: str,
    description: str,
    rows: Sequence[Row],
    variables: Sequence[Any] = (),
    annotations: Sequence[gd.AnnotationQuery] = (),
) -> gd.Dashboard:
    board = (
        gd.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["metrics-pipeline"])
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .with_variable(datasource_variable())
    )
    for variable in variables:
        board = board.with_variable(variable)
    for annotation in annotations:
        board = board.annotation(annotation)
    for row in rows:
        built_row = gd.Row(row.title)
        if row.repeat:
            built_row = built_row.repeat(row.repeat)
        board = board.with_row(built_row)
        for panel in row.panels:
            board = board.with_panel(timeseries(panel))
    return board


def queries_of(rows: Sequence[Row]) -> list[Query]:
    return [q for row in rows for panel in row.panels for q in panel.queries]
