"""Where the remote-write sink's CPU goes: the runner (Kafka consume, JSON decode, batching,
commits) versus the encoder (names, labels, protobuf, snappy), each measured on its own.

- `runner_cpu`: a SinkRunner with a sink that stores nothing consumes the same topic (a fresh
  group) — what the sink process spends before any remote-write code runs.
- `encoder_cpu`: the same records parsed and encoded by a RollupEncoder in runner batches, laid
  out and cut into compressed requests (with metadata) of `max_samples_per_request`, as
  RemoteWriteSink does — no HTTP, no threads.
The end-to-end sink CPU minus both is the HTTP client and the thread pool.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence

import numpy as np

from pipeline.sinks.base import Rejection, SinkRecord
from pipeline.sinks.remote_write.encode import request_body
from pipeline.sinks.remote_write.metadata import MetadataSchedule
from pipeline.sinks.remote_write.naming import Scheme
from pipeline.sinks.remote_write.rollup_encoder import RollupEncoder
from pipeline.sinks.runner import SinkRunner
from pipeline.sinks.settings import SinkSettings

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[int, tuple[str, float]]:
    """This process's threads: thread id → (name, utime + stime in seconds), from /proc; the
    name is Python's for Python threads (the kernel's, e.g. `rdk:broker1`, for the others)."""
    python_names = {t.native_id: t.name for t in threading.enumerate()}
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as f:
                head, _, tail = f.read().rpartition(b")")
        except OSError:  # the thread ended meanwhile
            continue
        fields = tail.split()
        name = python_names.get(int(tid)) or head.partition(b"(")[2].decode(errors="replace")
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / _CLK_TCK)
    return out


def cpu_by_role(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds between two `thread_cpu` snapshots by role: `runner` (the thread that
    consumes, parses and encodes: Python names it `Thread-N (run)`), `http` (the sink's request
    threads), `librdkafka` (the Kafka client's own threads) and `other`."""
    roles: dict[str, float] = {"runner": 0.0, "http": 0.0, "librdkafka": 0.0, "other": 0.0}
    for tid, (name, seconds) in after.items():
        spent = seconds - before.get(tid, (name, 0.0))[1]
        if name.startswith("remote-write"):
            role = "http"
        elif name.startswith("rdk:"):
            role = "librdkafka"
        elif name.endswith("(run)"):
            role = "runner"
        else:
            role = "other"
        roles[role] = round(roles[role] + spent, 2)
    return roles


class DiscardingSink:
    """Acknowledges every batch without storing it: isolates the runner's own cost."""

    name = "discard"
    reads_digest = False  # as remote-write: the runner's cost for that sink
    parses_records = True

    def write(self, batch: Sequence[SinkRecord]) -> list[Rejection]:
        return []

    def close(self) -> None:
        pass


def runner_cpu(settings: SinkSettings, ends: dict[tuple[str, int], int]) -> float:
    """CPU seconds of this process while a runner with DiscardingSink consumes up to `ends`."""
    runner = SinkRunner(settings, DiscardingSink())
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    before = time.process_time()
    thread.start()
    try:
        deadline = time.monotonic() + 600
        while any(runner.totals.committed.get(tp, 0) < end for tp, end in ends.items()):
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"discarding runner did not finish: {runner.totals.counts()}")
            time.sleep(0.05)
        return time.process_time() - before
    finally:
        stop.set()
        thread.join(60)


def encoder_cpu(
    raws: Sequence[bytes],
    naming: Scheme,
    batch_records: int,
    max_samples: int,
    encoder: RollupEncoder | None = None,
    shards: int = 4,
) -> tuple[float, int]:
    """(CPU seconds, samples) to parse and encode `raws` (rollup records) in runner batches of
    `batch_records` into compressed requests of at most `max_samples`, as RemoteWriteSink does
    but without HTTP and threads: with a fresh encoder (every series' plan built on the way, as
    after a start) or a given one (warm: the steady state of a long run)."""
    encoder = encoder or RollupEncoder(naming)
    schedule = MetadataSchedule(600.0)
    before = time.process_time()
    samples = 0
    for start in range(0, len(raws), batch_records):
        encoded = encoder.encode_batch(raws[start : start + batch_records])
        assert not encoded.errors, encoded.errors[:1]
        hashes = np.fromiter((p.key_hash for p in encoded.plans), np.int64, len(encoded.plans))
        layout = encoded.layout(hashes, shards)
        for lo, hi in layout.shard_ranges:
            for a, b in layout.requests(lo, hi, max_samples):
                metadata = schedule.pending(layout.plans[a:b])
                request_body(layout.body(a, b), metadata.body)
                schedule.sent(metadata)
                samples += layout.samples(a, b)
    return time.process_time() - before, samples
