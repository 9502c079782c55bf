"""Bad input with exact counts per dead-letter reason code.

Each bad message is a standalone single-sample message (also under the batch encodings), so it
accounts for exactly one sample. Only the named defect is wrong in it; the rest is a plausible
sample of an existing series. The bytes are built when the message is emitted, so a plan with many
oversize messages costs no memory up front.

Which check catches what: malformed_json and non_finite_value fail JSON parsing with orjson (orjson
rejects NaN, Infinity and 1e999; the stdlib `json` module accepts the latter forms as non-finite
floats and rejects the malformed_json forms); wrong_type, missing_field, unknown_metric_type and
too_many_labels fail schema validation; negative_delta_counter, ts_too_old, ts_in_future and
oversize_message are schema-valid JSON and are caught only by the worker's semantic checks
(value sign for delta counters, ts relative to the Kafka message timestamp, message size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from pipeline.loadgen.spec import DELTA, Catalogue, MalformedCounts, Message, SeriesId, WorkloadSpec
from pipeline.loadgen.workload import rng_for

__all__ = ["NON_FINITE_TOKENS", "BadPlan", "bad_message", "plan_malformed"]

REASONS = MalformedCounts.reasons()
#: Value tokens of the non_finite_value messages, in rotation.
NON_FINITE_TOKENS = (b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999")
_REQUIRED = ("value", "ts", "name", "type", "service", "region")
_UNKNOWN_TYPES = ("histogram", "summary", "distribution")
_FALLBACK_DELTA = SeriesId("loadgen", "nowhere", "loadgen.negative", "counter", "delta", "1")


@dataclass(frozen=True, eq=False)
class BadPlan:
    """Bad messages in production order. Arrays of equal length m:

    now_ms: int64 message timestamp, epoch ms, non-decreasing. reason: int8 index into
    `MalformedCounts.reasons()`. series: int32 index into the catalogue (-1: synthetic delta counter
    when the spec has none). variant: int64 >= 0, selects among the forms of a reason.
    """

    now_ms: NDArray[np.int64]
    reason: NDArray[np.int8]
    series: NDArray[np.int32]
    variant: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.now_ms.shape[0])


def plan_malformed(spec: WorkloadSpec, cat: Catalogue) -> BadPlan:
    """Where the bad messages go: uniformly over the run, exact count per reason."""
    counts = spec.malformed.as_dict()
    reason = np.repeat(np.arange(len(REASONS), dtype=np.int8), [counts[r] for r in REASONS])
    m = len(reason)
    rng = rng_for(spec, "malformed")
    now = spec.start_ms + rng.integers(0, max(spec.duration_ms, 1), m, dtype=np.int64)
    series = rng.integers(0, len(cat.series), m).astype(np.int32)
    delta = np.flatnonzero(np.asarray(cat.kind) == DELTA).astype(np.int32)
    neg = reason == REASONS.index("negative_delta_counter")
    series[neg] = delta[rng.integers(0, len(delta), int(neg.sum()))] if len(delta) else -1
    variant = rng.integers(0, 1 << 30, m, dtype=np.int64)
    order = np.lexsort((np.arange(m), now))
    return BadPlan(now[order], reason[order], series[order], variant[order])


def bad_message(spec: WorkloadSpec, cat: Catalogue, plan: BadPlan, i: int) -> Message:
    """The i-th bad message of `plan`."""
    now, variant = int(plan.now_ms[i]), int(plan.variant[i])
    s = int(plan.series[i])
    sid = cat.series[s] if s >= 0 else _FALLBACK_DELTA
    fields: dict[str, Any] = sid.fields(variant % spec.instances)
    fields["ts"] = now
    fields["value"] = 1.0 if sid.type == "counter" else 12.5
    value = _BUILDERS[REASONS[int(plan.reason[i])]](spec, fields, variant)
    return Message(sid.key.encode(), value, now)


def _malformed_json(spec: WorkloadSpec, f: dict[str, Any], v: int) -> bytes:
    body = orjson.dumps(f)
    forms = (
        body[: 1 + v % (len(body) - 2)],  # truncated: a proper prefix of an object never parses
        b"\xff\xfe\x00not json" + body[:8],  # binary garbage, invalid UTF-8
        body[:-1] + b",}",  # trailing comma
        repr(f).encode(),  # Python dict repr: single quotes
    )
    return forms[v % len(forms)]


def _wrong_type(spec: WorkloadSpec, f: dict[str, Any], v: int) -> bytes:
    field = "value" if v % 2 == 0 else "ts"
    f[field] = str(f[field])  # a number sent as a string
    return orjson.dumps(f)


def _missing_field(spec: WorkloadSpec, f: dict[str, Any], v: int) -> bytes:
    del f[_REQUIRED[v % len(_REQUIRED)]]
    return orjson.dumps(f)


def _non_finite(spec: WorkloadSpec, f: dict[str, Any], v: int) -> bytes:
    # orjson cannot write non-finite numbers, so splice the token in by hand.
    del f["value"]
    return (
        orjson.dumps(f)[:-1] + b',"value":' + NON_FINITE_TOKENS[v % len(NON_FINITE_TOKENS)] + b"}"
    )


def _negative_delta(spec: WorkloadSpec, f: dict[str, Any], v: int) -> bytes:
    f["value"] = -float(1 + v % 100)
    return orjson.dumps(f)


def _ts_too_old(spec: WorkloadSpec, f: dict[str, Any], v: int) -> bytes:
    f["ts"] -= spec.bad_ts_offset_ms
    return orjson.dumps(f)


def _ts_in_future(spec: WorkloadSpec, f: dict[str, Any], v: int) -> bytes:
    f["ts"] += spec.bad_ts_offset_ms
    return orjson.dumps(f)


def _oversize(spec: WorkloadSpec, f: dict[str, Any], v: int) -> bytes:
    # A valid sample padded with insignificant whitespace: its only defect is its size.
    body = orjson.dumps(f)
    return body[:-1] + b" " * (spec.oversize_bytes - len(body)) + b"}"


def _unknown_type(spec: WorkloadSpec, f: dict[str, Any], v: int) -> bytes:
    f["type"] = _UNKNOWN_TYPES[v % len(_UNKNOWN_TYPES)]
    return orjson.dumps(f)


def _too_many_labels(spec: WorkloadSpec, f: dict[str, Any], v: int) -> bytes:
    f["labels"] = {f"l{i:02d}": "v" for i in range(17 + v % 4)}  # 17..20 labels, limit is 16
    return orjson.dumps(f)


_BUILDERS = {
    "malformed_json": _malformed_json,
    "wrong_type": _wrong_type,
    "missing_field": _missing_field,
    "non_finite_value": _non_finite,
    "negative_delta_counter": _negative_delta,
    "ts_too_old": _ts_too_old,
    "ts_in_future": _ts_in_future,
    "oversize_message": _oversize,
    "unknown_metric_type": _unknown_type,
    "too_many_labels": _too_many_labels,
}
assert set(_BUILDERS) == set(REASONS)
