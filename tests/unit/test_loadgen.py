"""The load generator: determinism, exact counts, schema validity, time-order guarantees."""

from __future__ import annotations

import json
import math
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from pipeline.errors import ConfigError
from pipeline.kafka.clients import producer_config
from pipeline.kafka.partitioner import owner_partition
from pipeline.loadgen import (
    CUMULATIVE,
    MalformedCounts,
    Message,
    Workload,
    WorkloadSpec,
    build_messages,
    generate,
    generate_columns,
)
from pipeline.loadgen.partitioning import (
    PARTITIONERS,
    fnv1a_32,
    partition_of,
    partitioner_choice,
    rekeyed,
    sarama_hash_partition,
)
from pipeline.loadgen.produce import LOAD_PRODUCER

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
MIB = 1_048_576
DAY_MS = 86_400_000
ENCODINGS = ("single", "array", "columnar")
SCHEMA_REASONS = (
    "wrong_type",
    "missing_field",
    "unknown_metric_type",
    "too_many_labels",
    "negative_delta_counter",
)
PARSE_REASONS = ("malformed_json", "non_finite_value")
SEMANTIC_REASONS = ("ts_too_old", "ts_in_future", "oversize_message")


@cache
def validator(name: str) -> Draft202012Validator:
    """Validator for schemas/<name>.schema.json; cross-file $refs resolve through the registry."""
    docs = [json.loads(p.read_text()) for p in sorted(SCHEMAS.glob("*.schema.json"))]
    registry: Registry[Any] = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in docs
    )
    schema = next(d for d in docs if d["$id"].endswith(f"/{name}.schema.json"))
    return Draft202012Validator(schema, registry=registry)


def schema_reason(doc: Any) -> str | None:
    """Reason code for the first schema violation of one sample, None if it is schema-valid."""
    errors = list(validator("sample").iter_errors(doc))
    if not errors:
        return None
    err = errors[0]
    if err.validator == "required":
        return "missing_field"
    if err.validator == "maxProperties" and list(err.path) == ["labels"]:
        return "too_many_labels"
    if err.validator == "enum" and list(err.path) == ["type"]:
        return "unknown_metric_type"
    if err.validator == "type":
        return "wrong_type"
    if err.validator == "minimum" and list(err.path) == ["value"]:
        return "negative_delta_counter"  # the schema's rule for delta counters
    raise AssertionError(f"unexpected schema error: {err.message}")


def semantic_reason(doc: dict[str, Any], message_ts: int) -> str | None:
    """The checks a schema cannot express: ts vs the message timestamp."""
    if doc["ts"] < message_ts - DAY_MS:
        return "ts_too_old"
    if doc["ts"] > message_ts + DAY_MS:
        return "ts_in_future"
    return None


def classify(msg: Message) -> list[tuple[str | None, dict[str, Any] | None]]:
    """What a worker should make of a message: (reason or None, sample) per sample it accounts for.

    A message that cannot be read as samples accounts for one sample.
    """
    if len(msg.value) > MIB:
        return [("oversize_message", None)]
    try:
        doc = orjson.loads(msg.value)
    except orjson.JSONDecodeError:
        try:  # the stdlib parser accepts NaN, Infinity and 1e999, orjson does not
            json.loads(msg.value)
        except ValueError:
            return [("malformed_json", None)]
        return [("non_finite_value", None)]
    if isinstance(doc, list):
        assert not list(validator("batch-array").iter_errors(doc)) or any(
            schema_reason(d) for d in doc
        )
        samples = doc
    elif isinstance(doc.get("ts"), list):
        assert not list(validator("batch-columnar").iter_errors(doc))
        head = {k: v for k, v in doc.items() if k not in ("ts", "value")}
        samples = [
            {**head, "ts": t, "value": v} for t, v in zip(doc["ts"], doc["value"], strict=True)
        ]
    else:
        samples = [doc]
    out: list[tuple[str | None, dict[str, Any] | None]] = []
    for s in samples:
        reason = schema_reason(s) or semantic_reason(s, msg.timestamp_ms)
        out.append((reason, s))
    return out


