"""Bulk rendering gives the bytes `orjson.dumps` of the body dict gives, for any numbers."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.render import (
    ClosingColumns,
    exact_digests,
    json_tokens,
    render_bodies,
    series_prefix,
)
from pipeline.core.rollup import Rollup

NAMES = ["p50", "p90", "p99.9"]
RES = 10_000
SERIES = {"service": "api", "region": "eu-1", "name": "rpc.duration", "type": "timer", "labels": {}}

finite = st.floats(allow_nan=False, allow_infinity=False)
# Hand-picked edge cases of float formatting next to arbitrary finite floats.
edgy = st.one_of(
    finite,
    st.sampled_from(
        [0.0, -0.0, 1e16, 1e15, 1e-7, 5e-324, 0.1, 3.0, -2.5e-5, 1.7976931348623157e308]
    ),
)


@given(st.lists(edgy, max_size=200))
def test_float_tokens_are_orjson_of_each_python_float(values: list[float]) -> None:
    array = np.array(values, np.float64)
    assert json_tokens(array) == [orjson.dumps(v) for v in values]


@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=200))
def test_int_tokens_are_orjson_of_each_python_int(values: list[int]) -> None:
    assert json_tokens(np.array(values, np.int64)) == [orjson.dumps(v) for v in values]


@given(
    st.lists(
        st.lists(st.tuples(edgy, st.one_of(st.just(1), st.integers(1, 10**6))), max_size=30),
        min_size=1,
        max_size=8,
    )
)
def test_exact_digests_are_the_dict_form(groups: list[list[tuple[float, int]]]) -> None:
    means = np.array([m for g in groups for m, _ in g], np.float64)
    counts = np.array([c for g in groups for _, c in g], np.int64)
    sizes = [sum(c for _, c in g) for g in groups]
    ends = np.cumsum([len(g) for g in groups])
    firsts = ends - np.array([len(g) for g in groups])
    rendered = exact_digests(means, counts, firsts, ends, sizes, 200)
    for text, group, n in zip(rendered, groups, sizes, strict=True):
        expected = {
            "compression": 200,
            "n": n,
            "exact": True,
            "centroids": [{"m": m, "c": c} for m, c in group],
        }
        assert text == orjson.dumps(expected)


def reference_body(cols: ClosingColumns, k: int, series_key: str) -> bytes:
    """The rollup body as the aggregator built it before bulk rendering: a dict, then dumps."""
    count = int(cols.count[k])
    total = float(cols.sum[k])
    has_digest = bool(cols.has_digest[k])
    digest = orjson.loads(cols.digests[k]) if has_digest and cols.digests[k] else None
    start = int(cols.window_start[k])
    body: dict[str, Any] = {
        "series": SERIES,
        "series_key": series_key,
        "resolution": "10s",
        "resolution_ms": RES,
        "window_start": start,
        "window_end": start + RES,
        "count": count,
        "sum": total,
        "min": float(cols.min[k]),
        "max": float(cols.max[k]),
        "mean": total / count,
        "rate": (count if has_digest else total) / (RES / 1000.0),
        "percentiles": dict(zip(NAMES, cols.percentiles[k].tolist(), strict=True))
        if has_digest
        else {},
        "digest": digest,
    }
    return orjson.dumps(body)


window = st.tuples(
    st.integers(0, 2**40).map(lambda s: s * RES),
    st.integers(1, 10**9),
    edgy,
    edgy,
    edgy,
    st.lists(edgy, min_size=len(NAMES), max_size=len(NAMES)),
    st.booleans(),
)


@settings(max_examples=200)
@given(st.lists(window, min_size=1, max_size=10))
def test_bodies_are_the_dict_form(windows: list[tuple[Any, ...]]) -> None:
    key = "api|eu-1|rpc.duration|timer||"
    prefix = series_prefix(SERIES, key, "10s", RES)
    digest = b'{"compression":200,"n":1,"exact":true,"centroids":[{"m":1.5,"c":1}]}'
    cols = ClosingColumns(
        prefix=[prefix] * len(windows),
        window_start=np.array([w[0] for w in windows], np.int64),
        count=np.array([w[1] for w in windows], np.int64),
        sum=np.array([w[2] for w in windows], np.float64),
        min=np.array([w[3] for w in windows], np.float64),
        max=np.array([w[4] for w in windows], np.float64),
        percentiles=np.array([w[5] for w in windows], np.float64),
        has_digest=np.array([w[6] for w in windows], bool),
        digests=[digest if w[6] else None for w in windows],
    )
    bodies = render_bodies(cols, RES, NAMES)
    for k, body in enumerate(bodies):
        assert body == reference_body(cols, k, key)


def test_rollup_from_bytes_and_from_dict_are_the_same_rollup() -> None:
    body = {"count": 3, "sum": 1.5, "digest": None}
    from_dict = Rollup("k", "s|r", body)
    from_bytes = Rollup("k", "s|r", encoded=orjson.dumps(body), count=3)
    assert from_dict == from_bytes
    assert from_dict.encode() == from_bytes.encode()
    assert from_bytes.body == body
    assert from_dict.count == from_bytes.count == 3
    assert Rollup("k", "s|r", encoded=orjson.dumps(body)).count == 3
    with pytest.raises(ValueError):
        Rollup("k", "s|r")
