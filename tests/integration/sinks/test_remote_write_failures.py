"""The store goes away, refuses records, or gets garbage: nothing is lost, nothing is committed
past unstored data, and exactly the refused records reach the dead-letter topic."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from load.tsdb import PrometheusServer, TsdbServer
from pipeline.kafka.admin import TopicSpec, ensure_topics
from tests.support.kafka_helpers import Record, read_all
from tests.support.tsdb_servers import running

from .helpers import (
    PARTITIONS,
    copy_records,
    differences,
    expected_points,
    group_committed,
    real_rollups,
    recent_spec,
    runner_thread,
    sink_settings,
    topic_ends,
    wait_committed,
)

WEEK_MS = 7 * 86_400_000


def split_by_window(records: list[Record]) -> tuple[list[Record], list[Record]]:
    """Earlier windows first, later ones second (each series stays in time order)."""
    starts = sorted({orjson.loads(r.value or b"")["window_start"] for r in records})
    cut = starts[len(starts) // 2]
    early = [r for r in records if orjson.loads(r.value or b"")["window_start"] < cut]
    late = [r for r in records if orjson.loads(r.value or b"")["window_start"] >= cut]
    return early, late


def bodies(records: list[Record]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value or b"") for r in records]


@pytest.mark.slow
def test_a_tsdb_outage_loses_nothing_and_commits_nothing_unstored(
    kafka_bootstrap: str, unique_name: str, tsdb: TsdbServer
) -> None:
    (source,) = real_rollups(kafka_bootstrap, unique_name, recent_spec(seed=9))
    before, during = split_by_window(read_all(kafka_bootstrap, source))
    topic = f"sink-in-{unique_name}"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, PARTITIONS)])
    copy_records(kafka_bootstrap, topic, before)
    settings = sink_settings(kafka_bootstrap, unique_name, tsdb.write_url, [topic])
    with runner_thread(settings) as runner:
        first_ends = topic_ends(kafka_bootstrap, [topic])
        wait_committed(runner, first_ends)

        tsdb.stop()  # SIGTERM by pid, mid-stream
        copy_records(kafka_bootstrap, topic, during)
        deadline = time.monotonic() + 60
        while runner.totals.failed_writes < 3:
            assert time.monotonic() < deadline, "the runner never tried the stopped TSDB"
            time.sleep(0.1)
        # Nothing past the stored data was committed, by the runner or in Kafka.
        assert runner.totals.committed == first_ends
        assert group_committed(kafka_bootstrap, settings.group_id, first_ends) == first_ends
        # Consumption is paused: the pending batch is all the runner holds.
        assert runner.totals.consumed - len(before) <= settings.batch_records

        tsdb.start()  # same port, same data directory
        wait_committed(runner, topic_ends(kafka_bootstrap, [topic]))
        assert runner.totals.stored == len(before) + len(during)
        assert runner.totals.rejected == 0

    rel = 0.0 if isinstance(tsdb, PrometheusServer) else 1e-12
    problems = differences(
        tsdb.samples('{__name__=~".+"}'), expected_points(bodies(before + during)), rel
    )
    assert not problems, f"{len(problems)} differences, e.g. {problems[:5]}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("window", "message"),
    [(None, "out of bounds"), ("1h", "too old sample")],
    ids=["400-out-of-bounds", "500-too-old-sample"],
)
def test_refused_records_are_dead_lettered_with_the_servers_message(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, window: str | None, message: str
) -> None:
    server = PrometheusServer(tmp_path / "prometheus", out_of_order_window=window)
    with running(server) as prometheus:
        (source,) = real_rollups(kafka_bootstrap, unique_name, recent_spec(seed=21))
        first, second = split_by_window(read_all(kafka_bootstrap, source))
        # A week-old copy of every 7th rollup: far behind what Prometheus holds.
        old = []
        for r in first[::7]:
            body = orjson.loads(r.value or b"")
            body["window_start"] -= WEEK_MS
            body["window_end"] -= WEEK_MS
            old.append(
                Record(
                    r.topic, r.partition, -1, b"old-" + (r.key or b""), orjson.dumps(body), (), None
                )
            )
        garbage = [
            Record(source, 0, -1, b"g1", b"{not json", (), None),
            Record(source, 1, -1, b"g2", orjson.dumps({"series": "not a rollup"}), (), None),
        ]
        topic = f"sink-in-{unique_name}"
        ensure_topics(kafka_bootstrap, [TopicSpec(topic, PARTITIONS)])
        copy_records(kafka_bootstrap, topic, first)  # Prometheus learns what "now" is first
        settings = sink_settings(
            kafka_bootstrap, unique_name, prometheus.write_url, [topic], concurrency=3
        )
        with runner_thread(settings) as runner:
            wait_committed(runner, topic_ends(kafka_bootstrap, [topic]))
            mixed = (
                [r for pair in zip(second, old, strict=False) for r in pair]
                + second[len(old) :]
                + garbage
            )
            copy_records(kafka_bootstrap, topic, mixed)
            wait_committed(runner, topic_ends(kafka_bootstrap, [topic]))
            totals = runner.totals
        dead = [
            orjson.loads(r.value or b"")
            for r in read_all(kafka_bootstrap, settings.deadletter_topic)
        ]
        in_topic = read_all(kafka_bootstrap, topic)
        by_key = {r.key: r for r in in_topic}

        refused = [d for d in dead if d["reason"] == "store_rejected"]
        unreadable = [d for d in dead if d["reason"] == "invalid_rollup"]
        refused_keys = {by_key_at(in_topic, d).key for d in refused}
        assert refused_keys == {r.key for r in old}, "exactly the week-old records are refused"
        assert all(message in d["error"] and d["error"].startswith("HTTP ") for d in refused)
        assert {by_key_at(in_topic, d).key for d in unreadable} == {b"g1", b"g2"}
        assert all(d["stage"] == "sink:remote_write" for d in dead)
        # The sink parses records itself: the runner sees no JSON, both garbage records come
        # back from the sink as invalid_rollup rejections.
        assert totals.rejected == len(old) + 2 and totals.unreadable == 0
        assert totals.stored == len(first) + len(second)
        assert set(by_key) >= {r.key for r in mixed}

        stored = prometheus.samples('{__name__=~".+"}')
        problems = differences(stored, expected_points(bodies(first + second)))
        assert not problems, f"{len(problems)} differences, e.g. {problems[:5]}"


def by_key_at(records: list[Record], deadletter: dict[str, Any]) -> Record:
    """The input record a dead letter points at (topic/partition/offset)."""
    for r in records:
        if (r.partition, r.offset) == (deadletter["partition"], deadletter["offset"]):
            return r
    raise AssertionError(f"no input record at {deadletter}")


@pytest.mark.slow
def test_a_rebalance_during_an_outage_commits_nothing_for_revoked_partitions(
    kafka_bootstrap: str, unique_name: str, victoria_metrics: TsdbServer
) -> None:
    (source,) = real_rollups(kafka_bootstrap, unique_name, recent_spec(seed=13))
    before, during = split_by_window(read_all(kafka_bootstrap, source))
    topic = f"sink-in-{unique_name}"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, PARTITIONS)])
    copy_records(kafka_bootstrap, topic, before)
    settings = sink_settings(kafka_bootstrap, unique_name, victoria_metrics.write_url, [topic])
    with runner_thread(settings) as first:
        first_ends = topic_ends(kafka_bootstrap, [topic])
        wait_committed(first, first_ends)
        victoria_metrics.stop()
        copy_records(kafka_bootstrap, topic, during)
        deadline = time.monotonic() + 60
        while first.totals.failed_writes < 2:
            assert time.monotonic() < deadline, "the runner never tried the stopped TSDB"
            time.sleep(0.1)
        with runner_thread(settings) as second:  # same group: takes some partitions over
            deadline = time.monotonic() + 60
            while not second.group.assigned:
                assert time.monotonic() < deadline, "the second member never got partitions"
                time.sleep(0.1)
            moved = set(second.group.assigned)
            victoria_metrics.start()
            ends = topic_ends(kafka_bootstrap, [topic])
            deadline = time.monotonic() + 90
            while group_committed(kafka_bootstrap, settings.group_id, ends) != ends:
                assert time.monotonic() < deadline, "the group did not commit the whole topic"
                time.sleep(0.5)
            # The first member never committed past the outage for partitions it gave away.
            for tp in moved:
                assert first.totals.committed.get(tp, 0) <= first_ends.get(tp, 0)
            assert second.totals.stored > 0
    problems = differences(
        victoria_metrics.samples('{__name__=~".+"}'),
        expected_points(bodies(before + during)),
        1e-12,
    )
    assert not problems, f"{len(problems)} differences, e.g. {problems[:5]}"
