"""CPU cost of decoding and dead-lettering rejected input, by the number of rejected points.

    python -m load.poison_bench [--points 1000,2000,4000,8000,50000] [--runs 3] [--control]

One columnar batch per size, every point 7 h older than the record's time (`ts_too_old`), goes
through what the rollup worker does with a consumed record: `Decoder.decode_lists`, then
`reject_records` builds the dead-letter records. CPU seconds (process_time, the least of the
runs: on a shared machine the least disturbed one) and the ratio to the first size's cost: a
linear path keeps `ratio / (points / first points)` near 1, a quadratic one grows with the size.
`--control` also times the same batches with fresh timestamps (nothing rejected), and the
deep-nesting poison pill (a 2.2 kB array) is decoded once and its outcome printed.
"""

from __future__ import annotations

import argparse
import time

import orjson

from pipeline.core.decode import Decoder
from pipeline.core.series import SeriesTable
from pipeline.kafka.deadletter import reject_records

RECORD_TIME_MS = 1_767_225_600_000
HOUR_MS = 3_600_000
SERIES = {"service": "checkout", "region": "eu-west-1", "name": "latency", "type": "timer"}


def columnar(points: int, age_ms: int) -> bytes:
    start = RECORD_TIME_MS - age_ms
    return orjson.dumps(
        {**SERIES, "ts": [start + i for i in range(points)], "value": [1.5] * points}
    )


def cpu_seconds(record: bytes, runs: int) -> tuple[float, int, int]:
    """Least CPU time of `runs` decodes; dead-letter records and samples they account for."""
    best, records, samples = float("inf"), 0, 0
    for _ in range(runs):
        start = time.process_time()
        result = Decoder(SeriesTable()).decode_lists([record], [0], [RECORD_TIME_MS])
        dead = reject_records("metrics.raw", 0, result.rejects)
        best = min(best, time.process_time() - start)
        records, samples = len(dead), sum(r.samples for r in result.rejects)
    return best, records, samples


def poison_pill() -> str:
    good = orjson.dumps({**SERIES, "value": 1.0, "ts": RECORD_TIME_MS})
    bad = orjson.dumps({**SERIES, "value": "x", "ts": RECORD_TIME_MS})[:-1]
    bad += b',"junk":' + b"[" * 1000 + b"]" * 1000 + b"}"
    batch = b"[" + good + b"," + bad + b"]"
    try:
        result = Decoder(SeriesTable()).decode_lists([batch], [0], [RECORD_TIME_MS])
        reject_records("metrics.raw", 0, result.rejects)
    except RecursionError as exc:
        return f"{len(batch)} bytes: RecursionError escaped ({exc})"
    reasons = [(r.reason.value, r.index) for r in result.rejects]
    return f"{len(batch)} bytes: {len(result.columns)} decoded, dead-lettered {reasons}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", default="1000,2000,4000,8000,50000")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--control", action="store_true")
    args = p.parse_args(argv)
    sizes = [int(n) for n in args.points.split(",")]
    print("points  bytes      cpu_s  ratio  ratio/size  dead_letters  samples_counted")
    first: float | None = None
    for n in sizes:
        record = columnar(n, 7 * HOUR_MS)
        cpu, records, samples = cpu_seconds(record, args.runs)
        first = first or max(cpu, 1e-6)
        ratio = cpu / first
        print(
            f"{n:6d}  {len(record):9d}  {cpu:6.3f}  {ratio:6.1f}  {ratio / (n / sizes[0]):10.2f}"
            f"  {records:12d}  {samples:15d}"
        )
        if args.control:
            fresh, _, _ = cpu_seconds(columnar(n, 0), args.runs)
            print(f"{'':6s}  control (nothing rejected): {fresh:.3f} s")
    print("poison pill:", poison_pill())


if __name__ == "__main__":
    main()
