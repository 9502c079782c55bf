"""Buffered samples → Kafka records, in the two batch encodings of the data contract.

- columnar (`batch-columnar.schema.json`): one record per (series, instance) per flush, the
  identity once plus `ts[]` and `value[]` — the cheapest form for the producer, the broker and
  the worker (one JSON object per record, numbers decoded as arrays);
- array (`batch-array.schema.json`): one record per Kafka key per flush holding whole samples,
  for consumers of `metrics.raw` that only read one sample shape.

Both keep each series' points in the order they were recorded, cap a record at `max_samples`
samples and split one whose JSON exceeds `max_bytes` (the worker's `max_message_bytes` is 1 MiB).
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Protocol

import orjson

from pipeline.client.validation import CheckedSample, Stream

__all__ = ["ArrayBatcher", "Batcher", "ColumnarBatcher", "Encoding", "Record", "make_batcher"]

Encoding = Literal["columnar", "array"]


class Record(NamedTuple):
    """One Kafka record to produce: key "<service>|<region>", JSON value, samples it holds."""

    key: bytes
    value: bytes
    samples: int


class Batcher(Protocol):
    def add(self, sample: CheckedSample) -> None:
        """Buffer one validated sample."""

    def drain(self) -> list[Record]:
        """Every buffered sample as records, oldest stream first; the buffer is then empty."""


class ColumnarBatcher:
    """One record per (series, instance) per flush: `{identity..., "ts": [...], "value": [...]}`."""

    def __init__(self, max_samples: int, max_bytes: int) -> None:
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        # Streams with pending points, in the order their first pending point arrived.
        self._pending: dict[int, Stream] = {}

    def add(self, sample: CheckedSample) -> None:
        stream = sample.stream
        if not stream.ts:
            self._pending[id(stream)] = stream
        stream.ts.append(sample.ts)
        stream.values.append(sample.value)

    def drain(self) -> list[Record]:
        records: list[Record] = []
        for stream in self._pending.values():
            ts, values = stream.ts, stream.values
            for start in range(0, len(ts), self.max_samples):
                end = start + self.max_samples
                records.extend(self._encode(stream, ts[start:end], values[start:end]))
            stream.ts, stream.values = [], []
        self._pending.clear()
        return records

    def _encode(self, stream: Stream, ts: list[int], values: list[int | float]) -> list[Record]:
        value = b'%b"ts":%b,"value":%b}' % (stream.prefix, orjson.dumps(ts), orjson.dumps(values))
        if len(value) <= self.max_bytes or len(ts) == 1:
            return [Record(stream.key, value, len(ts))]
        half = len(ts) // 2
        return self._encode(stream, ts[:half], values[:half]) + self._encode(
            stream, ts[half:], values[half:]
        )


class ArrayBatcher:
    """One record per Kafka key per flush: a JSON array of complete samples in call order."""

    def __init__(self, max_samples: int, max_bytes: int) -> None:
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self._by_key: dict[bytes, list[bytes]] = {}

    def add(self, sample: CheckedSample) -> None:
        stream = sample.stream
        item = b'%b"ts":%d,"value":%b}' % (stream.prefix, sample.ts, orjson.dumps(sample.value))
        self._by_key.setdefault(stream.key, []).append(item)

    def drain(self) -> list[Record]:
        records: list[Record] = []
        for key, items in self._by_key.items():
            for start in range(0, len(items), self.max_samples):
                records.extend(self._encode(key, items[start : start + self.max_samples]))
        self._by_key.clear()
        return records

    def _encode(self, key: bytes, items: list[bytes]) -> list[Record]:
        value = b"[" + b",".join(items) + b"]"
        if len(value) <= self.max_bytes or len(items) == 1:
            return [Record(key, value, len(items))]
        half = len(items) // 2
        return self._encode(key, items[:half]) + self._encode(key, items[half:])


def make_batcher(encoding: Encoding, max_samples: int, max_bytes: int) -> Batcher:
    if encoding == "columnar":
        return ColumnarBatcher(max_samples, max_bytes)
    if encoding == "array":
        return ArrayBatcher(max_samples, max_bytes)
    raise ValueError(f"encoding must be columnar or array, not {encoding!r}")
