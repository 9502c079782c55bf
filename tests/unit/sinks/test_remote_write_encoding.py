"""Rollups → remote-write 1.0 bodies: hand-encoded protobuf equals the library's, snappy block
format, converted values, exact repeats sent once, metadata per family and round."""

from __future__ import annotations

import struct
from typing import Any

import cramjam
import pytest

from pipeline.sinks.remote_write import proto
from pipeline.sinks.remote_write.encode import request_body, unique_rollups
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
    found = series_of(decode(request_body([encoded])))
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
    found = series_of(decode(request_body([RollupEncoder("flat").encode(rollup())])))
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
    for labels, _ in series_of(decode(request_body([RollupEncoder().encode(rollup())]))):
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
    found = series_of(decode(request_body([RollupEncoder().encode(body)])))
    values = {labels["__name__"]: pts[0][1] for labels, pts in found}
    assert values == {
        "ingress_bytes_total:1m_count_samples": 4.0,
        "ingress_bytes_total:1m_increase": 3072.0,
        "ingress_bytes_total:1m_rate": 51.2,
    }


def test_exact_repeats_are_sent_once_but_conflicts_are_kept() -> None:
    encoder = RollupEncoder()
    first, again, other = (encoder.encode(rollup(count=c)) for c in (4, 4, 5))
    assert unique_rollups([first, again, other]) == [first, other]


def test_the_plan_is_rebuilt_when_the_percentiles_change_and_the_cache_is_bounded() -> None:
    encoder = RollupEncoder(cache_size=1)
    assert encoder.encode(rollup(percentiles={"p50": 1.0})).samples == 5
    assert encoder.encode(rollup(percentiles={"p50": 1.0, "p90": 2.0})).samples == 6
    assert encoder.encode(rollup(series_key="other")).samples == 6
    assert len(encoder._cache) == 1


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("series", None, AttributeError),
        ("window_end", "soon", TypeError),
        ("window_end", 1.5, TypeError),
        ("count", None, TypeError),
        ("count", "4", TypeError),
    ],
)
def test_a_body_that_is_not_a_rollup_raises(field: str, value: Any, error: type) -> None:
    with pytest.raises(error):
        RollupEncoder().encode(rollup(**{field: value}))


@pytest.mark.parametrize("missing", ["series", "window_end", "count", "series_key", "percentiles"])
def test_a_body_missing_a_field_raises_key_error(missing: str) -> None:
    body = rollup()
    del body[missing]
    with pytest.raises(KeyError):
        RollupEncoder().encode(body)


def test_snappy_is_the_block_format_not_the_framed_one() -> None:
    body = request_body([RollupEncoder().encode(rollup())])
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
    request = decode(request_body([a, b], first.body))
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
