"""Every PromQL expression of both dashboards, run against a real Prometheus that scraped the
processes (deployed as the chart renders them) and received their remote-write during a
demo-sized run with late samples, malformed messages and one latency incident.

What each expression must show is declared next to it (pipeline/deploy/panels.py):
- data: some series with some sample over the run;
- zero: some series, and every value 0 (failure counters and flags the processes export at 0
  from the start: a healthy run must show them, and show nothing wrong);
- parse: the query succeeds; only for series that a healthy run legitimately lacks (the
  declared reason: cAdvisor metrics outside Kubernetes, a labelled counter before its first
  refusal, an episode resolution later than the run).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from load.alertmanager import AlertmanagerServer
from tests.deploy.pipeline_run import (
    ScrapingPrometheus,
    chart_values,
    prepare,
    produce_demo_load,
    running,
    wait_until,
)
from tests.deploy.queries import all_queries, concrete

pytestmark = pytest.mark.slow

# A five-minute run closes 10 s, 1 m and 5 m windows; a 1 h window closes once event time passes
# the hour's end (plus one 5 m window of lateness), which a short run cannot show. The latency
# panels' expressions are the same for every resolution but the value of $resolution, and 1 h
# is still parsed (test_generated.py).
RESOLUTIONS = ("10s", "1m", "5m")


def _query_range(base_url: str, expr: str, start: float) -> list[dict[str, Any]]:
    response = httpx.get(
        base_url + "/api/v1/query_range",
        params={"query": expr, "start": start, "end": time.time(), "step": "5s"},
        timeout=30.0,
    )
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _has(base_url: str, expr: str, start: float) -> bool:
    return bool(_query_range(base_url, expr, start))


def test_every_dashboard_query_on_a_real_run(
    kafka_bootstrap: str,
    unique_name: str,
    alertmanager: AlertmanagerServer,
    tmp_path: Path,
) -> None:
    if not ScrapingPrometheus.available():
        pytest.skip("prometheus is not installed: apt-get install prometheus")
    started = time.time()
    # The ports are chosen before Prometheus starts, so its scrape targets are known.
    write_url_placeholder = "http://127.0.0.1:1/api/v1/write"
    values = chart_values(unique_name, write_url_placeholder, alertmanager.base_url)
    processes = prepare(values, tmp_path / "run")
    prometheus = ScrapingPrometheus(tmp_path / "prometheus", {p.name: p.port for p in processes})
    prometheus.start()
    try:
        sink_file = tmp_path / "run" / "config" / "sink-remote-write.yaml"
        sink_file.write_text(
            sink_file.read_text().replace(write_url_placeholder, prometheus.write_url)
        )
        with running(processes, kafka_bootstrap, tmp_path / "run"):
            name = produce_demo_load(kafka_bootstrap, f"{unique_name}.raw", samples=30_000)
            base = prometheus.base_url
            # Generous bounds: on a loaded shared machine the windows take long to close; the
            # test asserts what arrives, never how fast.
            for resolution in RESOLUTIONS:
                wait_until(
                    lambda r=resolution: _has(base, f"{name}:{r}_count_samples", started),
                    300,
                    f"{resolution} rollups in Prometheus",
                )
            wait_until(
                lambda: _has(base, "metrics_pipeline_alert_bridge_active_episodes > 0", started),
                300,
                "the incident's episode at the alert bridge",
            )
            time.sleep(6)  # a few more scrapes of the final counters
            up = _query_range(base, "min by (process) (up)", started)
            assert {s["metric"]["process"] for s in up} == {p.name for p in processes}
            _check_all(base, name, started)
    finally:
        prometheus.stop()


def _check_all(base: str, metric: str, started: float) -> None:
    failures: list[str] = []
    for query in all_queries():
        variants = {concrete(query.expr, r) for r in RESOLUTIONS}
        for expr in sorted(variants):
            expr = expr.replace("http_server_duration", metric)
            series = _query_range(base, expr, started)
            values = [float(v) for s in series for _, v in s["values"]]
            if query.expect == "data" and not values:
                failures.append(f"no data: {expr}")
            elif query.expect == "zero" and (not values or any(v != 0 for v in values)):
                failures.append(f"not all zero ({values[:5]}): {expr}")
    assert not failures, "\n".join(failures)
