"""The "service latency" dashboard over the rollups the remote-write sink stores.

How a rollup statistic is named in the TSDB lives in one table, NAMING, so a change of the
sink's naming is a change here only. STREAM_AGGREGATION is the sink's default scheme
(`aggregation`, VictoriaMetrics' stream-aggregation style: `name:1m_quantiles{quantile=...}`,
`name:1m_count_samples`); FLAT is its `naming: flat` scheme
(`name{quantile=...,resolution=...}`, `name_count`).

Anomaly episodes are annotations from the alert bridge's own metrics (episodes active and
resolved, not per series): the episodes themselves live in Kafka and Alertmanager, not in the TSDB.
"""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as gd

from pipeline.deploy.panels import DATASOURCE, Panel, Query, Row


@dataclass(frozen=True)
class Naming:
    """Selectors of one statistic; {metric}, {resolution}, {quantile} and {labels} (the
    service/region matchers) are filled in."""

    quantile: str
    count: str


FLAT = Naming(
    quantile='{metric}{{quantile="{quantile}", resolution="{resolution}", {labels}}}',
    count='{metric}_count{{resolution="{resolution}", {labels}}}',
)
STREAM_AGGREGATION = Naming(
    quantile='{metric}:{resolution}_quantiles{{quantile="{quantile}", {labels}}}',
    count="{metric}:{resolution}_count_samples{{{labels}}}",
)
NAMING = STREAM_AGGREGATION

QUANTILES = (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"))
LABELS = 'service=~"$service", region=~"$region"'
# The newest window at each point in time: the 1 h tier's samples are further apart than
# Prometheus' 5 minute look-back.
LOOKBACK = "1h"
RESOLUTIONS = ("10s", "1m", "5m", "1h")

UID = "metrics-pipeline-latency"
TITLE = "metrics-pipeline / service latency"
DESCRIPTION = (
    "Percentiles and rates of one rolled-up metric per service and region, one row per "
    "resolution, from the TSDB the remote-write sink writes to."
)


def _selector(template: str, quantile: str = "") -> str:
    return template.format(
        metric="${metric}", resolution="${resolution}", quantile=quantile, labels=LABELS
    )


def _newest(selector: str) -> str:
    return f"last_over_time({selector}[{LOOKBACK}])"


ROWS: tuple[Row, ...] = (
    Row(
        "Resolution ${resolution}",
        (
            Panel(
                "${metric} p50 / p90 / p99 by service and region (${resolution} windows)",
                "s",  # the sink converts time units to seconds
                tuple(
                    Query(
                        f"max by (service, region) ({_newest(_selector(NAMING.quantile, q))})",
                        f"{name} {{{{service}}}} {{{{region}}}}",
                    )
                    for q, name in QUANTILES
                ),
                width=24,
            ),
            Panel(
                # From the samples per window: the sink writes no per-second rate of a timer
                # (it would repeat the count). Summed over the last hour, so that every tier,
                # the 1 h one included, has a value at each point.
                "${metric} per second by service and region (last hour, ${resolution} windows)",
                "reqps",
                (
                    Query(
                        "sum by (service, region) "
                        f"(sum_over_time({_selector(NAMING.count)}[{LOOKBACK}])) / 3600",
                        "{{service}} {{region}}",
                    ),
                ),
            ),
            Panel(
                "${metric} samples per window by service (${resolution} windows)",
                "short",
                (
                    Query(
                        f"sum by (service) ({_newest(_selector(NAMING.count))})",
                        "{{service}}",
                    ),
                ),
            ),
        ),
        repeat="resolution",
    ),
)

ANNOTATIONS: tuple[Query, ...] = (
    # A gauge exported from the start: an episode shows even when it is the first one a bridge
    # sends (a counter's first increment is invisible to increase()).
    Query("sum(metrics_pipeline_alert_bridge_active_episodes) > 0", "anomaly episodes active"),
    Query(
        'sum(increase(metrics_pipeline_alert_bridge_alerts_sent_total{state="resolved"}[2m])) > 0',
        "anomaly episode resolved",
        expect="parse",
        why="an episode resolves only after the incident ends and resolve_m normal windows",
    ),
)


def variables() -> list[gd.QueryVariable | gd.CustomVariable | gd.TextBoxVariable]:
    count = NAMING.count.format(
        metric="${metric}", resolution="${resolution}", quantile="", labels=""
    ).replace(", }", "}")
    return [
        gd.TextBoxVariable("metric").label("Metric").default_value("http_server_duration_seconds"),
        gd.CustomVariable("resolution")
        .label("Resolution")
        .values(",".join(RESOLUTIONS))
        .multi(True)
        .include_all(True),
        gd.QueryVariable("service")
        .label("Service")
        .datasource(DATASOURCE)
        .query(f"label_values({count}, service)")
        .multi(True)
        .include_all(True)
        .all_value(".+"),
        gd.QueryVariable("region")
        .label("Region")
        .datasource(DATASOURCE)
        .query(f"label_values({count}, region)")
        .multi(True)
        .include_all(True)
        .all_value(".+"),
    ]


def annotation_queries() -> list[gd.AnnotationQuery]:
    return [
        gd.AnnotationQuery()
        .name(a.legend)
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color("red" if "active" in a.legend else "green")
        .expr(a.expr)
        for a in ANNOTATIONS
    ]