def full_spec(encoding: str, **kw: Any) -> WorkloadSpec:
    base: dict[str, Any] = {
        "seed": 11,
        "services": 3,
        "regions": 2,
        "samples": 6_000,
        "duration_s": 120.0,
        "encoding": encoding,
        "batch_size": 20,
        "late_fraction": 0.02,
        "mismatched_key_fraction": 0.05,
        "counter_reset_probability": 0.05,
        "malformed": MalformedCounts.each(3),
    }
    return WorkloadSpec(**{**base, **kw})


Classified = list[list[tuple[str | None, dict[str, Any] | None]]]


@cache
def workload(encoding: str) -> tuple[Workload, list[Message], Classified]:
    """The full-featured workload of an encoding, its messages and their classification."""
    work = generate(full_spec(encoding))
    messages = list(work.messages())
    return work, messages, [classify(m) for m in messages]


def valid_samples(results: list[tuple[str | None, dict[str, Any] | None]]) -> list[dict[str, Any]]:
    return [s for reason, s in results if reason is None and s is not None]


def identity(s: dict[str, Any]) -> tuple[Any, ...]:
    labels = tuple(sorted(s.get("labels", {}).items()))
    return (s["service"], s["region"], s["name"], s["type"], s.get("temporality"), labels)


def truth_rows(work: Workload) -> Iterator[tuple[Any, ...]]:
    t = work.truth
    for s, i, ts, v in zip(
        t.series_key.tolist(), t.instance.tolist(), t.ts.tolist(), t.value.tolist(), strict=True
    ):
        sid = t.series[s]
        key = (sid.service, sid.region, sid.name, sid.type, sid.temporality, sid.labels)
        yield (*key, sid.instance_name(i), ts, v)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_same_seed_gives_byte_identical_messages(encoding: str) -> None:
    spec = full_spec(encoding)
    assert list(build_messages(spec)) == workload(encoding)[1]
    other = list(build_messages(full_spec(encoding, seed=12)))
    assert [m.value for m in other] != [m.value for m in workload(encoding)[1]]
    # Each purpose draws from its own stream: bad input does not move the valid samples.
    clean = generate(full_spec(encoding, malformed=MalformedCounts()))
    assert np.array_equal(clean.truth.value, workload(encoding)[0].truth.value)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_manifest_counts_match_the_messages(encoding: str) -> None:
    work, messages, classes = workload(encoding)
    man = work.manifest
    results = [r for c in classes for r in c]
    reasons = Counter(reason for reason, _ in results if reason is not None)
    assert man.messages == len(messages)
    assert man.samples_total == len(results) == man.valid_samples + man.malformed_samples
    assert man.valid_samples == sum(1 for reason, _ in results if reason is None)
    assert dict(reasons) == {k: v for k, v in man.malformed.items() if v}
    assert man.malformed == MalformedCounts.each(3).as_dict()
    assert man.on_time_samples + man.intended_late_samples == man.valid_samples
    assert man.intended_late_samples == round(0.02 * man.valid_samples)
    assert man.series == len(work.truth.series) == len(set(work.truth.series))
    assert orjson.loads(orjson.dumps(man.to_dict())) == man.to_dict()


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_decoded_samples_equal_the_ground_truth(encoding: str) -> None:
    """The bytes carry exactly the numpy columns (floats round-trip exactly)."""
    work, _, classes = workload(encoding)
    decoded = sorted(
        (*identity(s), s["instance"], s["ts"], float(s["value"]))
        for c in classes
        for s in valid_samples(c)
    )
    assert decoded == sorted(truth_rows(work))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_valid_messages_validate_against_the_schemas(encoding: str) -> None:
    work, messages, classes = workload(encoding)
    schema = {"single": "sample", "array": "batch-array", "columnar": "batch-columnar"}[encoding]
    valid = [m for m, c in zip(messages, classes, strict=True) if all(r is None for r, _ in c)]
    assert len(valid) == work.manifest.valid_messages
    for m in valid:
        validator(schema).validate(orjson.loads(m.value))


