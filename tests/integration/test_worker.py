"""The rollup worker end to end on the real broker: exact rollups, conservation, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from tdigest import TDigest

from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.loadgen.build import Workload, generate
from pipeline.loadgen.produce import produce
from pipeline.loadgen.spec import MalformedCounts, WorkloadSpec
from tests.support.workloads import mixed_spec

from .harness import (
    RESOLUTION_MS,
    expected_rollups,
    rollups_by_window,
    wait_for,
    worker_settings,
    worker_thread,
)

pytestmark = pytest.mark.slow  # every test here uses the broker

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
PARTITIONS = 4


def validator(name: str) -> Draft202012Validator:
    resources = []
    for path in SCHEMAS.glob("*.schema.json"):
        doc = json.loads(path.read_text())
        resources.append((doc["$id"], Resource.from_contents(doc)))
    registry: Registry[Any] = Registry().with_resources(resources)
    schema = json.loads((SCHEMAS / name).read_text())
    return Draft202012Validator(schema, registry=registry)


def load(bootstrap: str, topic: str, workload: Workload) -> None:
    ensure_topics(bootstrap, [TopicSpec(topic, PARTITIONS)])
    produce(bootstrap, topic, workload.messages())


def small_spec(**overrides: Any) -> WorkloadSpec:
    return mixed_spec(
        **{
            "seed": 11,
            "services": 4,
            "regions": 2,
            "duration_s": 90.0,
            "samples": 30_000,
            **overrides,
        }
    )


def test_rollups_are_exact_and_conserve_every_sample(
    kafka_bootstrap: str, unique_name: str
) -> None:
    workload = generate(small_spec(late_fraction=0.01, malformed=MalformedCounts.each(2)))
    manifest = workload.manifest
    settings = worker_settings(kafka_bootstrap, unique_name)
    load(kafka_bootstrap, settings.input_topic, workload)
    with worker_thread(settings) as worker:
        outputs = wait_for(settings, PARTITIONS, manifest.samples_total)
        metrics = worker.metrics

    # Conservation: samples in = in rollups + dead-lettered (late included), exactly.
    in_rollups = sum(r["count"] for r in outputs.rollups.values())
    reasons = dict(outputs.deadletter_samples())
    late = reasons.pop("late", 0)
    assert in_rollups + sum(reasons.values()) + late == manifest.samples_total
    assert late == manifest.intended_late_samples
    assert reasons == {k: v for k, v in manifest.malformed.items() if v}
    assert metrics.late._value.get() == late

    expected = expected_rollups(workload.truth)
    got = rollups_by_window(outputs)
    assert set(got) == set(expected)
    rollup_schema = validator("rollup.schema.json")
    checked = 0
    for key, exp in expected.items():
        body = got[key]
        rollup_schema.validate(body)
        assert body["count"] == exp.count, key
        np.testing.assert_allclose(body["sum"], exp.sum, rtol=1e-9, atol=1e-9)
        assert body["min"] == exp.min and body["max"] == exp.max
        seconds = RESOLUTION_MS / 1000
        rate = exp.sum / seconds if body["series"]["type"] == "counter" else exp.count / seconds
        np.testing.assert_allclose(body["rate"], rate, rtol=1e-9, atol=1e-12)
        if body["series"]["type"] == "counter":
            assert body["digest"] is None
            continue
        # All these windows hold fewer values than raw_limit: percentiles are exact.
        truth_q = np.quantile(exp.values, [0.5, 0.9, 0.95, 0.99, 0.999])
        np.testing.assert_allclose(list(body["percentiles"].values()), truth_q, rtol=1e-12)
        # The serialized digest loads into the `tdigest` package and, for a window this
        # small, holds every value with its multiplicity.
        digest = TDigest()
        digest.update_from_dict(body["digest"])
        assert digest.n == exp.count
        assert body["digest"]["exact"] is True
        expanded = np.repeat(
            [c["m"] for c in body["digest"]["centroids"]],
            [int(c["c"]) for c in body["digest"]["centroids"]],
        )
        np.testing.assert_array_equal(expanded, exp.values)
        checked += 1
    assert checked > 0

    deadletter_schema = validator("deadletter.schema.json")
    for record in outputs.deadletters.values():
        deadletter_schema.validate(record)


@pytest.mark.parametrize("encoding", ["array", "columnar"])
def test_batch_encodings_give_the_same_rollups(
    kafka_bootstrap: str, unique_name: str, encoding: str
) -> None:
    workload = generate(small_spec(encoding=encoding, batch_size=50))
    manifest = workload.manifest
    settings = worker_settings(kafka_bootstrap, unique_name)
    load(kafka_bootstrap, settings.input_topic, workload)
    with worker_thread(settings):
        outputs = wait_for(settings, PARTITIONS, manifest.samples_total)
    got = rollups_by_window(outputs)
    expected = expected_rollups(workload.truth)
    assert {k: v["count"] for k, v in got.items()} == {k: e.count for k, e in expected.items()}
    assert outputs.deadletters == {}
