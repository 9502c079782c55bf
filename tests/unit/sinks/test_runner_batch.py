"""The runner's pending batch across a rebalance: revoked partitions leave uncommitted."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
from jsonschema import Draft202012Validator

from pipeline.core.reasons import Reason
from pipeline.kafka.deadletter import sink_record
from pipeline.sinks.base import SinkRecord
from pipeline.sinks.runner import PendingBatch, Unreadable


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
