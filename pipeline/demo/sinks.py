"""The demo's storage half: sinks for every tier, a look into the local store, and a plot."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.runtime import Closing, ThreadSupervisor
from pipeline.settings import WorkerSettings
from pipeline.sinks.base import RollupSink
from pipeline.sinks.local import LocalStoreSink
from pipeline.sinks.remote_write.naming import selector
from pipeline.sinks.runner import SinkRunner
from pipeline.sinks.settings import LocalSinkSettings, SinkSettings
from pipeline.store.plot import SeriesQuery, plot_series
from pipeline.store.query import run_query


def build_sinks(
    worker: WorkerSettings,
    topics: list[str],
    store_path: Path,
    remote_write_url: str | None,
) -> dict[str, SinkRunner]:
    """The local store sink, and the remote-write sink when a URL is given, by name."""
    common: dict[str, Any] = {
        "bootstrap_servers": worker.bootstrap_servers,
        **worker.topic_names(),
        "topics": topics,
        "session_timeout_ms": worker.session_timeout_ms,
        "http_port": 0,
        "topic_partitions": worker.topic_partitions,
        "create_topics": True,
        "batch_interval": "500ms",
    }
    local_settings = LocalSinkSettings(
        group_id=worker.group_id + "-local-store", path=store_path, **common
    )
    pairs: list[tuple[SinkSettings, RollupSink]] = [
        (local_settings, LocalStoreSink(store_path, compact_after=local_settings.compact_after))
    ]
    if remote_write_url:
        from pipeline.sinks.remote_write import RemoteWriteSettings, RemoteWriteSink

        remote = RemoteWriteSettings(
            group_id=worker.group_id + "-remote-write", url=remote_write_url, **common
        )
        pairs.append((remote, RemoteWriteSink(remote)))
    return {f"sink-{sink.name}": SinkRunner(settings, sink) for settings, sink in pairs}


def start_sinks(supervisor: ThreadSupervisor, sinks: dict[str, SinkRunner]) -> None:
    """Each sink on its own thread; its store is closed once it has stopped."""
    for name, runner in sinks.items():
        supervisor.start(name, Closing(runner, runner.sink.close))


def wait_stored(
    supervisor: ThreadSupervisor, sinks: dict[str, SinkRunner], rollups: int, deadline: float
) -> bool:
    """Until every sink has stored `rollups` records (or the deadline, or a sink died)."""
    while time.monotonic() < deadline:
        if not all(supervisor.running(name) for name in sinks):
            return False
        if all(runner.totals.stored >= rollups for runner in sinks.values()):
            return True
        time.sleep(0.25)
    return False


def print_store(console: Console, path: Path) -> None:
    """What an analyst sees with `metrics-pipeline query` (re-deliveries removed by the view)."""
    result = run_query(
        path,
        "SELECT resolution, count(*) AS rollups, sum(count) AS samples, "
        "count(DISTINCT series_key) AS series FROM rollups "
        "GROUP BY resolution, resolution_ms ORDER BY resolution_ms",
    )
    table = Table(title=f"Local store {path}/ (Parquet, queried with DuckDB)")
    for column in result.columns:
        table.add_column(column, justify="right")
    for row in result.rows:
        table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in row))
    console.print(table)


def plot_busiest_timer(console: Console, path: Path, out: Path, resolution: str) -> None:
    """The timer series with the most samples, drawn from the store."""
    result = run_query(
        path,
        # One series per (service, region, name), so the plot needs no --label to pick it.
        "SELECT service, region, name FROM rollups WHERE type = 'timer' AND resolution = ? "
        "GROUP BY service, region, name HAVING count(DISTINCT series_key) = 1 "
        "ORDER BY sum(count) DESC, service, region, name LIMIT 1",
        [resolution],
    )
    if not result.rows:
        console.print("[yellow]no timer in the store to plot[/yellow]")
        return
    service, region, name = result.rows[0]
    plot_series(path, SeriesQuery(service, region, name, resolution=resolution), out)
    console.print(
        f"[bold]plot[/bold] {out} ({service}/{region}/{name} at {resolution}; redraw any series "
        f"with: metrics-pipeline plot --service {service} --region {region} --name {name} "
        f"--resolution {resolution})"
    )


def print_remote_write_query(console: Console, write_url: str, load_end_ms: int) -> None:
    """One PromQL query to try on the TSDB the demo wrote to (names: docs/remote-write.md)."""
    p99 = selector("http.server.duration", "timer", "ms", "p99", "1m")
    promql = f"max by (service) (max_over_time({p99}[1h]))"
    base = write_url.removesuffix("/api/v1/write").removesuffix("/api/v1/push")
    # The demo's event time is fixed, not now: ask at the end of its load.
    at = -(-load_end_ms // 60_000) * 60
    command = f"curl -G {base}/api/v1/query --data-urlencode 'query={promql}' -d time={at}"
    console.print("[bold]query[/bold] worst p99 per service (seconds) in the TSDB:")
    console.print("      " + escape(command), soft_wrap=True)