@pytest.mark.parametrize("reason", MalformedCounts.reasons())
def test_each_malformed_kind_fails_where_it_should(reason: str) -> None:
    spec = WorkloadSpec(samples=0, services=2, regions=1, malformed=MalformedCounts(**{reason: 12}))
    messages = list(build_messages(spec))
    assert len(messages) == 12
    for m in messages:
        assert classify(m) == [(reason, classify(m)[0][1])]
        if reason in PARSE_REASONS:
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(m.value)
        elif reason in SCHEMA_REASONS:
            assert not validator("sample").is_valid(orjson.loads(m.value))
        else:  # schema-valid JSON: only the worker's semantic checks catch these
            assert reason in SEMANTIC_REASONS
            assert validator("sample").is_valid(orjson.loads(m.value))
    if reason == "non_finite_value":
        values = [json.loads(m.value)["value"] for m in messages]
        assert all(not math.isfinite(v) for v in values)
        assert {str(v) for v in values} == {"nan", "inf", "-inf"}
    if reason == "oversize_message":
        assert all(len(m.value) > MIB for m in messages)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_message_order_and_timestamps(encoding: str) -> None:
    work, messages, classes = workload(encoding)
    stamps = [m.timestamp_ms for m in messages]
    assert stamps == sorted(stamps)
    for m, c in zip(messages, classes, strict=True):  # no sample is sent before it happened
        assert all(s["ts"] <= m.timestamp_ms for s in valid_samples(c))
    spec, t = work.spec, work.truth
    assert t.ts.min() >= spec.start_ms and t.ts.max() < spec.start_ms + spec.duration_ms


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_out_of_order_bound(encoding: str) -> None:
    """A non-late sample is at most max_disorder_ms behind any event time sent before it."""
    work, _, _ = workload(encoding)
    t, order = work.truth, work.plan.sample_order
    ts, late = t.ts[order], t.late[order]
    on_time = ts[~late]
    behind = np.maximum.accumulate(on_time) - on_time
    assert behind.max() <= work.manifest.max_disorder_ms
    assert behind.max() > 0  # there is disorder to cope with


def check_late(work: Workload, messages: list[Message], classes: Classified) -> int:
    """Assert each intended-late sample trails an earlier message on its key by late_guard_ms."""
    spec = work.spec
    newest: dict[bytes, int] = defaultdict(lambda: -1)  # per key, over earlier messages
    late_seen = 0
    for m, c in zip(messages, classes, strict=True):
        samples = valid_samples(c)
        for s in samples:
            if s["ts"] <= m.timestamp_ms - spec.late_by_ms:  # only intended-late ones are this old
                late_seen += 1
                assert s["ts"] + spec.late_guard_ms <= newest[m.key]
        on_time = [s["ts"] for s in samples if s["ts"] > m.timestamp_ms - spec.late_by_ms]
        if on_time:
            newest[m.key] = max(newest[m.key], *on_time)
    assert late_seen == work.manifest.intended_late_samples
    return late_seen


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_intended_late_samples_are_behind_an_earlier_message_on_their_key(encoding: str) -> None:
    assert check_late(*workload(encoding)) > 0


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_late_samples_under_sparse_traffic(encoding: str) -> None:
    """About one sample per key every 30 s: the late rule must find an earlier message on the
    key, not assume there is one."""
    spec = full_spec(
        encoding, samples=60, duration_s=300.0, late_fraction=0.5, malformed=MalformedCounts()
    )
    work = generate(spec)
    messages = list(work.messages())
    late = check_late(work, messages, [classify(m) for m in messages])
    assert 0 < late < 30  # not every wish can be granted


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_mismatched_keys_and_batch_grouping(encoding: str) -> None:
    work, messages, classes = workload(encoding)
    t, plan = work.truth, work.plan
    assert work.manifest.mismatched_key_samples == int(t.mismatched.sum()) > 0
    valid = [(m, c) for m, c in zip(messages, classes, strict=True) if all(r is None for r, _ in c)]
    for i, (m, c) in enumerate(valid):
        idx = plan.sample_order[plan.bounds[i] : plan.bounds[i + 1]]
        assert len(idx) == len(c) <= (1 if encoding == "single" else work.spec.batch_size)
        if encoding == "columnar":
            assert len({(*identity(s), s["instance"]) for s in valid_samples(c)}) == 1
        # A sample's own key differs from the message key exactly when it is mismatched.
        wrong = [f"{s['service']}|{s['region']}".encode() != m.key for s in valid_samples(c)]
        assert wrong == t.mismatched[idx].tolist()


