"""The consumer shell's pure parts: the error filter, the grouping by partition, a stage's
per-partition bookkeeping (re-delivered records, replay gaps) and the checkpoint refusal."""

from __future__ import annotations

import pytest
import structlog
from confluent_kafka import KafkaError, Message
from structlog.testing import capture_logs

from pipeline.errors import CheckpointError
from pipeline.kafka.checkpoints import refuse_without_checkpoints
from pipeline.kafka.consumer import GroupConsumer, readable
from pipeline.kafka.group_io import by_partition
from pipeline.kafka.partition_state import OwnedPartition
from pipeline.observability import Health
from pipeline.settings import StageSettings


def test_errors_are_left_out_and_only_real_ones_logged() -> None:
    first = Message(topic="t", partition=0, offset=7, value=b"a")
    second = Message(topic="t", partition=1, offset=3, value=b"b")
    end = Message(topic="t", partition=0, error=KafkaError(KafkaError._PARTITION_EOF))
    broken = Message(topic="t", partition=1, error=KafkaError(KafkaError._TRANSPORT))
    with capture_logs() as logs:
        records = readable([first, end, second, broken], structlog.get_logger("test"))
    assert records == [first, second]
    assert [(e["event"], e["log_level"]) for e in logs] == [("consume error", "warning")]
    assert "Local: Broker transport failure" in logs[0]["error"]


def test_a_batch_without_errors_comes_back_whole() -> None:
    batch = [Message(topic="t", partition=0, offset=o, value=b"v") for o in range(3)]
    with capture_logs() as logs:
        assert readable(batch, structlog.get_logger("test")) == batch
    assert logs == []


def test_records_are_grouped_by_partition_in_consumed_order() -> None:
    records = [
        Message(topic="side", partition=1, offset=4, value=b""),
        Message(topic="in", partition=1, offset=9, value=b""),
        Message(topic="in", partition=0, offset=2, value=b""),
        Message(topic="in", partition=1, offset=10, value=b""),
    ]
    batches = by_partition(records)
    assert list(batches) == [("side", 1), ("in", 1), ("in", 0)]
    assert [m.offset() for m in batches[("in", 1)]] == [9, 10]


class _State:
    next_offset = 100


def _batch(*offsets: int) -> list[Message]:
    return [Message(topic="in", partition=0, offset=o, value=b"") for o in offsets]


def test_records_processed_before_a_seek_are_dropped() -> None:
    owned = OwnedPartition(_State())  # type: ignore[type-var]
    assert [m.offset() for m in owned.not_yet_processed(_batch(98, 99, 100, 101))] == [100, 101]
    batch = _batch(100, 101)
    assert owned.not_yet_processed(batch) is batch


def test_a_replay_gap_is_reported_once_and_only_if_input_is_missing() -> None:
    gap = OwnedPartition(_State(), resume_from=100)  # type: ignore[type-var]
    assert gap.replay_gap(_batch(140, 141)) == 100
    assert gap.replay_gap(_batch(142)) is None  # only the first batch after a restore counts
    whole = OwnedPartition(_State(), resume_from=100)  # type: ignore[type-var]
    assert whole.replay_gap(_batch(100, 101)) is None
    fresh = OwnedPartition(_State())  # type: ignore[type-var]
    assert fresh.replay_gap(_batch(140)) is None  # no checkpoint: nothing was needed


def test_committed_offsets_without_checkpoints_are_refused() -> None:
    stored = {1}  # partitions with a checkpoint
    committed = {("in", 0): 12, ("in", 1): 5, ("in", 2): -1001}
    with pytest.raises(CheckpointError, match=r"in partitions \[0\] have committed offsets"):
        refuse_without_checkpoints("in", committed, stored, "group", "checkpoints")
    # Without a committed offset (never consumed) an empty state is the right start.
    refuse_without_checkpoints("in", {("in", 2): -1001}, stored, "group", "checkpoints")


def test_a_group_consumer_drives_exactly_one_handler() -> None:
    with pytest.raises(ValueError, match="one handler"):
        GroupConsumer(StageSettings(), [], None, health=Health())
