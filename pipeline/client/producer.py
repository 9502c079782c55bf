"""`MetricsProducer`: what a Python service uses to send raw samples to `metrics.raw`.

Design (why it looks like this):

- **Batched, columnar by default.** A call only validates and appends to an in-memory buffer;
  records are built per flush, one per (series, instance) — the most efficient encoding for the
  producer, the broker and the worker.
- **Flushed by a background thread** every `flush_interval` (1 s), early when the buffer is half
  full, and on `flush()`/`close()`. A thread rather than flushing inside `timer()` etc. so a
  service that stops recording still gets its last samples out, and so no caller pays for
  encoding a whole batch. `flush_interval=None` turns the thread off (flush yourself).
- **Keyed and partitioned like the worker expects**: key `"<service>|<region>"`, librdkafka's
  `murmur2_random` partitioner (Java-compatible murmur2), so each record lands on the partition
  that owns its series and is never forwarded. Any other partitioner still works.
- **Never blocks the application.** The buffer holds at most `max_buffered_samples`; when it is
  full (Kafka down or slow) a new sample is dropped and counted (`on_full="drop"`, the default,
  as statsd and OpenTelemetry clients do) or refused with `BufferFullError` (`on_full="raise"`).
  Records librdkafka cannot take yet (its own queue is bounded by `queue.buffering.max.kbytes`)
  stay in the buffer and go out first at the next flush, so order per series is kept.
- **Records never span much event time.** The worker judges lateness in partition order, so a
  record holding a minute of one series followed by one holding the same minute of another
  would make the second late. A flush is forced when the buffered timestamps span more than
  `flush_span_ms` (2 s; the worker allows 5 s of lateness) — which only happens when a caller
  replays history faster than real time.
- **Validated at the call**: `InvalidSampleError` for anything the worker would dead-letter.
- **Thread-safe**: one lock around validation and buffering; flushes are serialized.
"""

from __future__ import annotations

import functools
import numbers
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, Producer

from pipeline.client.batches import Encoding, Record, make_batcher
from pipeline.client.errors import BufferFullError, ClientClosedError, ProducerStats
from pipeline.client.validation import CheckedSample, SampleChecker, check_fields
from pipeline.core.validate import DecodeLimits

__all__ = ["BufferFullError", "ClientClosedError", "MetricsProducer", "ProducerStats"]