def test_cumulative_counters_are_monotone_between_resets() -> None:
    t = generate_columns(full_spec("single", samples=20_000))
    cum = t.kind == CUMULATIVE
    stream = t.series_key[cum].astype(np.int64) * t.spec.instances + t.instance[cum]
    order = np.lexsort((t.ts[cum], stream))
    s, ts, v = stream[order], t.ts[cum][order], t.value[cum][order]
    same = s[1:] == s[:-1]
    assert (ts[1:][same] > ts[:-1][same]).all()  # distinct readings per instance
    drop = same & (v[1:] < v[:-1])
    assert drop.any() and (v[1:][drop] == 0).all()  # the only decreases are resets to 0
    assert (v == np.round(v)).all() and (v >= 0).all()


def test_value_distributions_are_plausible() -> None:
    t = generate_columns(WorkloadSpec(samples=50_000))
    kind = t.kind
    timers = t.value[kind == 0]
    assert timers.min() >= 0 and 2 < np.median(timers) < 200
    delta = t.value[kind == 2]
    assert (delta >= 0).all() and (delta == np.round(delta)).all()
    per_series = [np.median(t.value[(t.series_key == s)]) for s in range(5)]
    assert len(set(per_series)) == 5  # series differ


def test_default_spec_is_demo_sized() -> None:
    work = generate(WorkloadSpec(samples=10_000))
    assert 200 <= work.manifest.series <= 500
    assert work.manifest.producer_keys == 40
    labelled = [s for s in work.truth.series if s.labels]
    assert labelled and all(1 <= len(s.labels) <= 2 for s in labelled)
    assert WorkloadSpec().duration_s == 300.0


def test_invalid_specs_are_rejected() -> None:
    for bad in (
        {"services": 0},
        {"late_fraction": 1.5},
        {"encoding": "xml"},
        {"late_by_ms": 10_000},
        {"oversize_bytes": 1_000},
        {"services": 1, "regions": 1, "mismatched_key_fraction": 0.1},
    ):
        with pytest.raises(ConfigError):
            WorkloadSpec(**bad)
    with pytest.raises(ConfigError):
        generate_columns(WorkloadSpec(samples=10_000_000, services=1, regions=1, duration_s=10))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    encoding=st.sampled_from(ENCODINGS),
    samples=st.integers(0, 400),
    services=st.integers(1, 3),
    late=st.sampled_from([0.0, 0.05]),
    mismatched=st.sampled_from([0.0, 0.1]),
    bad=st.integers(0, 2),
    seed=st.integers(0, 2**32),
)
def test_counts_hold_for_arbitrary_specs(
    encoding: str, samples: int, services: int, late: float, mismatched: float, bad: int, seed: int
) -> None:
    spec = WorkloadSpec(
        seed=seed,
        services=services,
        regions=2,
        samples=samples,
        duration_s=90,
        encoding=encoding,  # type: ignore[arg-type]
        late_fraction=late,
        mismatched_key_fraction=mismatched,
        malformed=MalformedCounts.each(bad),
        oversize_bytes=MIB + 1,
    )
    work = generate(spec)
    messages = list(work.messages())
    results = [r for m in messages for r in classify(m)]
    man = work.manifest
    assert len(messages) == man.messages
    assert len(results) == man.samples_total == samples + 10 * bad
    assert sum(r is None for r, _ in results) == man.valid_samples == samples
    assert man.intended_late_samples <= round(late * samples)


