"""The JSON Schemas in schemas/: valid Draft 2020-12, refs resolve, and they say what we mean.

Hand-written examples pin the contract; real records built by the pipeline's own code (rollups of
PartitionAggregator, dead-letter records of reject_records / late_records) must validate too.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from jsonschema import Draft202012Validator

from pipeline.core.aggregator import PartitionAggregator, WindowConfig
from pipeline.core.contract import schema_defs
from pipeline.core.decode import DecodeLimits, Decoder, RawMessage
from pipeline.core.reasons import Reason
from pipeline.core.series import SeriesTable
from pipeline.kafka.deadletter import late_records, reject_records
from tests.support.schemas import SCHEMAS, load_schema, registry, schema_errors

NAMES = ("sample", "batch-array", "batch-columnar", "rollup", "deadletter", "anomaly")
BASE_MS = 1_767_225_600_000


def assert_valid(name: str, doc: Any) -> None:
    assert schema_errors(name, doc) == [], doc


def assert_invalid(name: str, doc: Any) -> None:
    assert schema_errors(name, doc), f"{name} accepted {doc!r}"


# -- the schemas themselves ---------------------------------------------------------------------


def test_every_schema_file_is_covered() -> None:
    assert sorted(p.name for p in SCHEMAS.glob("*.json")) == sorted(
        f"{n}.schema.json" for n in NAMES
    )


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    doc = load_schema(name)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(doc)
    assert doc["$id"].endswith(f"/{name}.schema.json")
    assert doc.get("title")


def test_ids_are_unique_and_share_a_base() -> None:
    ids = [load_schema(n)["$id"] for n in NAMES]
    assert len(set(ids)) == len(ids)
    assert len({i.rsplit("/", 1)[0] for i in ids}) == 1


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


@pytest.mark.parametrize("name", NAMES)
def test_every_ref_resolves(name: str) -> None:
    doc = load_schema(name)
    resolver = registry().resolver(base_uri=doc["$id"])
    found = list(refs(doc))
    for ref in found:
        resolved = resolver.lookup(ref)
        assert isinstance(resolved.contents, dict) and resolved.contents, ref
    if name in ("batch-array", "batch-columnar"):
        assert found  # these reuse sample.schema.json


def test_deadletter_reasons_match_the_code() -> None:
    enum = load_schema("deadletter")["properties"]["reason"]["enum"]
    assert sorted(enum) == sorted(r.value for r in Reason)


def test_sample_schema_defs_are_generated_from_the_decoders_contract() -> None:
    # pipeline/core/contract.py is the single source of truth; `python -m
    # pipeline.core.contract` rewrites the $defs after a change there.
    assert load_schema("sample")["$defs"] == schema_defs()


def test_decoder_limits_default_to_the_contract() -> None:
    limits = DecodeLimits()
    defs = load_schema("sample")["$defs"]
    assert limits.max_labels == defs["labels"]["maxProperties"]
    assert limits.max_label_value_chars == defs["labels"]["additionalProperties"]["maxLength"]


# -- hand-written examples ----------------------------------------------------------------------

SAMPLE: dict[str, Any] = {
    "service": "checkout",
    "region": "eu-west-1",
    "name": "http.server.duration",
    "type": "timer",
    "value": 12.5,
    "ts": BASE_MS,
}
FULL_SAMPLE: dict[str, Any] = {
    **SAMPLE,
    "type": "counter",
    "temporality": "cumulative",
    "value": 1042,
    "unit": "1",
    "instance": "checkout-7d9f-x2",
    "labels": {"route": "/cart", "method": "GET"},
}
COLUMNAR: dict[str, Any] = {
    **{k: v for k, v in SAMPLE.items() if k not in ("ts", "value")},
    "ts": [BASE_MS, BASE_MS + 1000, BASE_MS + 2000],
    "value": [12.5, 3, 0.25],
    "labels": {"route": "/cart"},
    "unit": "ms",
}
ROLLUP: dict[str, Any] = {
    "series": {
        "service": "checkout",
        "region": "eu-west-1",
        "name": "http.server.duration",
        "type": "timer",
        "unit": "ms",
        "labels": {"route": "/cart"},
    },
    "series_key": 'checkout|eu-west-1|http.server.duration|timer|ms|{"route":"/cart"}',
    "resolution": "10s",
    "resolution_ms": 10_000,
    "window_start": BASE_MS,
    "window_end": BASE_MS + 10_000,
    "count": 3,
    "sum": 16.0,
    "min": 2.0,
    "max": 10.0,
    "mean": 16.0 / 3,
    "rate": 0.3,
    "percentiles": {"p50": 4.0, "p90": 8.8, "p95": 9.4, "p99": 9.88, "p99.9": 9.988},
    "digest": {
        "compression": 200,
        "n": 3,
        "exact": True,
        "centroids": [{"m": 2.0, "c": 1}, {"m": 4.0, "c": 1}, {"m": 10.0, "c": 1}],
    },
}
COUNTER_ROLLUP: dict[str, Any] = {
    **ROLLUP,
    "series": {**ROLLUP["series"], "type": "counter", "temporality": "delta", "unit": "1"},
    "percentiles": {},
    "digest": None,
}
DEADLETTER: dict[str, Any] = {
    "reason": "non_finite_value",
    "error": "value is NaN or infinite",
    "topic": "metrics.raw",
    "partition": 3,
    "offset": 1234,
    "index": -1,
    "samples": 1,
    "excerpt": '{"service":"checkout","value":NaN}',
    "excerpt_truncated": False,
    "stage": "worker",
}

VALID = [
    pytest.param("sample", SAMPLE, id="sample-minimal"),
    pytest.param("sample", FULL_SAMPLE, id="sample-full"),
    pytest.param("sample", {**SAMPLE, "value": -3, "type": "gauge"}, id="sample-negative-gauge"),
    pytest.param("sample", {**SAMPLE, "ts": 0}, id="sample-ts-zero"),
    pytest.param("batch-array", [SAMPLE, FULL_SAMPLE], id="array"),
    pytest.param("batch-array", [SAMPLE], id="array-of-one"),
    pytest.param("batch-columnar", COLUMNAR, id="columnar"),
    pytest.param(
        "batch-columnar",
        {**COLUMNAR, "type": "counter", "temporality": "cumulative", "instance": "pod-1"},
        id="columnar-counter",
    ),
    pytest.param("rollup", ROLLUP, id="rollup-timer"),
    pytest.param("rollup", COUNTER_ROLLUP, id="rollup-counter"),
    pytest.param("rollup", {**ROLLUP, "percentiles": {"p99.99": 9.9}}, id="rollup-p99.99"),
    pytest.param("deadletter", DEADLETTER, id="deadletter"),
    pytest.param("deadletter", {**DEADLETTER, "reason": "late", "index": 7}, id="deadletter-late"),
]


@pytest.mark.parametrize(("name", "doc"), VALID)
def test_valid_examples(name: str, doc: Any) -> None:
    assert_valid(name, doc)


def without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


def digest_with(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(ROLLUP)
    out["digest"].update(changes)
    return out


INVALID = [
    pytest.param("sample", {**SAMPLE, "value": "12.5"}, id="sample-value-string"),
    pytest.param("sample", {**SAMPLE, "value": None}, id="sample-value-null"),
    pytest.param("sample", {**SAMPLE, "ts": 1767225600.5}, id="sample-ts-float"),
    pytest.param("sample", {**SAMPLE, "ts": -1}, id="sample-ts-negative"),
    pytest.param("sample", {**SAMPLE, "ts": str(BASE_MS)}, id="sample-ts-string"),
    pytest.param("sample", without(SAMPLE, "ts"), id="sample-missing-ts"),
    pytest.param("sample", {**SAMPLE, "type": "histogram"}, id="sample-unknown-type"),
    pytest.param("sample", {**SAMPLE, "service": "check out"}, id="sample-service-space"),
    pytest.param("sample", {**SAMPLE, "service": "a|b"}, id="sample-service-pipe"),
    pytest.param("sample", {**SAMPLE, "region": ""}, id="sample-region-empty"),
    pytest.param("sample", {**SAMPLE, "labels": ["a"]}, id="sample-labels-list"),
    pytest.param("sample", {**SAMPLE, "labels": {"1a": "x"}}, id="sample-label-name"),
    pytest.param("sample", {**SAMPLE, "labels": {"a": 1}}, id="sample-label-value"),
    pytest.param(
        "sample",
        {**SAMPLE, "labels": {f"l{i}": "v" for i in range(17)}},
        id="sample-17-labels",
    ),
    pytest.param("sample", {**SAMPLE, "instance": ""}, id="sample-instance-empty"),
    pytest.param("sample", {**SAMPLE, "temporality": "monotonic"}, id="sample-temporality"),
    pytest.param("sample", [SAMPLE], id="sample-is-array"),
    pytest.param("batch-array", [], id="array-empty"),
    pytest.param("batch-array", [SAMPLE, 42], id="array-with-number"),
    pytest.param("batch-array", [SAMPLE, {**SAMPLE, "value": "x"}], id="array-bad-element"),
    pytest.param("batch-columnar", {**COLUMNAR, "ts": [], "value": []}, id="columnar-empty"),
    pytest.param("batch-columnar", {**COLUMNAR, "ts": [1.5]}, id="columnar-ts-float"),
    pytest.param("batch-columnar", {**COLUMNAR, "value": ["1"]}, id="columnar-value-string"),
    pytest.param("batch-columnar", without(COLUMNAR, "value"), id="columnar-no-value"),
    pytest.param("batch-columnar", {**COLUMNAR, "type": "summary"}, id="columnar-type"),
    pytest.param("rollup", without(ROLLUP, "count"), id="rollup-without-count"),
    pytest.param("rollup", {**ROLLUP, "count": 0}, id="rollup-count-zero"),
    pytest.param("rollup", {**ROLLUP, "count": 2.5}, id="rollup-count-float"),
    pytest.param("rollup", {**ROLLUP, "resolution": "10 seconds"}, id="rollup-resolution"),
    pytest.param("rollup", {**ROLLUP, "percentiles": {"median": 4.0}}, id="rollup-pct-name"),
    pytest.param("rollup", {**ROLLUP, "percentiles": {"p50": None}}, id="rollup-pct-null"),
    pytest.param("rollup", {**ROLLUP, "sum": None}, id="rollup-sum-null"),
    pytest.param("rollup", {**ROLLUP, "extra": 1}, id="rollup-extra-field"),
    pytest.param("rollup", digest_with(centroids=[]), id="rollup-no-centroids"),
    pytest.param(
        "rollup", digest_with(centroids=[{"m": 1.0, "c": 0}]), id="rollup-centroid-weight-0"
    ),
    pytest.param(
        "rollup", digest_with(centroids=[{"mean": 1.0, "c": 1}]), id="rollup-centroid-key"
    ),
    pytest.param("rollup", digest_with(n=0), id="rollup-digest-n-0"),
    pytest.param(
        "rollup", {**ROLLUP, "series": without(ROLLUP["series"], "labels")}, id="rollup-series"
    ),
    pytest.param("deadletter", {**DEADLETTER, "reason": "bad_vibes"}, id="dl-unknown-reason"),
    pytest.param("deadletter", {**DEADLETTER, "index": -2}, id="dl-index"),
    pytest.param("deadletter", {**DEADLETTER, "samples": 0}, id="dl-samples-zero"),
    pytest.param("deadletter", without(DEADLETTER, "stage"), id="dl-missing-stage"),
    pytest.param("deadletter", {**DEADLETTER, "offset": -1}, id="dl-offset"),
]


@pytest.mark.parametrize(("name", "doc"), INVALID)
def test_invalid_examples(name: str, doc: Any) -> None:
    assert_invalid(name, doc)


def test_columnar_batch_refs_apply_the_sample_rules() -> None:
    # Identifier and label rules come from sample.schema.json through $ref.
    assert_invalid("batch-columnar", {**COLUMNAR, "service": "check out"})
    assert_invalid("batch-columnar", {**COLUMNAR, "labels": {"a-b": "x"}})
    assert_valid("batch-columnar", {**COLUMNAR, "service": "checkout.v2:blue/a_b-c"})


# -- real records ---------------------------------------------------------------------------------


def real_rollups() -> list[dict[str, Any]]:
    """Closed windows of a timer, a gauge, a delta and a cumulative counter, some folded."""
    rng = np.random.default_rng(3)
    samples: list[dict[str, Any]] = []
    for i in range(3000):
        ts = BASE_MS + i * 10
        samples.append({**SAMPLE, "value": float(rng.lognormal()), "ts": ts})
        if i % 3 == 0:
            samples.append({**SAMPLE, "type": "gauge", "name": "temp", "value": -1.5, "ts": ts})
        if i % 5 == 0:
            samples.append({**SAMPLE, "type": "counter", "name": "req", "value": 2, "ts": ts})
            samples.append({**FULL_SAMPLE, "value": 1000 + i, "ts": ts})
    msgs = [RawMessage(orjson.dumps(s), i, int(s["ts"])) for i, s in enumerate(samples)]
    table = SeriesTable()
    decoded = Decoder(table).decode(msgs)
    assert decoded.rejects == []
    agg = PartitionAggregator("raw", 0, table, WindowConfig(10_000, 5_000))
    out = agg.process(decoded.columns, len(msgs)).rollups
    assert agg.plan_idle_advance()
    out += agg.apply_idle_advance()
    return [orjson.loads(r.encode()) for r in out]


def test_real_rollups_validate() -> None:
    bodies = real_rollups()
    kinds = {(b["series"]["type"], b["series"].get("temporality")) for b in bodies}
    assert kinds == {
        ("timer", None),
        ("gauge", None),
        ("counter", "delta"),
        ("counter", "cumulative"),
    }
    assert any(b["digest"] and not b["digest"]["exact"] for b in bodies)  # a folded window
    assert any(b["digest"] and b["digest"]["exact"] for b in bodies)
    for body in bodies:
        assert_valid("rollup", body)


def test_real_deadletter_records_validate() -> None:
    bad = [
        b"{not json",
        b"42",
        b"[]",
        orjson.dumps([SAMPLE, {**SAMPLE, "value": "x"}, {**SAMPLE, "type": "histogram"}]),
        orjson.dumps({**SAMPLE, "service": "a b"}),
        orjson.dumps({**COLUMNAR, "value": [1.0]}),
        b"\xff\xfe" + b"x" * 3000,  # long, not UTF-8: excerpt cut and replaced
    ]
    msgs = [RawMessage(v, i, BASE_MS) for i, v in enumerate(bad)]
    rejects = Decoder(SeriesTable()).decode(msgs).rejects
    assert len(rejects) == 8  # the array batch has two bad elements
    records = reject_records("metrics.raw", 2, rejects)
    for key, value in records:
        body = orjson.loads(value)
        assert_valid("deadletter", body)
        assert key.decode() == f"metrics.raw/2/{body['offset']}/{body['index']}"
    assert orjson.loads(records[-1][1])["excerpt_truncated"] is True


def test_real_late_records_validate() -> None:
    samples = [
        {**FULL_SAMPLE, "value": 10, "ts": BASE_MS + 1_000},
        {**FULL_SAMPLE, "value": 20, "ts": BASE_MS + 30_000},  # closes the first window
        {**FULL_SAMPLE, "value": 30, "ts": BASE_MS + 2_000},  # late
    ]
    msgs = [RawMessage(orjson.dumps(s), i, int(s["ts"])) for i, s in enumerate(samples)]
    table = SeriesTable()
    agg = PartitionAggregator("raw", 0, table)
    step = agg.process(Decoder(table).decode(msgs).columns, 3)
    assert len(step.late) == 1
    (record,) = late_records("metrics.raw", 0, step.late, table, 10_000)
    body = orjson.loads(record[1])
    assert_valid("deadletter", body)
    assert body["reason"] == "late" and body["offset"] == 2
    # The excerpt re-encodes the sample: itself a valid raw sample.
    assert_valid("sample", orjson.loads(body["excerpt"]))
