"""`metrics-pipeline topics create|describe|check`: the whole topology at once.

`create` makes every missing topic with the topology's partitions, replication and configs
(retention, the compacted checkpoint topic) before any process starts, so no process creates
one with its own idea of the counts. `describe` shows what exists; `check` fails (non-zero)
when a process would not work: a missing topic, a repartition topic whose partition count
differs from the raw topic's, a checkpoint topic that is not compacted, or fewer replicas
than asked for. A rollup, dead-letter or anomaly topic with another partition count than the
settings say is reported but works.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
)

from pipeline.kafka.admin import (
    CREATE_TOPICS_HINT,
    ensure_topics,
    new_client,
    partition_counts,
)
from pipeline.kafka.clients import Connection, admin_config
from pipeline.kafka.topology import TopicPlan, TopologyTopic

#: Topic configs shown and checked.
SHOWN_CONFIGS = ("cleanup.policy", "retention.ms")


@dataclass
class TopicState:
    """One topology topic as the cluster has it (partitions 0: missing)."""

    topic: TopologyTopic
    partitions: int = 0
    replication: int = 0
    config: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def exists(self) -> bool:
        return self.partitions > 0


def create_topology(connection: Connection, topology: TopicPlan, timeout: float = 30.0) -> None:
    """Create every missing topic of the topology; existing ones are left as they are."""
    ensure_topics(connection, topology.specs(), timeout=timeout, exact=False)


def describe_topology(
    connection: Connection, topology: TopicPlan, timeout: float = 10.0
) -> list[TopicState]:
    """What exists of the topology, with each topic's problems and notes filled in."""
    partition_counts(connection, timeout)  # fails with the reason when Kafka is unreachable
    admin = new_client(AdminClient, admin_config(connection))
    metadata = admin.list_topics(timeout=timeout)
    states = []
    for topic in topology:
        state = TopicState(topic)
        found = metadata.topics.get(topic.spec.name)
        if found is not None and found.error is None and found.partitions:
            state.partitions = len(found.partitions)
            state.replication = min(len(p.replicas) for p in found.partitions.values())
            state.config = _configs(admin, topic.spec.name, timeout)
        states.append(state)
    _judge(states)
    return states


def _configs(admin: AdminClient, name: str, timeout: float) -> dict[str, str]:
    resource = ConfigResource("topic", name)
    try:
        entries = admin.describe_configs([resource])[resource].result(timeout=timeout)
    except (KafkaException, TimeoutError):
        return {}
    return {key: str(entries[key].value) for key in SHOWN_CONFIGS if key in entries}


def _judge(states: list[TopicState]) -> None:
    raw = next(s for s in states if s.topic.role == "raw")
    for state in states:
        spec = state.topic.spec
        if not state.exists:
            state.problems.append("missing")
            continue
        if state.topic.role == "repartition" and raw.exists and state.partitions != raw.partitions:
            state.problems.append(
                f"{state.partitions} partitions, but the raw topic has {raw.partitions}: "
                "they must be equal (use a new consumer group after changing the raw topic)"
            )
        elif state.partitions != spec.partitions:
            state.notes.append(
                f"{state.partitions} partitions (settings: {spec.partitions}); works"
            )
        wanted_policy = spec.config["cleanup.policy"]
        policy = state.config.get("cleanup.policy")
        if policy is not None and policy != wanted_policy:
            message = f"cleanup.policy={policy}, expected {wanted_policy}"
            if state.topic.role == "checkpoints":
                state.problems.append(message + " (checkpoints would grow without bound)")
            else:
                state.notes.append(message)
        if state.replication < spec.replication_factor:
            state.problems.append(
                f"{state.replication} replica(s), topic_replication_factor is "
                f"{spec.replication_factor}"
            )


def problems_summary(states: list[TopicState]) -> str | None:
    """One line naming every topic with a problem, or None when the topology is usable."""
    bad = [f"{s.topic.spec.name}: {'; '.join(s.problems)}" for s in states if s.problems]
    if not bad:
        return None
    hint = f"; {CREATE_TOPICS_HINT}" if any(not s.exists for s in states) else ""
    return " | ".join(bad) + hint
