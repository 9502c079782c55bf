"""The runner's pending batch across a rebalance: revoked partitions leave uncommitted."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
from confluent_kafka import Message
from jsonschema import Draft202012Validator

from load.sink_split import DiscardingSink
from pipeline.core.reasons import Reason
from pipeline.kafka.deadletter import sink_record
from pipeline.sinks.base import RecordColumns, SinkRecord
from pipeline.sinks.runner import PendingBatch, SinkRunner, Unreadable
from pipeline.sinks.settings import SinkSettings


def test_revoked_partitions_leave_the_batch_and_its_commit_offsets() -> None:
    batch = PendingBatch()
    for partition in (0, 1, 2):
        for offset in range(3):
            batch.records.append(SinkRecord("t", partition, offset, b"k", b"{}", {}))
        batch.next_offsets[("t", partition)] = 3
    batch.unreadable.append(Unreadable("t", 1, 3, b"x", "not JSON"))
    batch.next_offsets[("t", 1)] = 4
    dropped = batch.drop_partitions({("t", 1), ("t", 7)})
    assert dropped == 4
    assert {r.partition for r in batch.records} == {0, 2}
    assert not batch.unreadable
    assert batch.next_offsets == {("t", 0): 3, ("t", 2): 3}


def test_sink_dead_letters_follow_the_dead_letter_schema() -> None:
    schema_path = Path(__file__).resolve().parents[3] / "schemas" / "deadletter.schema.json"
    validator = Draft202012Validator(json.loads(schema_path.read_text()))
    key, value = sink_record(
        "metrics.rollups.10s", 3, 42, Reason.STORE_REJECTED, "HTTP 400: out of bounds", b"{}", "s"
    )
    body = orjson.loads(value)
    validator.validate(body)
    assert key == b"metrics.rollups.10s/3/42/-1"
    assert (body["reason"], body["index"], body["samples"]) == ("store_rejected", -1, 1)


def _runner() -> SinkRunner:
    settings = SinkSettings(topics=["a", "b"], bootstrap_servers="127.0.0.1:9")
    return SinkRunner(settings, DiscardingSink())  # parses_records: the columnar batch


def test_unparsed_records_are_batched_column_by_column_with_each_partitions_next_offset() -> None:
    runner = _runner()
    one_topic = [
        Message(topic="a", partition=p, offset=o, key=b"k", value=b"v%d" % o)
        for o, p in [(10, 0), (20, 1), (11, 0), (21, 1), (12, 0), (5, 3)]
    ]
    runner.add(one_topic)
    runner.add([Message(topic="a", partition=0, offset=13, key=None, value=None)])
    two_topics = [
        Message(topic=t, partition=0, offset=o, key=b"k", value=b"w")
        for t, o in [("b", 7), ("a", 14), ("b", 8)]
    ]
    runner.add(two_topics)
    batch = runner._batch
    assert isinstance(batch.records, RecordColumns)
    assert batch.next_offsets == {("a", 0): 15, ("a", 1): 22, ("a", 3): 6, ("b", 0): 9}
    assert len(batch) == 10
    assert batch.records[1] == SinkRecord("a", 1, 20, b"k", b"v20", {})
    assert batch.records[6] == SinkRecord("a", 0, 13, b"", b"", {})  # a tombstone: empty
    assert [r.offset for r in batch.records] == [10, 20, 11, 21, 12, 5, 13, 7, 14, 8]
    assert batch.drop_partitions({("a", 0)}) == 5
    assert isinstance(batch.records, RecordColumns)
    assert batch.records.raws == [b"v20", b"v21", b"v5", b"w", b"w"]
    assert [(r.topic, r.offset) for r in batch.records] == [
        ("a", 20),
        ("a", 21),
        ("a", 5),
        ("b", 7),
        ("b", 8),
    ]
    assert batch.next_offsets == {("a", 1): 22, ("a", 3): 6, ("b", 0): 9}
