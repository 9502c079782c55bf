"""Rollups → remote-write 1.0 bodies: hand-encoded protobuf equals the library's, snappy block
format, converted values, exact repeats sent once, metadata per family and round."""

from __future__ import annotations

import struct
from typing import Any

import cramjam
import numpy as np
import orjson
import pytest

from pipeline.sinks.remote_write import proto
from pipeline.sinks.remote_write.encode import request_body
from pipeline.sinks.remote_write.fields import parse
from pipeline.sinks.remote_write.metadata import MetadataSchedule
from pipeline.sinks.remote_write.rollup_encoder import RollupEncoder
from pipeline.sinks.remote_write.wire import label_bytes, series_head, timestamp_tail, varint


def rollup(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "series": {
            "service": "checkout",
            "region": "eu-west-1",
            "name": "http.server.duration",
            "type": "timer",
            "unit": "ms",
            "labels": {"method": "GET", "quantile": "q"},
        },
        "series_key": "checkout|eu-west-1|http.server.duration|timer|ms|method=GET",
        "resolution": "1m",
        "resolution_ms": 60_000,
        "window_start": 1_700_000_000_000,
        "window_end": 1_700_000_060_000,
        "count": 4,
        "sum": 10.0,
        "min": 1.0,
        "max": 4.0,
        "mean": 2.5,
        "rate": 4 / 60,
        "percentiles": {"p50": 2.5, "p99.9": 3.997},
        "digest": None,
    }
    body.update(overrides)
    return body


def decode(body: bytes) -> Any:
    return proto.WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))


def series_of(request: Any) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
    return [
        (
            {label.name: label.value for label in ts.labels},
            [(s.timestamp, s.value) for s in ts.samples],
        )
        for ts in request.timeseries
    ]


def test_a_timer_rollup_decodes_to_converted_named_samples_at_window_end() -> None:
    encoded = RollupEncoder().encode(rollup())
    found = series_of(decode(request_body(encoded.payload)))
    assert encoded.samples == len(found) == 6
    by_name = {labels["__name__"] + labels.get("quantile", ""): pts for labels, pts in found}
    ts = 1_700_000_060_000
    assert by_name == {
        "http_server_duration_seconds:1m_count_samples": [(ts, 4.0)],
        "http_server_duration_seconds:1m_sum_samples": [(ts, 0.01)],
        "http_server_duration_seconds:1m_min": [(ts, 0.001)],
        "http_server_duration_seconds:1m_max": [(ts, 0.004)],
        "http_server_duration_seconds:1m_quantiles0.5": [(ts, 0.0025)],
        "http_server_duration_seconds:1m_quantiles0.999": [(ts, 3.997 / 1000)],
    }
    for labels, _ in found:
        assert labels["service"] == "checkout" and labels["method"] == "GET"
        assert labels["exported_quantile"] == "q" and "resolution" not in labels


def test_flat_scheme_keeps_names_labels_and_raw_values() -> None:
    found = series_of(decode(request_body(RollupEncoder("flat").encode(rollup()).payload)))
    by_name = {labels["__name__"] + labels.get("quantile", ""): pts[0][1] for labels, pts in found}
    assert by_name == {
        "http_server_duration_count": 4.0,
        "http_server_duration_sum": 10.0,
        "http_server_duration_min": 1.0,
        "http_server_duration_max": 4.0,
        "http_server_duration_rate": 4 / 60,
        "http_server_duration0.5": 2.5,
        "http_server_duration0.999": 3.997,
    }
    assert {labels["resolution"] for labels, _ in found} == {"1m"}


def test_labels_are_sorted_by_name_on_the_wire() -> None:
    for labels, _ in series_of(decode(request_body(RollupEncoder().encode(rollup()).payload))):
        assert list(labels) == sorted(labels)


@pytest.mark.parametrize("ts", [1, 127, 128, 300_000, 1_700_000_060_000, 2**62])
def test_hand_encoding_equals_the_protobuf_library(ts: int) -> None:
    labels = (("__name__", "x"), ("a", "é" * 70))  # a label longer than 127 bytes
    head = series_head(label_bytes(labels), len(varint(ts)))
    mine = head + struct.pack("<d", 1.5)
    mine += timestamp_tail(ts)
    series = proto.TimeSeries(
        labels=[proto.Label(name=n, value=v) for n, v in labels],
        samples=[proto.Sample(value=1.5, timestamp=ts)],
    )
    assert mine == proto.WriteRequest(timeseries=[series]).SerializeToString()


def test_counters_ignore_percentiles_and_convert_increase_and_rate() -> None:
    body = rollup(percentiles={"p50": 1.0}, sum=3.0, rate=0.05)
    body["series"].update(type="counter", unit="KiBy", name="ingress")
    found = series_of(decode(request_body(RollupEncoder().encode(body).payload)))
    values = {labels["__name__"]: pts[0][1] for labels, pts in found}
    assert values == {
        "ingress_bytes_total:1m_count_samples": 4.0,
        "ingress_bytes_total:1m_increase": 3072.0,
        "ingress_bytes_total:1m_rate": 51.2,
    }


