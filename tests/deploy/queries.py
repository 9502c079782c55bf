"""Every PromQL expression of the generated dashboards, and how a panel sends it."""

from __future__ import annotations

from pipeline.deploy import health, latency
from pipeline.deploy.panels import Query, queries_of


def all_queries() -> list[Query]:
    return [*queries_of(health.ROWS), *queries_of(latency.ROWS), *latency.ANNOTATIONS]


def concrete(expr: str, resolution: str = "1m") -> str:
    """An expression with Grafana's variables replaced as a panel would send it."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace("${metric}", "http_server_duration")
        .replace("${resolution}", resolution)
        .replace("$service", ".+")
        .replace("$region", ".+")
        .replace("$namespace", ".*")
    )
