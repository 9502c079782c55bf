"""The pipeline's topic list (TopicPlan) from settings, and what `topics check` calls a problem."""

from __future__ import annotations

import pytest

from pipeline.kafka.admin import KafkaConfigError, partition_count
from pipeline.kafka.topology import TopicPlan
from pipeline.ops.topics import TopicState, _judge, problems_summary
from pipeline.settings import TopologySettings


def topology(**values: object) -> TopicPlan:
    return TopicPlan(TopologySettings(create_topics=False, **values))  # type: ignore[arg-type]


def test_every_topic_of_the_pipeline_with_its_role() -> None:
    t = topology(group_id="g", topic_partitions=6, topic_replication_factor=2)
    assert [(x.role, x.spec.name) for x in t] == [
        ("raw", "metrics.raw"),
        ("repartition", "metrics.raw.g.repartition"),
        ("rollups.10s", "metrics.rollups.10s"),
        ("rollups.1m", "metrics.rollups.1m"),
        ("rollups.5m", "metrics.rollups.5m"),
        ("rollups.1h", "metrics.rollups.1h"),
        ("deadletter", "metrics.deadletter"),
        ("checkpoints", "metrics.checkpoints"),
        ("anomalies", "metrics.anomalies"),
    ]
    assert {x.spec.partitions for x in t} == {6}
    assert {x.spec.replication_factor for x in t} == {2}


def test_checkpoints_are_compacted_and_retention_follows_roles() -> None:
    t = {
        x.role: x.spec
        for x in topology(topic_retention={"rollups": "30d", "rollups.1h": "forever", "raw": "1d"})
    }
    assert t["checkpoints"].config["cleanup.policy"] == "compact"
    assert t["raw"].config["retention.ms"] == str(86_400_000)
    assert t["repartition"].config["retention.ms"] == str(7 * 86_400_000)  # the default
    assert t["rollups.10s"].config["retention.ms"] == str(30 * 86_400_000)
    assert t["rollups.1h"].config["retention.ms"] == "-1"
    assert t["deadletter"].config["cleanup.policy"] == "delete"


def test_repartition_follows_raw_partitions() -> None:
    t = {x.role: x.spec for x in topology(topic_partitions_by_role={"raw": 12, "rollups": 3})}
    assert t["raw"].partitions == t["repartition"].partitions == 12
    assert t["rollups.1m"].partitions == 3
    assert t["deadletter"].partitions == 8


def _states(t: TopicPlan, **found: tuple[int, str]) -> list[TopicState]:
    states = []
    for x in t:
        partitions, policy = found.get(
            x.role.replace(".", "_"), (x.spec.partitions, x.spec.config["cleanup.policy"])
        )
        states.append(
            TopicState(x, partitions, x.spec.replication_factor, {"cleanup.policy": policy})
        )
    _judge(states)
    return states


def test_check_accepts_a_rollup_tier_with_another_partition_count() -> None:
    states = _states(topology(topic_replication_factor=1), rollups_10s=(4, "delete"))
    assert problems_summary(states) is None
    (tier,) = [s for s in states if s.topic.role == "rollups.10s"]
    assert tier.notes == ["4 partitions (settings: 8); works"]


def test_check_refuses_what_breaks_a_process() -> None:
    t = topology(topic_replication_factor=1)
    states = _states(t, repartition=(4, "delete"), checkpoints=(8, "delete"), anomalies=(0, ""))
    summary = problems_summary(states)
    assert summary is not None
    assert (
        "metrics.raw.metrics-pipeline-rollup.repartition: 4 partitions, but the raw topic has 8"
        in summary
    )
    assert "metrics.checkpoints: cleanup.policy=delete, expected compact" in summary
    assert "metrics.anomalies: missing" in summary
    assert "metrics-pipeline topics create" in summary


def test_unknown_librdkafka_key_is_one_line_naming_it() -> None:
    # librdkafka refuses the setting when the client is built: no broker is contacted.
    with pytest.raises(KafkaConfigError) as caught:
        partition_count({"bootstrap.servers": "127.0.0.1:1", "sasl.pasword": "x"}, "t")
    assert str(caught.value) == (
        'invalid Kafka client setting: No such configuration property: "sasl.pasword"'
    )


def test_every_process_derives_its_topics_from_the_same_names() -> None:
    from pipeline.settings import DetectSettings, TierSettings, WorkerSettings
    from pipeline.sinks.settings import LocalSinkSettings, SinkSettings

    names = {"input_topic": "p.raw", "rollup_topic_prefix": "p.r.", "chain": ["1m", "5m", "1h"]}
    worker = WorkerSettings(resolution="1m", group_id="w", **names)  # type: ignore[arg-type]
    assert (worker.source_topic, worker.output_topic) == ("p.raw", "p.r.1m")
    assert worker.topology.repartition(worker.group_id) == "p.raw.w.repartition"
    steps = TierSettings(**names).steps()  # type: ignore[arg-type]
    assert [(s.source_topic, s.output_topic) for s in steps] == [
        ("p.r.1m", "p.r.5m"),
        ("p.r.5m", "p.r.1h"),
    ]
    detect = DetectSettings(resolution="5m", anomaly_topic="p.anomalies", **names)  # type: ignore[arg-type]
    assert (detect.source_topic, detect.output_topic) == ("p.r.5m", "p.anomalies")
    assert LocalSinkSettings(**names).topics == ["p.r.1m", "p.r.5m", "p.r.1h"]  # type: ignore[arg-type]
    assert SinkSettings(group_id="s", **names).topics == ["p.r.1m"]  # type: ignore[arg-type]
    assert SinkSettings(group_id="s", topics=["x"], **names).topics == ["x"]  # type: ignore[arg-type]