def test_a_batch_is_laid_out_by_shard_and_window_with_exact_repeats_sent_once() -> None:
    ends = [1_700_000_120_000, 1_700_000_060_000, 1_700_000_060_000, 1_700_000_060_000]
    counts = [4, 4, 4, 5]  # the 3rd repeats the 2nd exactly; the 4th conflicts with both
    raws = [orjson.dumps(rollup(window_end=e, count=c)) for e, c in zip(ends, counts, strict=True)]
    raws.insert(2, orjson.dumps(rollup(series_key="other", window_end=ends[0])))
    encoded = RollupEncoder().encode_batch(raws)
    assert not encoded.errors
    key_hash = np.array([0, 0, 1, 0, 0])  # "other" alone in shard 1
    layout = encoded.layout(key_hash, 2)
    assert layout.positions == [1, 4, 0, 2]  # shard 0 in window order, arrival order within
    assert layout.shard_ranges == [(0, 3), (3, 4)]
    assert layout.repeats == {0: [3]}  # the repeat shares the fate of the rollup it repeats
    assert layout.batch_indexes(0, 1) == [1, 3]
    found = series_of(decode(request_body(layout.body(0, 3))))
    assert len(found) == 3 * 6 == layout.samples(0, 3)
    count = "http_server_duration_seconds:1m_count_samples"
    assert [pts[0] for labels, pts in found if labels["__name__"] == count] == [
        (ends[1], 4.0), (ends[3], 5.0), (ends[0], 4.0)
    ]  # fmt: skip
    assert layout.requests(0, 3, 12) == [(0, 2), (2, 3)]
    assert layout.requests(0, 3, 5) == [(0, 1), (1, 2), (2, 3)]  # a rollup is never split


def test_timestamps_outside_the_template_range_are_encoded_exactly() -> None:
    ends = [1, 300_000, 1_700_000_060_000, 2**62]
    raws = [orjson.dumps(rollup(window_end=e, series_key=str(e))) for e in ends]
    encoded = RollupEncoder().encode_batch(raws)
    layout = encoded.layout(np.zeros(4, dtype=np.int64), 1)
    found = series_of(decode(request_body(layout.body(0, 4))))
    stamps = {pts[0][0] for _, pts in found}
    assert stamps == set(ends) and len(found) == 24
    assert {pts[0][1] for labels, pts in found if labels["__name__"].endswith("_min")} == {0.001}


def test_the_plan_is_rebuilt_when_the_percentiles_change_and_the_cache_is_bounded() -> None:
    encoder = RollupEncoder(cache_size=1)
    assert encoder.encode(rollup(percentiles={"p50": 1.0})).samples == 5
    assert encoder.encode(rollup(percentiles={"p50": 1.0, "p90": 2.0})).samples == 6
    assert encoder.encode(rollup(series_key="other")).samples == 6
    assert len(encoder._cache) == 1


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("series", None, TypeError),
        ("window_end", "soon", ValueError),
        ("window_end", 1.5, ValueError),
        ("window_end", -5, TypeError),
        ("count", None, ValueError),
        ("count", "4", ValueError),
    ],
)
def test_a_body_that_is_not_a_rollup_raises(field: str, value: Any, error: type) -> None:
    with pytest.raises(error):
        RollupEncoder().encode(rollup(**{field: value}))


@pytest.mark.parametrize("missing", ["series", "window_end", "count", "series_key", "percentiles"])
def test_a_body_missing_a_field_is_refused_with_its_name(missing: str) -> None:
    body = rollup()
    del body[missing]
    with pytest.raises(ValueError, match=f"`{missing}`"):
        RollupEncoder().encode(body)


def test_the_digest_is_cut_off_unread_and_other_layouts_parse_whole() -> None:
    whole = rollup(digest={"centroids": [{"m": 1.0, "c": 2.0}] * 50})
    cut = parse(orjson.dumps(whole))
    assert not isinstance(cut, Exception) and cut.count == 4
    first = orjson.dumps({"digest": {"n": 1}, **rollup(digest=None)})
    assert not isinstance(parse(first), Exception)
    labelled = rollup()
    labelled["series"]["labels"] = {"a": "1", "digest": "x"}
    found = parse(orjson.dumps(labelled))
    assert not isinstance(found, Exception) and b'"digest":"x"' in bytes(found.series)
    assert isinstance(parse(b'{"count": 1,"digest": ['), ValueError)
    assert isinstance(parse(b""), ValueError) and isinstance(parse(b"[1]"), ValueError)


def test_snappy_is_the_block_format_not_the_framed_one() -> None:
    body = request_body(RollupEncoder().encode(rollup()).payload)
    assert not body.startswith(b"\xff\x06\x00\x00sNaPpY")  # the framed stream's header
    with pytest.raises(Exception):  # noqa: B017 - any error: the framed decoder must refuse it
        cramjam.snappy.decompress(body)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_metadata_goes_with_the_first_acknowledged_request_of_each_round() -> None:
    clock = Clock()
    schedule = MetadataSchedule(600.0, clock)
    encoder = RollupEncoder()
    a, b = encoder.encode(rollup()), encoder.encode(rollup(series_key="b"))
    first = schedule.pending([a.plan, b.plan])
    request = decode(request_body(a.payload + b.payload, first.body))
    families = {m.metric_family_name: m for m in request.metadata}
    assert len(request.timeseries) == 12 and len(request.metadata) == 5  # once per family
    quantiles = families["http_server_duration_seconds:1m_quantiles"]
    assert proto.METRIC_TYPES[quantiles.type] == "GAUGE" and quantiles.unit == "seconds"
    assert "http.server.duration" in quantiles.help and "ms" in quantiles.help
    assert families["http_server_duration_seconds:1m_count_samples"].unit == ""
    # Not acknowledged (the request failed): still due.
    assert schedule.pending([a.plan]).families == first.families
    schedule.sent(first)
    assert schedule.pending([a.plan, b.plan]).body == b""
    clock.now = 600.0
    assert len(schedule.pending([b.plan]).families) == 5


def test_metadata_can_be_switched_off() -> None:
    plan = RollupEncoder().encode(rollup()).plan
    assert MetadataSchedule(None).pending([plan]).body == b""
