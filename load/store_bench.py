"""Local store benchmark: LocalStoreSink write throughput and DuckDB query time over the store.

    python -m load.store_bench [--rows 1000000] [--batch 5000] [--series 1000]
                               [--centroids 60] [--path DIR] [--keep]

Rollup bodies follow the contract with realistic digests (`--centroids` exact values each, ~67
in the standard workload's 10 s windows) drawn from a pool, so building them costs little; only
`LocalStoreSink.write` is timed. Writes run twice — with automatic compaction (the default
setting) and without — then typical analyst queries are timed (median of 3, each a fresh
DuckDB session like `metrics-pipeline query`), before and after `store compact`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from pipeline.sinks.base import SinkRecord
from pipeline.sinks.local import LocalStoreSink
from pipeline.store.compact import compact_store
from pipeline.store.files import data_files
from pipeline.store.query import run_query

START_MS = 1_767_225_600_000
RESOLUTION_MS = 10_000
POOL = 8192  # more than a batch: files do not compress better than real data would

QUERIES: dict[str, str] = {
    "count(*) FROM rollups (dedup view)": "SELECT count(*) FROM rollups",
    "count(*) FROM rollups_all (raw rows)": "SELECT count(*) FROM rollups_all",
    "worst p99 per service, last hour": (
        "SELECT service, max(p99) FROM rollups WHERE window_start >= "
        "(SELECT max(window_start) FROM rollups_all) - INTERVAL 1 HOUR GROUP BY service"
    ),
    "one series, all windows": (
        "SELECT window_start, p50, p99, rate FROM rollups "
        "WHERE series_key = 'svc7|region1|http.server.duration|timer|ms|' ORDER BY window_start"
    ),
    "samples per region per 5 min": (
        "SELECT region, time_bucket(INTERVAL 5 MINUTE, window_start) AS t, sum(count) "
        "FROM rollups GROUP BY ALL ORDER BY ALL"
    ),
}


def body_pool(centroids: int, seed: int = 5) -> list[dict[str, Any]]:
    """Contract-shaped statistics of `centroids` distinct lognormal values each."""
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(POOL):
        values = np.sort(rng.lognormal(3.0, 0.7, centroids))
        quantiles = np.quantile(values, [0.5, 0.9, 0.95, 0.99, 0.999]).tolist()
        total = float(values.sum())
        pool.append(
            {
                "count": centroids,
                "sum": total,
                "min": float(values[0]),
                "max": float(values[-1]),
                "mean": total / centroids,
                "rate": centroids / (RESOLUTION_MS / 1000),
                "percentiles": dict(
                    zip(["p50", "p90", "p95", "p99", "p99.9"], quantiles, strict=True)
                ),
                "digest": {
                    "compression": 200,
                    "n": centroids,
                    "exact": True,
                    "centroids": [{"m": v, "c": 1} for v in values.tolist()],
                },
            }
        )
    return pool


def batches(rows: int, batch: int, series: int, centroids: int) -> Iterator[list[SinkRecord]]:
    """Rollups window after window (as a rollup topic delivers them), `series` per window."""
    pool = body_pool(centroids)
    identities = []
    for i in range(series):
        service, region = f"svc{i % 50}", f"region{(i // 50) % 4}"
        name = "http.server.duration" if i < 200 else f"metric{i}"
        key = f"{service}|{region}|{name}|timer|ms|"
        identity = {"service": service, "region": region, "name": name, "type": "timer",
                    "unit": "ms", "labels": {}}  # fmt: skip
        identities.append((key, identity))
    out: list[SinkRecord] = []
    for i in range(rows):
        window = START_MS + (i // series) * RESOLUTION_MS
        series_key, identity = identities[i % series]
        key = f"{series_key}@{RESOLUTION_MS}@{window}"
        body = {
            "series": identity,
            "series_key": series_key,
            "resolution": "10s",
            "resolution_ms": RESOLUTION_MS,
            "window_start": window,
            "window_end": window + RESOLUTION_MS,
            **pool[i % POOL],
        }
        out.append(SinkRecord("metrics.rollups.10s", i % 8, i // 8, key.encode(), b"", body))
        if len(out) == batch:
            yield out
            out = []
    if out:
        yield out


def timed_write(path: Path, args: argparse.Namespace, compact_after: int) -> float:
    sink = LocalStoreSink(path, compact_after=compact_after)
    seconds = 0.0
    for batch in batches(args.rows, args.batch, args.series, args.centroids):
        started = time.perf_counter()
        sink.write(batch)
        seconds += time.perf_counter() - started
    return float(args.rows / seconds)


def time_queries(path: Path) -> dict[str, float]:
    timings = {}
    for label, sql in QUERIES.items():
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            run_query(path, sql)
            runs.append(time.perf_counter() - started)
        timings[label] = statistics.median(runs)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--series", type=int, default=1_000)
    parser.add_argument("--centroids", type=int, default=60)
    parser.add_argument("--path", type=Path, default=None, help="Default: a temp directory.")
    parser.add_argument("--keep", action="store_true", help="Keep the store afterwards.")
    args = parser.parse_args()
    console = Console()
    root = args.path or Path(tempfile.mkdtemp(prefix="store-bench-"))
    try:
        plain = timed_write(root / "no-compaction", args, compact_after=0)
        files_plain = len(data_files(root / "no-compaction"))
        store = root / "store"
        auto = timed_write(store, args, compact_after=64)
        files_auto = len(data_files(store))
        size = sum(f.stat().st_size for f in data_files(store))
        before = time_queries(store)
        started = time.perf_counter()
        compact_store(store)
        compact_seconds = time.perf_counter() - started
        after = time_queries(store)

        console.print(
            f"{args.rows:,} rollups ({args.series:,} series, {args.centroids} centroids each), "
            f"batches of {args.batch:,}"
        )
        console.print(
            f"write, no compaction: {plain:,.0f} rollups/s ({files_plain} files)\n"
            f"write, compaction at 64 files: {auto:,.0f} rollups/s ({files_auto} files, "
            f"{size / 2**20:,.1f} MiB, {size / args.rows:,.0f} B/rollup)\n"
            f"store compact: {compact_seconds:.1f} s → {len(data_files(store))} file(s)"
        )
        table = Table("query (fresh session, median of 3)", "before compact", "after compact")
        for label in QUERIES:
            table.add_row(
                label, f"{before[label] * 1000:,.0f} ms", f"{after[label] * 1000:,.0f} ms"
            )
        console.print(table)
    finally:
        if args.keep:
            console.print(f"store kept at {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
