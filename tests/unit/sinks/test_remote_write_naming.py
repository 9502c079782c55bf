"""Rollup → Prometheus series: naming, sanitizing, reserved-label collisions, sorting."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.sinks.remote_write.naming import (
    SeriesNamer,
    base_labels,
    label_name,
    metric_name,
    quantile_value,
)


def rollup(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "series": {
            "service": "checkout",
            "region": "eu-west-1",
            "name": "http.server.duration",
            "type": "timer",
            "unit": "ms",
            "labels": {"method": "GET"},
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


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("http.server.duration", "http_server_duration"),
        ("rpc/client-latency", "rpc_client_latency"),
        ("ns:requests", "ns:requests"),
        ("5xx.rate", "_5xx_rate"),
        ("ok_name", "ok_name"),
        ("größe", "gr__e"),
    ],
)
def test_metric_names_follow_prometheus_rules(raw: str, clean: str) -> None:
    assert metric_name(raw) == clean


def test_label_names_drop_colons_and_leading_digits() -> None:
    assert label_name("a:b") == "a_b"
    assert label_name("9lives") == "_9lives"
    assert label_name("status_class") == "status_class"


@pytest.mark.parametrize(
    ("key", "value"),
    [("p50", "0.5"), ("p90", "0.9"), ("p99", "0.99"), ("p99.9", "0.999"), ("p99.99", "0.9999")],
)
def test_quantile_labels_are_exact_decimals(key: str, value: str) -> None:
    assert quantile_value(key) == value


@pytest.mark.parametrize("key", ["50", "p100", "p0", "pabc"])
def test_bad_percentile_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        quantile_value(key)


def test_own_labels_that_collide_with_reserved_ones_are_exported() -> None:
    labels = dict(
        base_labels(
            "svc",
            "eu",
            "10s",
            {
                "quantile": "q",
                "service": "other",
                "__name__": "x",
                "exported_service": "taken",
                "empty": "",
            },
        )
    )
    assert labels["service"] == "svc"
    assert labels["exported_quantile"] == "q"
    assert labels["exported___name__"] == "x"
    # "exported_service" is an own label; the renamed "service" must not overwrite it.
    assert labels["exported_service"] == "taken"
    assert labels["exported_exported_service"] == "other"
    assert "empty" not in labels


def test_a_timer_rollup_becomes_quantiles_and_statistics_at_window_end() -> None:
    samples = SeriesNamer().samples(rollup())
    by_name = {
        dict(labels)["__name__"] + dict(labels).get("quantile", ""): v for labels, _, v in samples
    }
    assert by_name == {
        "http_server_duration0.5": 2.5,
        "http_server_duration0.999": 3.997,
        "http_server_duration_count": 4.0,
        "http_server_duration_sum": 10.0,
        "http_server_duration_min": 1.0,
        "http_server_duration_max": 4.0,
        "http_server_duration_rate": 4 / 60,
    }
    assert {ts for _, ts, _ in samples} == {1_700_000_060_000}
    for labels, _, _ in samples:
        names = [name for name, _ in labels]
        assert names == sorted(names)
        assert dict(labels)["resolution"] == "1m"
        assert dict(labels)["method"] == "GET"


def test_counters_have_no_quantiles() -> None:
    body = rollup(percentiles={"p50": 1.0})
    body["series"]["type"] = "counter"
    names = {dict(labels)["__name__"] for labels, _, _ in SeriesNamer().samples(body)}
    assert names == {f"http_server_duration_{s}" for s in ("count", "sum", "min", "max", "rate")}


def test_label_sets_are_cached_per_series_and_still_complete() -> None:
    namer = SeriesNamer(cache_size=1)
    first = namer.samples(rollup(percentiles={"p50": 1.0}))
    second = namer.samples(rollup(percentiles={"p50": 1.0, "p90": 2.0}))
    assert len(first) == 6 and len(second) == 7


@pytest.mark.parametrize("missing", ["series", "window_end", "count", "series_key"])
def test_a_body_that_is_not_a_rollup_raises(missing: str) -> None:
    body = rollup()
    del body[missing]
    with pytest.raises(KeyError):
        SeriesNamer().samples(body)
