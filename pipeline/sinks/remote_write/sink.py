"""RemoteWriteSink: a `RollupSink` that stores rollups in any Prometheus-compatible TSDB.

A batch is split into `concurrency` shards by series (crc32 of the rollup's series_key), so every
sample of a series travels in one shard, and shards are sent in parallel. Inside a shard, records
are sent in window order in requests of at most `max_samples_per_request` samples (a rollup's
samples are never split), one request after another, so each series reaches the store in time
order. A refused request is bisected until the refused records are isolated: the others land,
and each refused record becomes a `Rejection` carrying the server's message. Records are encoded
(rollup_encoder.py) before the shards start; metadata (metadata.py) rides along with the first
request of each family per round.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from pipeline.core.reasons import Reason
from pipeline.sinks.base import Rejection, RetryableSinkError, SinkRecord
from pipeline.sinks.remote_write.client import RemoteWriteClient
from pipeline.sinks.remote_write.encode import request_body, unique_rollups
from pipeline.sinks.remote_write.metadata import MetadataSchedule
from pipeline.sinks.remote_write.rollup_encoder import EncodedRollup, RollupEncoder
from pipeline.sinks.remote_write.settings import RemoteWriteSettings


class Converted(NamedTuple):
    position: int  # index into the batch
    window_end: int
    rollup: EncodedRollup


class RemoteWriteSink:
    name = "remote_write"
    reads_digest = False  # percentiles come from the rollup's own fields

    def __init__(self, settings: RemoteWriteSettings) -> None:
        self.settings = settings
        self.client = RemoteWriteClient(settings)
        self.encoder = RollupEncoder(settings.naming)
        interval = settings.seconds("metadata_interval") if settings.send_metadata else None
        self.metadata = MetadataSchedule(interval)
        self._shards = settings.concurrency
        self._max_samples = settings.max_samples_per_request
        self._pool = ThreadPoolExecutor(self._shards, thread_name_prefix="remote-write")
        self._sent_lock = threading.Lock()
        self.samples_sent = 0  # acknowledged samples (after de-duplication inside a request)

    def write(self, batch: Sequence[SinkRecord]) -> list[Rejection]:
        rejections: list[Rejection] = []
        shards: list[list[Converted]] = [[] for _ in range(self._shards)]
        encoded = self.encoder.encode_batch([record.body for record in batch])
        for index, (record, rollup) in enumerate(zip(batch, encoded, strict=True)):
            if isinstance(rollup, Exception):
                detail = f"not a rollup: {type(rollup).__name__}: {rollup}"
                rejections.append(Rejection(index, Reason.INVALID_ROLLUP.value, detail))
                continue
            shard = rollup.plan.shard
            if shard < 0:
                key = str(record.body["series_key"]).encode()
                shard = rollup.plan.shard = zlib.crc32(key) % self._shards
            shards[shard].append(Converted(index, record.body["window_end"], rollup))
        headers = self.client.auth_headers()
        busy = [shard for shard in shards if shard]
        futures = [self._pool.submit(self._send_shard, shard, headers) for shard in busy]
        # Wait for every shard before raising: a retry must not overlap requests still running.
        failure: RetryableSinkError | None = None
        for future in futures:
            try:
                rejections.extend(future.result())
            except RetryableSinkError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return sorted(rejections, key=lambda r: r.index)

    def _send_shard(self, shard: list[Converted], headers: dict[str, str]) -> list[Rejection]:
        shard.sort(key=lambda c: c.window_end)  # stable: keeps arrival order within a window
        rejections: list[Rejection] = []
        request: list[Converted] = []
        size = 0
        for converted in shard:
            if request and size + converted.rollup.samples > self._max_samples:
                rejections.extend(self._send(request, headers))
                request, size = [], 0
            request.append(converted)
            size += converted.rollup.samples
        if request:
            rejections.extend(self._send(request, headers))
        return rejections

    def _send(self, records: list[Converted], headers: dict[str, str]) -> list[Rejection]:
        rollups = unique_rollups([c.rollup for c in records])
        metadata = self.metadata.pending(r.plan for r in rollups)
        refused = self.client.send(request_body(rollups, metadata.body), headers)
        if refused is None:
            self.metadata.sent(metadata)
            with self._sent_lock:
                self.samples_sent += sum(r.samples for r in rollups)
            return []
        if len(records) == 1:
            return [Rejection(records[0].position, Reason.STORE_REJECTED.value, str(refused))]
        middle = len(records) // 2
        return self._send(records[:middle], headers) + self._send(records[middle:], headers)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()
