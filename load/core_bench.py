"""Core-level CPU benchmark of the rollup worker's hot path: no broker, no threads.

    python -m load.core_bench [--encoding array|columnar|single|all] [--samples N] [--runs 3]
                              [--labelled-fraction F] [--profile DIR]

The standard workload (load/scenarios.py) is generated and split by owning input partition
(Kafka's partitioner on the producer key) before anything is timed. Each run then feeds every
partition's records, in consume()-sized batches as the worker sizes them (~batch_samples samples
per consume across 8 partitions), through the worker's core objects — `Decoder.decode_lists`,
`PartitionAggregator.process` (windows close inside it) — and encodes every rollup as the
producer call would (value, key, routing key). One tick record per partition closes the last
windows. CPU seconds (process_time) per phase; medians over the runs (and the
smallest total: on a shared machine the least disturbed run).

The printed `sha256` covers every (key, value) produced, in order: two code versions that print
the same hash emit byte-identical rollups for the workload.
`--labelled-fraction F` gives that share of the metric names 1-2 labels (two label values per
name, so up to twice the series): the standard workload has none, most real streams have some.
`--profile DIR` writes a pyinstrument HTML and text profile of one extra run per encoding.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from load.scenarios import (
    ENCODINGS,
    STANDARD_SAMPLES,
    Scenario,
    labelled,
    standard_scenario,
    tick_messages,
)
from pipeline.core.aggregator import PartitionAggregator, WindowConfig
from pipeline.core.decode import DecodeLimits, Decoder
from pipeline.core.digest import DigestConfig
from pipeline.core.series import SeriesTable
from pipeline.kafka.partitioner import owner_partition
from pipeline.loadgen.build import generate
from pipeline.loadgen.spec import Message

PARTITIONS = 8
BATCH_SAMPLES = 20_000  # the worker's default batch_samples (per consume(), all partitions)


@dataclass(frozen=True)
class Prepared:
    scenario: Scenario
    samples: int
    batches: list[tuple[int, list[bytes | None], list[int], list[int]]]  # partition order kept


@dataclass(frozen=True)
class RunResult:
    decode_s: float
    aggregate_s: float
    encode_s: float
    rollups: int
    sha256: str

    @property
    def total_s(self) -> float:
        return self.decode_s + self.aggregate_s + self.encode_s


def prepare(encoding: str, samples: int, labelled_fraction: float = 0.0) -> Prepared:
    scenario = labelled(standard_scenario(encoding, samples), labelled_fraction)
    workload = generate(scenario.spec)
    by_partition: list[list[Message]] = [[] for _ in range(PARTITIONS)]
    for message in [*workload.messages(), *tick_messages(scenario, PARTITIONS)]:
        by_partition[owner_partition(message.key, PARTITIONS)].append(message)
    per_record = max(1.0, workload.manifest.samples_total / max(1, workload.manifest.messages))
    per_batch = max(1, round(BATCH_SAMPLES / per_record / PARTITIONS))
    chunked: list[list[tuple[int, list[bytes | None], list[int], list[int]]]] = []
    for partition, messages in enumerate(by_partition):
        chunks = []
        for lo in range(0, len(messages), per_batch):
            part = messages[lo : lo + per_batch]
            values: list[bytes | None] = [m.value for m in part]
            offsets = list(range(lo, lo + len(part)))
            chunks.append((partition, values, offsets, [m.timestamp_ms for m in part]))
        chunked.append(chunks)
    # Round-robin over partitions, as one consumer owning all of them sees them.
    batches = [c for group in _interleave(chunked) for c in group]
    return Prepared(scenario, workload.manifest.samples_total, batches)


def _interleave(chunked: list[list[Any]]) -> list[list[Any]]:
    longest = max(len(c) for c in chunked)
    return [[c[i] for c in chunked if i < len(c)] for i in range(longest)]


def run_once(prepared: Prepared) -> RunResult:
    table = SeriesTable()
    decoder = Decoder(table, DecodeLimits())
    window = WindowConfig(allowed_lateness_ms=prepared.scenario.lateness_ms)
    aggregators = [
        PartitionAggregator("bench.core", p, table, window, DigestConfig())
        for p in range(PARTITIONS)
    ]
    digest = hashlib.sha256()
    decode_s = aggregate_s = encode_s = 0.0
    rollups = 0
    for partition, values, offsets, times in prepared.batches:
        t0 = time.process_time()
        decoded = decoder.decode_lists(values, offsets, times)
        t1 = time.process_time()
        step = aggregators[partition].process(decoded.columns, offsets[-1] + 1)
        t2 = time.process_time()
        encoded = [(r.encode(), r.key.encode(), r.routing_key.encode()) for r in step.rollups]
        t3 = time.process_time()
        decode_s += t1 - t0
        aggregate_s += t2 - t1
        encode_s += t3 - t2
        rollups += len(encoded)
        for value, key, _ in encoded:
            digest.update(key + b"\0" + value + b"\n")
        if decoded.rejects or len(step.late):
            raise RuntimeError("core bench: a sample was rejected or late")
    return RunResult(decode_s, aggregate_s, encode_s, rollups, digest.hexdigest())


def report(encoding: str, prepared: Prepared, runs: list[RunResult]) -> dict[str, Any]:
    def med(name: str) -> float:
        return float(statistics.median(getattr(r, name) for r in runs))

    if len({r.sha256 for r in runs}) != 1:
        raise RuntimeError("core bench: runs of the same input emitted different rollups")
    total = med("total_s")
    out = {
        "encoding": encoding,
        "labelled_fraction": prepared.scenario.spec.labelled_fraction,
        "samples": prepared.samples,
        "rollups": runs[0].rollups,
        "decode_cpu_s": round(med("decode_s"), 3),
        "aggregate_close_cpu_s": round(med("aggregate_s"), 3),
        "encode_cpu_s": round(med("encode_s"), 3),
        "total_cpu_s": round(total, 3),
        "samples_per_cpu_s": round(prepared.samples / total),
        "us_per_rollup_close_encode": round(
            (med("aggregate_s") + med("encode_s")) / max(1, runs[0].rollups) * 1e6, 1
        ),
        "min_total_cpu_s": round(min(r.total_s for r in runs), 3),
        "sha256": runs[0].sha256,
    }
    return out


def profile(prepared: Prepared, out_dir: Path, encoding: str) -> None:
    from pyinstrument import Profiler  # a profiling tool, not a project dependency

    out_dir.mkdir(parents=True, exist_ok=True)
    profiler = Profiler(interval=0.0005)
    profiler.start()
    run_once(prepared)
    profiler.stop()
    (out_dir / f"core-{encoding}.html").write_text(profiler.output_html())
    (out_dir / f"core-{encoding}.txt").write_text(profiler.output_text(show_all=False))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m load.core_bench", description=__doc__.splitlines()[0]
    )
    p.add_argument("--encoding", choices=[*ENCODINGS, "all"], default="all")
    p.add_argument("--samples", type=int, default=STANDARD_SAMPLES)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--labelled-fraction", type=float, default=0.0, help="share of names labelled")
    p.add_argument("--profile", type=Path, help="write pyinstrument profiles here")
    args = p.parse_args(argv)
    encodings = ["array", "columnar", "single"] if args.encoding == "all" else [args.encoding]
    for encoding in encodings:
        prepared = prepare(encoding, args.samples, args.labelled_fraction)
        run_once(prepared)  # warm-up (imports, allocator)
        runs = [run_once(prepared) for _ in range(args.runs)]
        print(report(encoding, prepared, runs), flush=True)
        if args.profile:
            profile(prepared, args.profile, encoding)


if __name__ == "__main__":
    main()
