"""Search the bare consumer's settings for the fastest limit on this broker (how LIMIT_SETTINGS
in load/limit.py was chosen; not part of `make bench`).

    python -m load.limit_search [--samples 2000000] [--rounds 3] [--bootstrap-servers HOST:PORT]

The standard single-record workload is pre-loaded once; every candidate (librdkafka fetch and
queue settings, consume() batch size) then reads the whole topic in its own process
(load/limit.py), in an interleaved order, `--rounds` times. Candidates are ranked by their median
wall throughput; samples per CPU-second are printed too (a setting that only burns CPU is no
better limit). Results go to load/results/limit-search-<date>.json.
"""

from __future__ import annotations

import argparse
import statistics
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from load.limit import LIMIT_BATCH, LIMIT_SETTINGS, measure_limit
from load.scenarios import STANDARD_SAMPLES, preload, standard_scenario
from pipeline.kafka.broker import EmbeddedBroker

RESULTS = Path(__file__).resolve().parent / "results"
PARTITIONS = 8
MB = 1_048_576


def candidates() -> dict[str, tuple[dict[str, Any], int]]:
    """name → (librdkafka settings, consume() batch size)."""
    big = {"fetch.max.bytes": 100 * MB, "max.partition.fetch.bytes": 10 * MB}
    deep = {"queued.min.messages": 1_000_000, "queued.max.messages.kbytes": MB}
    out: dict[str, tuple[dict[str, Any], int]] = {
        # nothing over the pipeline's consumer_config: the worker's own fetch settings
        "worker's settings": ({}, 10_000),
        "current LIMIT_SETTINGS": (dict(LIMIT_SETTINGS), LIMIT_BATCH),
        "librdkafka defaults": (
            {
                "fetch.max.bytes": 50 * MB,
                "max.partition.fetch.bytes": MB,
                "fetch.wait.max.ms": 500,
                "queued.min.messages": 100_000,
                "queued.max.messages.kbytes": 65_536,
            },
            10_000,
        ),
    }
    for wait in (10, 100, 500):
        out[f"big+deep, wait {wait} ms"] = ({**big, **deep, "fetch.wait.max.ms": wait}, 10_000)
    for batch in (1_000, 50_000):
        out[f"big+deep, wait 100 ms, batch {batch}"] = (
            {**big, **deep, "fetch.wait.max.ms": 100},
            batch,
        )
    out["big+deep, wait 100 ms, min 1 MB"] = (
        {**big, **deep, "fetch.wait.max.ms": 100, "fetch.min.bytes": MB},
        10_000,
    )
    out["1 MB per partition, deep, wait 100 ms"] = (
        {"fetch.max.bytes": 50 * MB, "max.partition.fetch.bytes": MB, **deep},
        10_000,
    )
    out["big, shallow queue (100k), wait 100 ms"] = (
        {**big, "queued.min.messages": 100_000, "fetch.wait.max.ms": 100},
        10_000,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=STANDARD_SAMPLES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bootstrap-servers")
    parser.add_argument("--only", help="comma-separated candidate names")
    args = parser.parse_args()
    chosen = candidates()
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
    with ExitStack() as stack:
        bootstrap = (
            args.bootstrap_servers or stack.enter_context(EmbeddedBroker()).bootstrap_servers
        )
        topic = f"limit-search-{uuid.uuid4().hex[:8]}"
        loaded = preload(bootstrap, standard_scenario("single", args.samples), topic, PARTITIONS)
        for round_ in range(args.rounds):
            for name, (settings, batch) in chosen.items():
                got = measure_limit(
                    bootstrap, topic, PARTITIONS, loaded.messages, 300, settings, batch
                )
                runs[name].append(got.to_dict())
                write(
                    runs, chosen, loaded.samples, args.rounds
                )  # a cut-short search keeps its runs
                print(
                    f"round {round_ + 1} {name:45s} {got.samples_per_s:>10,.0f} samples/s "
                    f"{got.samples_per_cpu_s:>10,.0f} per CPU-s",
                    flush=True,
                )
    table = write(runs, chosen, loaded.samples, args.rounds)
    print("\nranked by median wall throughput:")
    for row in table:
        print(
            f"  {row['name']:45s} {row['median_samples_per_s']:>10,.0f} samples/s "
            f"{row['median_samples_per_cpu_s']:>10,.0f} per CPU-s"
        )


def write(
    runs: dict[str, list[dict[str, Any]]],
    chosen: dict[str, tuple[dict[str, Any], int]],
    samples: int,
    rounds: int,
) -> list[dict[str, Any]]:
    """Rank the candidates measured so far and write them to load/results; returns the ranking."""
    table = []
    for name, (settings, batch) in chosen.items():
        if not runs[name]:
            continue
        table.append(
            {
                "name": name,
                "settings": settings,
                "batch": batch,
                "median_samples_per_s": statistics.median(r["samples_per_s"] for r in runs[name]),
                "median_samples_per_cpu_s": statistics.median(
                    r["samples_per_cpu_s"] for r in runs[name]
                ),
                "runs": runs[name],
            }
        )
    table.sort(key=lambda row: -row["median_samples_per_s"])
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    path = RESULTS / f"limit-search-{date}.json"
    doc = {"date": date, "samples": samples, "rounds": rounds, "candidates": table}
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    return table


if __name__ == "__main__":
    main()
