"""RemoteWriteSink: a `RollupSink` that stores rollups in any Prometheus-compatible TSDB.

A batch is split into `concurrency` shards by series (crc32 of the rollup's series_key), so every
sample of a series travels in one shard, and shards are sent in parallel. Inside a shard, records
are sent in window order in requests of at most `max_samples_per_request` samples (a rollup's
samples are never split), one request after another, so each series reaches the store in time
order. A refused request is bisected until the refused records are isolated: the others land,
and each refused record becomes a `Rejection` carrying the server's message (with its exact
repeats, which were not sent). Records are parsed and encoded (fields.py, rollup_encoder.py)
and laid out as one buffer (batch.py) before the shards start: a request is a slice of it;
metadata (metadata.py) rides along with the first request of each family per round.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from operator import attrgetter

import numpy as np

from pipeline.core.reasons import Reason
from pipeline.sinks.base import RecordColumns, Rejection, RetryableSinkError, SinkRecord
from pipeline.sinks.remote_write.batch import Layout
from pipeline.sinks.remote_write.client import RemoteWriteClient
from pipeline.sinks.remote_write.encode import request_body
from pipeline.sinks.remote_write.metadata import MetadataSchedule
from pipeline.sinks.remote_write.rollup_encoder import RollupEncoder
from pipeline.sinks.remote_write.settings import RemoteWriteSettings


class RemoteWriteSink:
    name = "remote_write"
    reads_digest = False  # percentiles come from the rollup's own fields
    #: The runner hands over record bytes unparsed, in columns (`RecordColumns`): fields.py
    #: parses only what is sent, into objects the garbage collector does not track; unreadable
    #: records come back as invalid_rollup rejections.
    parses_records = True

    def __init__(self, settings: RemoteWriteSettings) -> None:
        self.settings = settings
        self.client = RemoteWriteClient(settings)
        self.encoder = RollupEncoder(settings.naming)
        interval = settings.metadata_interval / 1000 if settings.send_metadata else None
        self.metadata = MetadataSchedule(interval)
        self._shards = settings.concurrency
        self._max_samples = settings.max_samples_per_request
        self._pool = ThreadPoolExecutor(self._shards, thread_name_prefix="remote-write")
        self._sent_lock = threading.Lock()
        self.samples_sent = 0  # acknowledged samples (after de-duplication inside a batch)
        _freeze_long_lived()

    def write(self, batch: Sequence[SinkRecord]) -> list[Rejection]:
        raws = batch.raws if isinstance(batch, RecordColumns) else [r.raw for r in batch]
        encoded = self.encoder.encode_batch(raws)
        rejections = [
            Rejection(index, Reason.INVALID_ROLLUP.value, f"not a rollup: {_describe(error)}")
            for index, error in encoded.errors
        ]
        if not encoded.plans:
            return rejections
        # By series: a series' samples always share a shard (its requests go in time order).
        hashes = np.fromiter(map(_KEY_HASH, encoded.plans), np.int64, len(encoded.plans))
        layout = encoded.layout(hashes, self._shards)
        headers = self.client.auth_headers()
        busy = [(lo, hi) for lo, hi in layout.shard_ranges if hi > lo]
        futures = [self._pool.submit(self._send_shard, layout, lo, hi, headers) for lo, hi in busy]
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

    def _send_shard(
        self, layout: Layout, lo: int, hi: int, headers: dict[str, str]
    ) -> list[Rejection]:
        """The shard's rollups (in window order) in requests of at most max_samples, one
        after another: each series reaches the store in time order."""
        rejections: list[Rejection] = []
        for start, end in layout.requests(lo, hi, self._max_samples):
            rejections.extend(self._send(layout, start, end, headers))
        return rejections

    def _send(self, layout: Layout, lo: int, hi: int, headers: dict[str, str]) -> list[Rejection]:
        metadata = self.metadata.pending(layout.plans[lo:hi])
        refused = self.client.send(request_body(layout.body(lo, hi), metadata.body), headers)
        if refused is None:
            self.metadata.sent(metadata)
            with self._sent_lock:
                self.samples_sent += layout.samples(lo, hi)
            return []
        if hi - lo == 1:
            reason, detail = Reason.STORE_REJECTED.value, str(refused)
            return [Rejection(index, reason, detail) for index in layout.batch_indexes(lo, hi)]
        middle = (lo + hi) // 2
        return self._send(layout, lo, middle, headers) + self._send(layout, middle, hi, headers)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()


_frozen = False
_KEY_HASH = attrgetter("key_hash")


def _freeze_long_lived() -> None:
    """Once per process: move everything alive now (modules, clients, settings: it lives as
    long as the process) out of the cyclic GC's reach. Full collections otherwise traverse it
    all whenever new series plans pile up — 80 ms each here, a fifth of the sink's CPU in a
    start-up. Objects frozen still die by reference counting; garbage is collected first."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"
