"""A generated workload as a whole: ground truth, message stream and a manifest of exact counts."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.loadgen.encode import CHUNK_SAMPLES, MessagePlan, iter_chunks, plan_messages
from pipeline.loadgen.malformed import BadPlan, plan_malformed
from pipeline.loadgen.spec import Message, WorkloadSpec
from pipeline.loadgen.workload import GroundTruth, generate_columns

__all__ = ["Manifest", "Workload", "build_manifest", "build_messages", "generate"]


@dataclass(frozen=True)
class Manifest:
    """Exact counts of a generated workload; `to_dict()` is JSON-serializable.

    Conservation the pipeline must show: samples_total = samples in rollups (on_time_samples)
    + dead-lettered (malformed_samples) + counted as late (intended_late_samples, see below).
    A bad message counts as 1 sample, like the dead-letter record's `samples` field.

    intended_late_samples are valid samples sent `late_by_ms` behind their producer time where an
    earlier message on the same producer key already carried an event time >= `late_guard_ms`
    ahead of them: late for any window + allowed lateness <= late_guard_ms. Only the worker knows
    what is late; these are the ones meant to be.
    max_disorder_ms bounds, for every other valid sample, how far its ts is behind the largest ts
    of the samples sent before it (so allowed lateness >= it means no unintended late samples).
    """

    encoding: str
    seed: int
    messages: int
    valid_messages: int
    malformed_messages: int
    samples_total: int
    valid_samples: int
    on_time_samples: int
    intended_late_samples: int
    mismatched_key_samples: int
    malformed_samples: int
    malformed: dict[str, int]
    series: int
    producer_keys: int
    instances_per_series: int
    first_timestamp_ms: int
    last_timestamp_ms: int
    min_ts_ms: int
    max_ts_ms: int
    max_disorder_ms: int
    late_by_ms: int
    late_guard_ms: int
    spec: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)
class Workload:
    """Everything generated from one spec. Messages are made lazily on each iteration."""

    spec: WorkloadSpec
    truth: GroundTruth
    plan: MessagePlan
    bad: BadPlan
    manifest: Manifest

    def chunks(self, chunk_samples: int = CHUNK_SAMPLES) -> Iterator[list[Message]]:
        """Messages in production order, a list of about `chunk_samples` samples at a time."""
        return iter_chunks(self.truth, self.plan, self.bad, chunk_samples)

    def messages(self) -> Iterator[Message]:
        """Messages in production order, one at a time."""
        for chunk in self.chunks():
            yield from chunk


def generate(spec: WorkloadSpec) -> Workload:
    """Draw the samples, lay out the messages and count everything (no bytes are built yet)."""
    truth = generate_columns(spec)
    plan = plan_messages(truth)
    bad = plan_malformed(spec, truth.catalogue)
    return Workload(spec, truth, plan, bad, _manifest(truth, plan, bad))


def build_messages(spec: WorkloadSpec) -> Iterator[Message]:
    """Messages of `spec` in production order; same spec → byte-identical messages."""
    return generate(spec).messages()


def build_manifest(spec: WorkloadSpec) -> Manifest:
    return generate(spec).manifest


def _manifest(truth: GroundTruth, plan: MessagePlan, bad: BadPlan) -> Manifest:
    spec = truth.spec
    n, n_bad, late = len(truth), len(bad), int(truth.late.sum())
    stamps = np.concatenate((plan.timestamp_ms, bad.now_ms))
    return Manifest(
        encoding=spec.encoding,
        seed=spec.seed,
        messages=len(plan) + n_bad,
        valid_messages=len(plan),
        malformed_messages=n_bad,
        samples_total=n + n_bad,
        valid_samples=n,
        on_time_samples=n - late,
        intended_late_samples=late,
        mismatched_key_samples=int(truth.mismatched.sum()),
        malformed_samples=n_bad,
        malformed=spec.malformed.as_dict(),
        series=len(truth.series),
        producer_keys=len(truth.keys),
        instances_per_series=spec.instances,
        first_timestamp_ms=int(stamps.min()) if len(stamps) else spec.start_ms,
        last_timestamp_ms=int(stamps.max()) if len(stamps) else spec.start_ms,
        min_ts_ms=int(truth.ts.min()) if n else spec.start_ms,
        max_ts_ms=int(truth.ts.max()) if n else spec.start_ms,
        max_disorder_ms=spec.max_disorder_ms,
        late_by_ms=spec.late_by_ms,
        late_guard_ms=spec.late_guard_ms,
        spec=spec.to_dict(),
    )
