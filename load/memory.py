"""Memory per open series-window, measured at the core level in a fresh process.

`python -m load.memory SERIES PER_SERIES` builds a workload of SERIES timer series (services × 20
regions × 5 names) with PER_SERIES samples each, all inside one 10 s window, as single-sample JSON
messages, and holds every message in memory *before* the first measurement. It then creates the
worker's core objects (SeriesTable, Decoder, PartitionAggregator) and feeds them the messages in
batches of 10,000, as the worker would: decode (interning every series), then aggregate. No window
closes (the watermark stays inside the window). The result is

    (RSS after − RSS before) / open windows

with RSS read from /proc/self/statm after a gc.collect(): everything the core holds per series and
per open window (series table, identity caches, window slots, raw values) plus whatever the
allocator kept from the transient batches. The process's peak RSS (VmHWM) is reported too.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from load.procfs import peak_rss_kb
from pipeline.core.aggregator import PartitionAggregator, WindowConfig
from pipeline.core.decode import DecodeLimits, Decoder, RawMessage
from pipeline.core.digest import DigestConfig
from pipeline.core.series import SeriesTable
from pipeline.loadgen.build import generate
from pipeline.loadgen.spec import WorkloadSpec

ROOT = Path(__file__).resolve().parents[1]
_PAGE = os.sysconf("SC_PAGE_SIZE")
_REGIONS, _NAMES = 20, 5


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def spec_for(series: int, per_series: int) -> WorkloadSpec:
    services = max(1, -(-series // (_REGIONS * _NAMES)))
    base = WorkloadSpec(
        seed=11,
        services=services,
        regions=_REGIONS,
        timers=_NAMES,
        gauges=0,
        delta_counters=0,
        cumulative_counters=0,
        instances=1,
        labelled_fraction=0.0,
        duration_s=10.0,
        samples=services * _REGIONS * _NAMES * per_series,
    )
    return replace(base, encoding="single")


def measure(series: int, per_series: int, batch: int = 10_000) -> dict[str, Any]:
    started = time.perf_counter()
    messages = list(generate(spec_for(series, per_series)).messages())
    table = SeriesTable()
    decoder = Decoder(table, DecodeLimits())
    aggregator = PartitionAggregator("bench.memory", 0, table, WindowConfig(), DigestConfig())
    gc.collect()
    before = rss_bytes()
    for lo in range(0, len(messages), batch):
        raw = [
            RawMessage(m.value, lo + i, m.timestamp_ms)
            for i, m in enumerate(messages[lo : lo + batch])
        ]
        decoded = decoder.decode(raw)
        if decoded.rejects:
            raise RuntimeError(f"memory scenario: {len(decoded.rejects)} samples rejected")
        step = aggregator.process(decoded.columns, lo + len(raw))
        if step.rollups or len(step.late):
            raise RuntimeError("memory scenario: a window closed or a sample was late")
        del raw, decoded, step
    gc.collect()
    after = rss_bytes()
    open_windows = aggregator.open_windows
    return {
        "series": len(table),
        "samples": len(messages),
        "open_windows": open_windows,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "bytes_per_window": (after - before) / open_windows if open_windows else 0.0,
        "peak_rss_kb": peak_rss_kb(),
        "seconds": time.perf_counter() - started,
    }


def measure_memory(series: int, per_series: int = 10, timeout_s: float = 600.0) -> dict[str, Any]:
    """Run `measure` in a fresh interpreter (nothing else in its heap) and return its result."""
    argv = [sys.executable, "-m", "load.memory", str(series), str(per_series)]
    done = subprocess.run(argv, capture_output=True, timeout=timeout_s, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"memory scenario failed: {done.stderr.decode()[-2000:]}")
    result: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("series", type=int)
    parser.add_argument("per_series", type=int)
    args = parser.parse_args()
    sys.stdout.write(orjson.dumps(measure(args.series, args.per_series)).decode() + "\n")


if __name__ == "__main__":
    main()