OnFull = Literal["drop", "raise"]
Temporality = Literal["delta", "cumulative"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def kafka_config(bootstrap_servers: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """librdkafka settings of the client; `config` entries (librdkafka names) win."""
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        # Java-compatible murmur2 of "<service>|<region>": records land on the owning partition.
        "partitioner": "murmur2_random",
        "linger.ms": 50,
        "compression.type": "lz4",
        "enable.idempotence": True,
        # Bounds what librdkafka holds while Kafka is away; beyond it records wait in our buffer.
        "queue.buffering.max.kbytes": 32_768,
    }
    conf.update(config or {})
    return conf


class MetricsProducer:
    """Send timers, gauges and counters to `metrics.raw`.

    with MetricsProducer("kafka:9092", service="checkout", region="eu-west-1") as metrics:
        metrics.timer("http.server.duration", 12.5, unit="ms", labels={"route": "/pay"})
        metrics.counter("http.requests", 1)

    `service`, `region`, `instance` and `labels` are defaults for every sample (per-call labels
    are merged over them). `encoding` is "columnar" (default) or "array"; a record holds at most
    `max_batch_samples` samples and `max_record_bytes` bytes; a flush is forced before a sample
    whose ts is more than `flush_span_ms` from the first one buffered. `config` adds or overrides
    librdkafka settings (SASL, TLS, `partitioner`, ...). `limits` must match the worker's if it
    runs with non-default `max_labels`, `max_age` or `max_future`.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str = "metrics.raw",
        service: str | None = None,
        region: str | None = None,
        instance: str | None = None,
        labels: Mapping[str, str] | None = None,
        encoding: Encoding = "columnar",
        flush_interval: float | None = 1.0,
        max_buffered_samples: int = 100_000,
        on_full: OnFull = "drop",
        max_batch_samples: int = 1_000,
        max_record_bytes: int = 1_000_000,
        flush_span_ms: int = 2_000,
        config: Mapping[str, Any] | None = None,
        limits: DecodeLimits | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        if on_full not in ("drop", "raise"):
            raise ValueError(f"on_full must be drop or raise, not {on_full!r}")
        if max_buffered_samples < 1 or max_batch_samples < 1:
            raise ValueError("max_buffered_samples and max_batch_samples must be >= 1")
        if flush_interval is not None and flush_interval <= 0:
            raise ValueError("flush_interval must be > 0 seconds (or None)")
        self.topic = topic
        self.defaults = {"service": service, "region": region, "instance": instance}
        self.labels = dict(labels or {})
        self.max_buffered_samples = max_buffered_samples
        self.on_full = on_full
        self.flush_span_ms = flush_span_ms
        self._span_start: int | None = None  # ts of the first sample since the last drain
        self._clock = clock
        self._checker = SampleChecker(limits)
        self._batcher = make_batcher(encoding, max_batch_samples, max_record_bytes)
        self._producer = Producer(kafka_config(bootstrap_servers, config))
        self._lock = threading.Lock()  # buffer, checker and counters
        self._flush_lock = threading.Lock()  # one flush at a time: keeps records in order
        self._backlog: deque[Record] = deque()  # built, not yet taken by librdkafka
        self._counts = dict.fromkeys(
            ("accepted", "dropped", "buffered", "in_flight", "delivered", "failed", "records"), 0
        )
        self.last_error: KafkaError | None = None
        self._closed = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if flush_interval is not None:
            self._thread = threading.Thread(
                target=self._flush_loop, args=(flush_interval,), name="metrics-flush", daemon=True
            )
            self._thread.start()

    # -- recording ------------------------------------------------------------------------

    def timer(
        self,
        name: str,
        value: float,
        *,
        service: str | None = None,
        region: str | None = None,
        labels: Mapping[str, str] | None = None,
        unit: str | None = None,
        ts: int | None = None,
    ) -> None:
        """One duration (in `unit`, e.g. "ms"); rolled up into count, rate and percentiles."""
        self._record_typed("timer", name, value, service, region, labels, unit, ts, None, None)

    def gauge(
        self,
        name: str,
        value: float,
        *,
        service: str | None = None,
        region: str | None = None,
        labels: Mapping[str, str] | None = None,
        unit: str | None = None,
        ts: int | None = None,
    ) -> None:
        """One observation of a level (queue depth, memory in use, ...)."""
        self._record_typed("gauge", name, value, service, region, labels, unit, ts, None, None)

    def counter(
        self,
        name: str,
        value: float,
        *,
        temporality: Temporality = "delta",
        instance: str | None = None,
        service: str | None = None,
        region: str | None = None,
        labels: Mapping[str, str] | None = None,
        unit: str | None = None,
        ts: int | None = None,
    ) -> None:
        """A count: "delta" (default) = how much happened since the last report (>= 0);
        "cumulative" = the running total of one process, which needs an `instance`."""
        self._record_typed(
            "counter", name, value, service, region, labels, unit, ts, temporality, instance
        )

    def record(self, sample: Mapping[str, Any]) -> None:
        """A raw sample in the contract's form (schemas/sample.schema.json); the producer's
        service, region, instance and labels fill what it leaves out, `ts` defaults to now."""
        item = dict(sample)
        check_fields(item)
        for field, default in self.defaults.items():
            if item.get(field) is None and default is not None:
                item[field] = default
        own = item.get("labels")
        if self.labels and (own is None or isinstance(own, Mapping)):
            item["labels"] = {**self.labels, **(own or {})}
        if "value" in item:
            item["value"] = _plain_number(item["value"])
        self._add(item)

    def _record_typed(
        self,
        type_name: str,
        name: str,
        value: float,
        service: str | None,
        region: str | None,
        labels: Mapping[str, str] | None,
        unit: str | None,
        ts: int | None,
        temporality: Temporality | None,
        instance: str | None,
    ) -> None:
        item: dict[str, Any] = {
            "service": service if service is not None else self.defaults["service"],
            "region": region if region is not None else self.defaults["region"],
            "name": name,
            "type": type_name,
            "value": _plain_number(value),
            "ts": ts,
        }
        if labels or self.labels:
            item["labels"] = {**self.labels, **labels} if labels else self.labels
        if unit is not None:
            item["unit"] = unit
        if temporality is not None:
            item["temporality"] = temporality
        inst = instance if instance is not None else self.defaults["instance"]
        if inst is not None:
            item["instance"] = inst
        self._add(item)

    def _add(self, item: dict[str, Any]) -> None:
        now = self._clock()
        if item.get("ts") is None:
            item["ts"] = now
        with self._lock:
            if self._closed:
                raise ClientClosedError("MetricsProducer is closed")
            sample = self._checker.check(item, now)
            start = self._span_start
            if start is None or abs(sample.ts - start) <= self.flush_span_ms:
                self._buffer(sample)
                return
        self._flush_once(None)  # in the caller: only a replay of history gets here
        with self._lock:
            if self._closed:
                raise ClientClosedError("MetricsProducer is closed")
            self._buffer(sample)

    def _buffer(self, sample: CheckedSample) -> None:
        """Add a validated sample, or drop or refuse it when the buffer is full (lock held)."""
        counts = self._counts
        if counts["buffered"] >= self.max_buffered_samples:
            if self.on_full == "raise":
                raise BufferFullError(
                    f"{counts['buffered']} samples buffered (max_buffered_samples); "
                    f"Kafka unreachable or slow: {self.last_error}"
                )
            counts["dropped"] += 1
            return
        self._batcher.add(sample)
        if self._span_start is None:
            self._span_start = sample.ts
        counts["accepted"] += 1
        counts["buffered"] += 1
        if counts["buffered"] * 2 == self.max_buffered_samples:
            self._wake.set()  # half full: flush now rather than at the next interval

    # -- flushing -------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> int:
        """Send everything buffered and wait up to `timeout` s for Kafka to acknowledge it.
        Returns the samples still not delivered (0: all acknowledged)."""
        deadline = time.monotonic() + timeout
        self._flush_once(deadline)
        self._producer.flush(max(0.0, deadline - time.monotonic()))
        with self._lock:
            return self._counts["buffered"] + self._counts["in_flight"]

    def close(self, timeout: float = 10.0) -> int:
        """Stop the flush thread and flush (see `flush`); later samples raise ClientClosedError.
        Returns the samples not delivered. Safe to call twice."""
        with self._lock:
            self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return self.flush(timeout)

    def stats(self) -> ProducerStats:
        with self._lock:
            return ProducerStats(**self._counts)

    def __enter__(self) -> MetricsProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _flush_loop(self, interval: float) -> None:
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            with self._lock:
                closed = self._closed
            if closed:
                return  # close() does the final flush
            self._flush_once(None)

    def _flush_once(self, deadline: float | None) -> None:
        """Build records from the buffer and hand the backlog to librdkafka, oldest first. With
        no deadline, stop at the first record librdkafka cannot queue (try again next time)."""
        with self._flush_lock:
            with self._lock:
                self._backlog.extend(self._batcher.drain())
                self._span_start = None
            timestamp = self._clock()
            while self._backlog:
                record = self._backlog[0]
                try:
                    self._producer.produce(
                        self.topic,
                        record.value,
                        record.key,
                        timestamp=timestamp,
                        on_delivery=functools.partial(self._on_delivery, record.samples),
                    )
                except BufferError:  # librdkafka's queue is full: Kafka is down or slow
                    if deadline is None or time.monotonic() >= deadline:
                        break
                    self._producer.poll(0.05)
                    continue
                except KafkaException as exc:  # refused for good (e.g. larger than allowed)
                    self._backlog.popleft()
                    with self._lock:
                        self._counts["buffered"] -= record.samples
                        self._counts["failed"] += record.samples
                        self.last_error = exc.args[0] if exc.args else None
                    continue
                self._backlog.popleft()
                with self._lock:
                    self._counts["buffered"] -= record.samples
                    self._counts["in_flight"] += record.samples
                    self._counts["records"] += 1
            self._producer.poll(0)

    def _on_delivery(self, samples: int, err: KafkaError | None, _msg: object) -> None:
        with self._lock:
            self._counts["in_flight"] -= samples
            if err is None:
                self._counts["delivered"] += samples
            else:
                self._counts["failed"] += samples
                self.last_error = err


def _plain_number(value: Any) -> Any:
    """numpy scalars and other real numbers as a plain int or float (the validator wants exactly
    those); anything else, bools included, unchanged for the validator to refuse."""
    if type(value) is int or type(value) is float or isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value
