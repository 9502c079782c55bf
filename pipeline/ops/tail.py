"""`metrics-pipeline tail TOPIC`: read a rollup, anomaly or dead-letter topic as an operator.

Reads by assignment (no consumer group joins, nothing is committed), so tailing never moves a
process's offsets. Where reading starts: the last N records of each partition (`--last`, the
default), the beginning, or — with `--follow` and neither — the end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from pipeline.errors import PipelineError
from pipeline.kafka.admin import (
    CREATE_TOPICS_HINT,
    UnknownTopicError,
    high_watermarks,
    new_client,
    partition_count,
)
from pipeline.kafka.clients import Connection, client_config


@dataclass(frozen=True)
class TailOptions:
    follow: bool = False
    from_beginning: bool = False
    last: int | None = None  # per partition; None: 10 unless following
    series: str | None = None  # substring of series_key
    reason: str | None = None  # dead-letter reason, or anomaly state/severity


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    value: dict[str, Any] | None  # None: not a JSON object
    raw: bytes


def tail_records(
    connection: Connection, topic: str, options: TailOptions, stop: threading.Event
) -> Iterator[Record]:
    """Records of `topic` that pass the filters, in each partition's order; ends at the current
    end unless following (then at `stop`)."""
    try:
        partitions = partition_count(connection, topic)
    except UnknownTopicError:
        raise UnknownTopicError(f"topic {topic!r} does not exist; {CREATE_TOPICS_HINT}") from None
    starts = _start_offsets(connection, topic, partitions, options)
    consumer = new_client(
        Consumer,
        {
            **client_config(connection),
            "group.id": "metrics-pipeline-tail",  # required by librdkafka; never joined
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # A start before the first retained record means the first retained record.
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
        },
    )
    try:
        consumer.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
        at_end: set[int] = set()
        while not stop.is_set() and (options.follow or len(at_end) < partitions):
            for msg in consumer.consume(num_messages=1000, timeout=0.2):
                err = msg.error()
                partition = msg.partition() or 0
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(partition)
                    elif err.fatal() or not err.retriable():
                        raise PipelineError(f"reading {topic!r}: {err.str()}")
                    continue
                record = _record(partition, msg.offset() or 0, msg.value() or b"")
                if matches(record, options):
                    yield record
    finally:
        consumer.close()


def _start_offsets(
    connection: Connection, topic: str, partitions: int, options: TailOptions
) -> dict[int, int]:
    if options.from_beginning:
        return dict.fromkeys(range(partitions), OFFSET_BEGINNING)
    ends = high_watermarks(connection, topic)
    last = options.last if options.last is not None else (0 if options.follow else 10)
    return {p: max(0, ends.get(p, 0) - last) for p in range(partitions)}


def _record(partition: int, offset: int, raw: bytes) -> Record:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    return Record(partition, offset, value if isinstance(value, dict) else None, raw)


def matches(record: Record, options: TailOptions) -> bool:
    value = record.value or {}
    if options.series is not None and options.series not in str(value.get("series_key", "")):
        return False
    if options.reason is not None:
        kinds = {value.get("reason"), value.get("state"), value.get("severity"), value.get("kind")}
        if options.reason not in kinds:
            return False
    return True


def _time(ms: Any) -> str:
    if not isinstance(ms, int):
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, int | float) else "-"


def _rollup_row(v: dict[str, Any]) -> list[str]:
    pct = v.get("percentiles") or {}
    return [
        _time(v.get("window_start")),
        str(v.get("resolution", "")),
        str(v.get("series_key", "")),
        _number(v.get("count")),
        _number(v.get("mean")),
        _number(pct.get("p99")),
        _number(v.get("rate")),
    ]


def _anomaly_row(v: dict[str, Any]) -> list[str]:
    return [
        _time(v.get("window_start")),
        f"{v.get('state', '')}/{v.get('severity', '')}",
        str(v.get("series_key", "")),
        str(v.get("statistic", "")),
        _number(v.get("observed")),
        _number(v.get("expected")),
        _number(v.get("score")),
    ]


def _deadletter_row(v: dict[str, Any]) -> list[str]:
    return [
        str(v.get("reason", "")),
        str(v.get("stage", "")),
        f"{v.get('topic', '')}[{v.get('partition', '')}]@{v.get('offset', '')}",
        _number(v.get("samples")),
        str(v.get("error", ""))[:80],
    ]


#: (recognise, header, row) per record kind, tried in order.
LAYOUTS: list[tuple[Callable[[dict[str, Any]], bool], list[str], Callable[..., list[str]]]] = [
    (
        lambda v: "episode_id" in v,
        ["window", "state", "series", "statistic", "observed", "expected", "score"],
        _anomaly_row,
    ),
    (
        lambda v: "reason" in v and "stage" in v,
        ["reason", "stage", "source", "samples", "error"],
        _deadletter_row,
    ),
    (
        lambda v: "window_start" in v,
        ["window", "res", "series", "count", "mean", "p99", "rate"],
        _rollup_row,
    ),
]


class TableWriter:
    """Rows as aligned text, written as they arrive (a header whenever the kind changes)."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self._echo = echo
        self._header: list[str] | None = None

    def write(self, record: Record) -> None:
        value = record.value
        for recognise, header, row in LAYOUTS if value is not None else []:
            if value is not None and recognise(value):
                if header != self._header:
                    self._header = header
                    self._echo(_line(["p@offset", *header]))
                self._echo(_line([f"{record.partition}@{record.offset}", *row(value)]))
                return
        self._echo(f"{record.partition}@{record.offset}  {record.raw[:200]!r}")


def _line(cells: list[str]) -> str:
    widths = [10, 20, 14, 48, 10, 10, 10, 10]
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()


def json_line(record: Record) -> str:
    return (
        record.raw.decode("utf-8", "replace")
        if record.value is not None
        else orjson.dumps(
            {
                "partition": record.partition,
                "offset": record.offset,
                "raw": record.raw.decode("utf-8", "replace"),
            }
        ).decode()
    )