def test_load_producer_is_java_compatible_and_fits_oversize_messages() -> None:
    conf = producer_config("localhost:9092", {**LOAD_PRODUCER, "linger.ms": 5})
    assert conf["partitioner"] == "murmur2_random"
    assert conf["enable.idempotence"] is True
    assert conf["message.max.bytes"] > WorkloadSpec().oversize_bytes
    assert conf["linger.ms"] == 5
    assert conf["delivery.report.only.error"] is True
    # The pipeline's own producer defaults still apply where load generation says nothing.
    assert conf["reconnect.backoff.max.ms"] == producer_config("x:1")["reconnect.backoff.max.ms"]


# -- partitioners and keys: what `metrics-pipeline load --partitioner/--key-format` sends ------

# |int32(FNV-1a)| of Go's hash/fnv for these keys: the vectors librdkafka's fnv1a test checks.
GO_FNV1A_ABS = {
    b"kafka": 0x0D33C4E1,
    b"giberish123456789": 0x77A58295,
    b"1234": 0x023BDD03,
    b"": 0x7EE3623B,
}


def as_int32(unsigned: int) -> int:
    return unsigned - 2**32 if unsigned >= 2**31 else unsigned


def test_fnv1a_matches_go_and_sarama_takes_the_absolute_remainder() -> None:
    assert fnv1a_32(b"") == 0x811C9DC5  # the FNV offset basis
    for key, expected in GO_FNV1A_ABS.items():
        assert abs(as_int32(fnv1a_32(key))) == expected
    keys = [f"svc-{i}|region-{i % 5}".encode() for i in range(200)]
    for key in keys:
        # Go's % keeps the dividend's sign, like C's fmod; sarama then negates a negative result.
        assert sarama_hash_partition(key, 7) == abs(int(math.fmod(as_int32(fnv1a_32(key)), 7)))
    # Not Java's rule (mask the sign bit, then the remainder): they differ for negative hashes.
    assert any((fnv1a_32(k) & 0x7FFFFFFF) % 7 != sarama_hash_partition(k, 7) for k in keys)


def test_partition_of_each_choice() -> None:
    key = b"checkout|eu-west-1"
    assert partition_of(PARTITIONERS["murmur2_random"], key, 8) == owner_partition(key, 8)
    assert partition_of(PARTITIONERS["consistent_random"], key, 8) == zlib.crc32(key) % 8
    assert partition_of(PARTITIONERS["fnv1a"], key, 8) == sarama_hash_partition(key, 8)
    assert partition_of(PARTITIONERS["consistent_random"], b"", 8) is None  # spread like null
    assert partition_of(PARTITIONERS["random"], key, 8) is None
    assert partition_of(PARTITIONERS["null-key"], key, 8) is None
    assert PARTITIONERS["fnv1a"].librdkafka == "fnv1a_random"
    assert not PARTITIONERS["null-key"].keyed
    with pytest.raises(ConfigError, match="murmur2_random"):
        partitioner_choice("murmur3")


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_rekeying_changes_keys_only(encoding: str) -> None:
    spec = WorkloadSpec(seed=3, services=2, regions=2, samples=2_000, encoding=encoding,
                        malformed=MalformedCounts.each(1))  # fmt: skip
    original = list(build_messages(spec))
    assert list(rekeyed(original, "service-region")) == original
    constant = list(rekeyed(original, "constant"))
    assert {m.key for m in constant} == {b"metrics"}
    by_instance = list(rekeyed(original, "instance"))
    checked = 0
    for before, after in zip(original, by_instance, strict=True):
        assert (after.value, after.timestamp_ms) == (before.value, before.timestamp_ms)
        try:
            doc = orjson.loads(before.value)
        except orjson.JSONDecodeError:
            continue  # a malformed message: keyed by whatever instance its bytes hold
        first = doc[0] if isinstance(doc, list) else doc
        if isinstance(first, dict) and isinstance(first.get("instance"), str):
            assert after.key == first["instance"].encode()
            checked += 1
    assert checked >= len(original) - spec.malformed.total
    with pytest.raises(ConfigError):
        list(rekeyed(original, "hostname"))  # type: ignore[arg-type]
