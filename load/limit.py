"""The limit: a bare confluent-kafka consumer that reads every message and parses it with orjson.

It runs in its own process (`python -m load.limit`), like the worker, so neither the bench's
own threads nor its memory are counted. It assigns every partition from the beginning (no group
join), calls `consume(num_messages=10000)` in a loop, `orjson.loads` every value and counts
samples (a JSON array counts its items, a columnar batch its points). It does not use the
worker's consumer settings: it uses the fastest ones found for a bare consumer on this broker
(LIMIT_SETTINGS: large fetches, a longer fetch wait, a deep local queue — about twice the
throughput of the worker's settings at the same CPU per message), so the limit is the best a bare
consumer can do, chosen independently of the worker. Time and CPU run from the first non-empty
`consume()` to the last message parsed; CPU is `time.process_time()` (every thread of the
process, librdkafka's included).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from load.procfs import peak_rss_kb, per
from pipeline.kafka.clients import consumer_config

ROOT = Path(__file__).resolve().parents[1]

# The bare consumer's settings, searched for the best throughput on the embedded broker (fetch
# sizes, fetch.wait.max.ms 25–500, queued.* limits): reported with the results.
LIMIT_SETTINGS: dict[str, Any] = {
    "fetch.max.bytes": 104_857_600,
    "max.partition.fetch.bytes": 10_485_760,
    "fetch.wait.max.ms": 100,
    "queued.min.messages": 1_000_000,
    "queued.max.messages.kbytes": 1_048_576,
}
LIMIT_BATCH = 10_000  # messages per consume() call


@dataclass(frozen=True)
class LimitResult:
    messages: int
    samples: int
    seconds: float
    cpu_seconds: float
    peak_rss_kb: int

    @property
    def samples_per_s(self) -> float:
        return per(self.samples, self.seconds)

    @property
    def samples_per_cpu_s(self) -> float:
        return per(self.samples, self.cpu_seconds)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["samples_per_s"] = self.samples_per_s
        out["samples_per_cpu_s"] = self.samples_per_cpu_s
        return out


def consume_all(
    bootstrap: str,
    topic: str,
    partitions: int,
    messages: int,
    timeout_s: float,
    settings: dict[str, Any] | None = None,
    batch: int = LIMIT_BATCH,
) -> LimitResult:
    """Read exactly `messages` messages of `topic` (all partitions) and time it."""
    conf = {
        **consumer_config(bootstrap, f"bench-limit-{uuid.uuid4().hex[:12]}", 6000, {}),
        **(LIMIT_SETTINGS if settings is None else settings),
    }
    consumer = Consumer(conf)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    loads = orjson.loads
    seen = samples = 0
    started = cpu_started = 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while seen < messages:
            got = consumer.consume(num_messages=batch, timeout=0.1)
            if not got:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"limit: read {seen:,} of {messages:,} messages")
                continue
            if not seen:
                started, cpu_started = time.perf_counter(), time.process_time()
            for msg in got:
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"limit: consume error {err}")
                    continue
                doc = loads(msg.value() or b"")
                kind = type(doc)
                if kind is list:
                    samples += len(doc)
                elif kind is dict and type(doc.get("ts")) is list:
                    samples += len(doc["ts"])
                else:
                    samples += 1
                seen += 1
        return LimitResult(
            seen,
            samples,
            time.perf_counter() - started,
            time.process_time() - cpu_started,
            peak_rss_kb(),
        )
    finally:
        consumer.close()


def measure_limit(
    bootstrap: str,
    topic: str,
    partitions: int,
    messages: int,
    timeout_s: float = 300.0,
    settings: dict[str, Any] | None = None,
    batch: int = LIMIT_BATCH,
) -> LimitResult:
    """Run `consume_all` in a fresh interpreter and return what it measured."""
    argv = [
        sys.executable,
        "-m",
        "load.limit",
        bootstrap,
        topic,
        str(partitions),
        str(messages),
        str(timeout_s),
        "--settings",
        orjson.dumps(LIMIT_SETTINGS if settings is None else settings).decode(),
        "--batch",
        str(batch),
    ]
    done = subprocess.run(argv, capture_output=True, timeout=timeout_s + 60, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(
            f"limit consumer failed ({done.returncode}): {done.stderr.decode()[-2000:]}"
        )
    data = orjson.loads(done.stdout.splitlines()[-1])
    return LimitResult(
        **{k: data[k] for k in ("messages", "samples", "seconds", "cpu_seconds", "peak_rss_kb")}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("partitions", type=int)
    parser.add_argument("messages", type=int)
    parser.add_argument("timeout", type=float)
    parser.add_argument("--settings", type=orjson.loads, help="librdkafka settings (JSON)")
    parser.add_argument("--batch", type=int, default=LIMIT_BATCH, help="consume() batch size")
    args = parser.parse_args()
    result = consume_all(
        args.bootstrap,
        args.topic,
        args.partitions,
        args.messages,
        args.timeout,
        args.settings,
        args.batch,
    )
    sys.stdout.write(orjson.dumps(result.to_dict()).decode() + "\n")


if __name__ == "__main__":
    main()
