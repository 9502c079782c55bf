"""The supervisor's pure parts: merging children's /metrics, --processes, child arguments."""

from __future__ import annotations

import os

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.errors import ConfigError
from pipeline.merged_metrics import Family, MergedChildren, merge, parse_exposition
from pipeline.observability import WorkerMetrics
from pipeline.supervise import child_arguments, process_count

_P = "metrics_pipeline_"


def child(
    consumed: int, first_input: float, last_delivery: float, reachable: int = 1
) -> dict[str, Family]:
    """A worker's exposition, as its /metrics serves it."""
    m = WorkerMetrics()
    m.messages.inc(consumed)
    m.deadletter.labels("late").inc(consumed // 10)
    m.emission_delay.observe(0.02)
    m.first_input_time.set(first_input)
    m.last_delivery_time.set(last_delivery)
    m.assigned.set(consumed % 7)
    m.kafka_reachable.set(reachable)
    return parse_exposition(generate_latest(m.registry).decode())


def served(collector: MergedChildren) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_children_merge_sample_by_sample() -> None:
    got = served(
        MergedChildren(lambda: [child(100, 50.0, 70.0), child(30, 0.0, 90.0, reachable=0)])
    )
    assert got[(_P + "messages_consumed_total", ())] == 130
    assert got[(_P + "deadletter_total", (("reason", "late"),))] == 13
    assert got[(_P + "emission_delay_seconds_count", ())] == 2
    assert got[(_P + "emission_delay_seconds_bucket", (("le", "0.025"),))] == 2
    assert got[(_P + "assigned_partitions", ())] == 100 % 7 + 30 % 7
    # moments: the earliest first input (0 = not yet, ignored), the latest delivery
    assert got[(_P + "first_input_timestamp_seconds", ())] == 50.0
    assert got[(_P + "last_rollup_delivered_timestamp_seconds", ())] == 90.0
    assert got[(_P + "kafka_reachable", ())] == 0  # one child cannot reach Kafka


def test_a_retired_childs_counters_stay_in_the_sum() -> None:
    live = [child(100, 50.0, 70.0), child(40, 60.0, 80.0)]
    collector = MergedChildren(lambda: live)
    before = served(collector)[(_P + "messages_consumed_total", ())]
    collector.retire(live[1])  # that child died; its replacement starts from zero
    live[1] = child(5, 0.0, 0.0)
    after = served(collector)
    assert before == 140
    assert after[(_P + "messages_consumed_total", ())] == 145
    # gauges are not carried over: the dead child owns no partition any more
    assert after[(_P + "assigned_partitions", ())] == 100 % 7 + 5 % 7


def test_merge_of_nothing_is_empty() -> None:
    assert merge([]) == {}


def test_process_count() -> None:
    assert process_count("auto") == len(os.sched_getaffinity(0))
    assert process_count("3") == 3
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ConfigError):
            process_count(bad)


def test_child_arguments_repeat_the_command_line_but_processes_and_address() -> None:
    argv = [
        "/usr/bin/metrics-pipeline",
        "worker",
        "--group-id",
        "rollups",
        "--processes",
        "auto",
        "--http-port=9000",
        "--allowed-lateness",
        "5s",
        "--http-host",
        "0.0.0.0",
        "-c",
        "worker.yaml",
    ]
    assert child_arguments(argv) == [
        "--group-id",
        "rollups",
        "--allowed-lateness",
        "5s",
        "-c",
        "worker.yaml",
    ]
