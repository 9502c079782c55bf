"""Emission delay of a live stream: how long after a window could close its rollup is out.

The catch-up runs of `make bench` read a pre-loaded backlog as fast as they can; their delay
figure says how bursty emission is under a backlog, not what a dashboard waits for. Here the
worker runs first and a producer sends one JSON sample per record at a steady rate, event time =
the wall clock minus up to `disorder_ms` (as services stamp and send samples), with the
linger of the pipeline's own client (50 ms), keyed `service|region` with the partitioner under
test:

- `murmur2_random`: records land on the partition that owns their series (no forwarding);
- `consistent_random` (librdkafka's default): most records are forwarded to their owner, and
  every window waits for the other partitions' watermarks (one more hop through the broker).

Two figures per run, over the windows that end after a warm-up (group join and first fetches
excluded):

- **end to end**: the rollup record's timestamp (set by the worker's producer when it sends the
  rollup) minus the moment the window could close at the earliest — its end plus the allowed
  lateness, in wall time since event time follows the wall clock. It includes the service
  producer's linger, the broker, the worker's fetch wait, processing and, for forwarded
  samples, the repartition hop (the broker alone, measured beside it, bounds it from below);
- **worker**: the worker's own `emission_delay_seconds` histogram (the input that closed a
  window arrived → its rollup acknowledged), restricted to the measured interval by subtracting
  the buckets scraped at the end of the warm-up.
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from load.worker_run import ROOT, Scrape, _tail, histogram_quantile, scrape, worker_env
from pipeline.kafka.admin import TopicSpec, ensure_topics, partition_count
from pipeline.kafka.clients import consumer_config
from pipeline.kafka.reader import read_to_end
from pipeline.loopback import free_port

RESOLUTION_MS = 10_000
#: The live runs' producer linger: that of the pipeline's own client (pipeline/client), which
#: batches as any producer sending thousands of samples a second should.
CLIENT_LINGER_MS = 50
#: The broker alone is measured with librdkafka's default linger (5 ms since 1.9) too: at this
#: rate in single-sample records the embedded broker falls behind batches that small, and then
#: every consumer waits, the worker's included.
TRANSPORT_LINGERS_MS = (5, CLIENT_LINGER_MS)
#: Well-partitioned (no forwarding) and librdkafka's default (most samples forwarded).
LIVE_PARTITIONERS = ("murmur2_random", "consistent_random")


@dataclass(frozen=True)
class LiveResult:
    partitioner: str
    rate: float  # samples per second sent during the measured interval
    windows: int  # rollups measured (ending after the warm-up, before the producer stopped)
    end_to_end_p50_s: float
    end_to_end_p99_s: float
    end_to_end_max_s: float
    worker_p99_s: float
    worker_p99_above: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _paced(
    producer: Producer,
    rate: float,
    seconds: float,
    send: Callable[[int], None],
    stop: threading.Event | None = None,
) -> int:
    """Call send(n) for n = 0, 1, ... at `rate` per second for `seconds` (or until `stop`),
    then flush the producer; returns how many were sent."""
    sent, start = 0, time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds and not (stop and stop.is_set()):
        for _ in range(int(elapsed * rate) - sent):
            send(sent)
            sent += 1
        producer.poll(0)
        time.sleep(0.005)
    producer.flush(30)
    return sent


def _send(
    producer: Producer,
    topic: str,
    rate: float,
    seconds: float,
    series: list[tuple[str, str, str]],
    disorder_ms: int,
    stop: threading.Event,
) -> int:
    """Send one JSON timer sample per record at `rate` per second for `seconds`, event time =
    now minus up to `disorder_ms`, round-robin over `series`; returns the count."""
    rng = random.Random(2026)

    def one(n: int) -> None:
        service, region, name = series[n % len(series)]
        sample = {
            "service": service,
            "region": region,
            "name": name,
            "type": "timer",
            "unit": "ms",
            "value": rng.lognormvariate(3.0, 0.5),
            "ts": time.time_ns() // 1_000_000 - rng.randrange(disorder_ms + 1),
        }
        producer.produce(topic, orjson.dumps(sample), f"{service}|{region}".encode())

    return _paced(producer, rate, seconds, one, stop)


def _drained(port: int, sent: int, proc: subprocess.Popen[bytes]) -> Scrape | None:
    """Wait until the worker has read `sent` samples (at most a minute), then one second
    more for the rollups those samples closed; the worker's metrics at that moment."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        now = scrape(port)
        if now is not None and now.get("samples_in_total") >= sent:
            break
        time.sleep(0.2)
    time.sleep(1.0)
    return scrape(port)


def _minus(end: Scrape | None, start: Scrape | None) -> list[tuple[float, float]]:
    """Histogram buckets of the interval between two scrapes."""
    if end is None:
        return []
    before = dict(start.buckets) if start is not None else {}
    return [(bound, count - before.get(bound, 0.0)) for bound, count in end.buckets]


