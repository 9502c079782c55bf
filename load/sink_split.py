"""Where the remote-write sink's CPU goes: the runner (Kafka consume, JSON decode, batching,
commits) versus the encoder (names, labels, protobuf, snappy), each measured on its own.

- `runner_cpu`: a SinkRunner with a sink that stores nothing consumes the same topic (a fresh
  group) — what the sink process spends before any remote-write code runs.
- `encoder_cpu`: the same rollup bodies through a fresh RollupEncoder in runner batches and
  request assembly (with metadata and snappy) in requests of `max_samples_per_request`, as
  RemoteWriteSink does — no HTTP, no sharding.
The end-to-end sink CPU minus both is the HTTP client and the thread pool.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from pipeline.sinks.base import Rejection, SinkRecord
from pipeline.sinks.remote_write.encode import request_body, unique_rollups
from pipeline.sinks.remote_write.metadata import MetadataSchedule
from pipeline.sinks.remote_write.naming import Scheme
from pipeline.sinks.remote_write.rollup_encoder import EncodedRollup, RollupEncoder
from pipeline.sinks.runner import SinkRunner
from pipeline.sinks.settings import SinkSettings


class DiscardingSink:
    """Acknowledges every batch without storing it: isolates the runner's own cost."""

    name = "discard"
    reads_digest = False  # as remote-write: the runner's cost for that sink

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
    bodies: Sequence[dict[str, Any]],
    naming: Scheme,
    batch_records: int,
    max_samples: int,
    encoder: RollupEncoder | None = None,
) -> tuple[float, int]:
    """(CPU seconds, samples) to encode `bodies` in runner batches of `batch_records` into
    compressed requests of at most `max_samples`: with a fresh encoder (every series' plan built
    on the way, as after a start) or a given one (warm: the steady state of a long run)."""
    encoder = encoder or RollupEncoder(naming)
    schedule = MetadataSchedule(600.0)
    before = time.process_time()
    samples = 0
    request: list[EncodedRollup] = []
    size = 0
    encoded: list[EncodedRollup] = []
    for start in range(0, len(bodies), batch_records):
        for result in encoder.encode_batch(bodies[start : start + batch_records]):
            assert not isinstance(result, Exception), result
            encoded.append(result)
    for rollup in encoded:
        if request and size + rollup.samples > max_samples:
            samples += _assemble(request, schedule)
            request, size = [], 0
        request.append(rollup)
        size += rollup.samples
    if request:
        samples += _assemble(request, schedule)
    return time.process_time() - before, samples


def _assemble(request: list[EncodedRollup], schedule: MetadataSchedule) -> int:
    rollups = unique_rollups(request)
    metadata = schedule.pending(r.plan for r in rollups)
    request_body(rollups, metadata.body)
    schedule.sent(metadata)
    return sum(r.samples for r in rollups)