def measure_live(
    bootstrap: str,
    partitioner: str,
    rate: float = 10_000.0,
    warmup_s: float = 12.0,
    measured_s: float = 30.0,
    lateness_ms: int = 2_000,
    disorder_ms: int = 1_000,
    partitions: int = 8,
    series_count: int = 200,
    linger_ms: int = CLIENT_LINGER_MS,
) -> LiveResult:
    run_id = uuid.uuid4().hex[:10]
    topic = f"live-{run_id}"
    ensure_topics(bootstrap, [TopicSpec(topic, partitions)])
    port = free_port()
    env = worker_env(bootstrap, topic, lateness_ms, port, run_id)
    series = [
        (f"svc-{i % 25}", f"region-{i // 25 % 4}", f"live.op{i // 100}")
        for i in range(series_count)
    ]
    producer = Producer(
        {"bootstrap.servers": bootstrap, "partitioner": partitioner, "linger.ms": linger_ms}
    )
    argv = [sys.executable, "-m", "pipeline.cli", "worker"]
    stop = threading.Event()
    with tempfile.NamedTemporaryFile(prefix="live-worker-", suffix=".log") as log:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while scrape(port) is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not start: {_tail(log.name)}")
                time.sleep(0.1)
            measured_from_ms = time.time_ns() // 1_000_000 + int(warmup_s * 1000)
            sent: list[int] = []
            sender = threading.Thread(
                target=lambda: sent.append(
                    _send(
                        producer,
                        topic,
                        rate,
                        warmup_s + measured_s,
                        series,
                        disorder_ms,
                        stop,
                    )
                ),
                daemon=True,
            )
            sender.start()
            time.sleep(warmup_s)
            after_warmup = scrape(port)
            sender.join()
            # When sending stopped (the producer's final flush may take longer).
            stopped_ms = measured_from_ms + int(measured_s * 1000)
            # The measured windows are closed by samples sent before the stop: once the worker
            # has read them all (however far the broker fell behind), their rollups follow.
            at_end = _drained(port, sent[0] if sent else 0, proc)
        finally:
            stop.set()
            proc.terminate()
            proc.wait(30)
    rollup_topic = env["METRICS_PIPELINE_ROLLUP_TOPIC_PREFIX"] + "10s"
    delays: list[float] = []
    seen: dict[int, int] = {}
    first_window = -(-measured_from_ms // RESOLUTION_MS) * RESOLUTION_MS
    for msg in read_to_end(
        bootstrap, rollup_topic, range(partition_count(bootstrap, rollup_topic))
    ):
        window_start = int((msg.key() or b"").decode().rsplit("@", 1)[1])
        seen[window_start] = seen.get(window_start, 0) + 1
        window_end = window_start + RESOLUTION_MS
        if window_start < first_window or window_end + lateness_ms + 500 > stopped_ms:
            continue
        _, sent_ms = msg.timestamp()
        delays.append((sent_ms - window_end - lateness_ms) / 1000)
    if not delays:
        raise RuntimeError(f"no window closed within the measured interval (saw {sorted(seen)})")
    arr = np.array(delays)
    worker_p99, above = histogram_quantile(0.99, _minus(at_end, after_warmup))
    return LiveResult(
        partitioner=partitioner,
        rate=(sent[0] if sent else 0) / (warmup_s + measured_s),
        windows=len(delays),
        end_to_end_p50_s=float(np.percentile(arr, 50)),
        end_to_end_p99_s=float(np.percentile(arr, 99)),
        end_to_end_max_s=float(arr.max()),
        worker_p99_s=worker_p99,
        worker_p99_above=above,
    )


@dataclass(frozen=True)
class TransportResult:
    """The broker alone: produce → consume latency of bare clients at the same rate."""

    linger_ms: int
    records: int
    p50_s: float
    p99_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_transport(
    bootstrap: str,
    rate: float = 10_000.0,
    seconds: float = 15.0,
    partitions: int = 8,
    linger_ms: int = CLIENT_LINGER_MS,
) -> TransportResult:
    """One hop through the broker with the worker's fetch wait and the live producer's linger,
    over as long as a live run measures: what any consumer of this broker waits, before the
    worker does anything. (A broker that cannot keep up with the producer's batches shows here
    as a delay that grows over the run.)"""
    topic = f"live-transport-{uuid.uuid4().hex[:10]}"
    ensure_topics(bootstrap, [TopicSpec(topic, partitions)])
    consumer = Consumer(consumer_config(bootstrap, f"live-transport-{uuid.uuid4().hex[:8]}", 6_000))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    latencies: list[float] = []
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set():
            for msg in consumer.consume(1_000, 0.1):
                if msg.error() is None:
                    latencies.append(time.time() - orjson.loads(msg.value() or b"0"))

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms})
    sent = _paced(
        producer,
        rate,
        seconds,
        lambda n: producer.produce(topic, orjson.dumps(time.time()), str(n % 200).encode()),
    )
    deadline = time.monotonic() + 30
    while len(latencies) < sent and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    reader.join()
    consumer.close()
    arr = np.array(latencies) if latencies else np.zeros(1)
    return TransportResult(
        linger_ms, len(latencies), float(np.percentile(arr, 50)), float(np.percentile(arr, 99))
    )


def main() -> int:
    """python -m load.live: both partitioners on an embedded broker, one line each."""
    from pipeline.kafka.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        for linger in TRANSPORT_LINGERS_MS:
            t = measure_transport(broker.bootstrap_servers, linger_ms=linger)
            print(
                f"broker alone, linger {linger} ms: {t.records:,} records, produce → consume "
                f"p50 {t.p50_s * 1000:.0f} ms, p99 {t.p99_s * 1000:.0f} ms"
            )
        for partitioner in LIVE_PARTITIONERS:
            r = measure_live(broker.bootstrap_servers, partitioner)
            print(
                f"{partitioner}: {r.windows} windows at {r.rate:,.0f} samples/s · end to end "
                f"p50 {r.end_to_end_p50_s * 1000:.0f} ms, p99 {r.end_to_end_p99_s * 1000:.0f} ms, "
                f"max {r.end_to_end_max_s * 1000:.0f} ms · worker p99 "
                f"{'> ' if r.worker_p99_above else ''}{r.worker_p99_s * 1000:.0f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
