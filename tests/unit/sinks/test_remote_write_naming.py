"""Rollup → Prometheus series names: both schemes, sanitizing, reserved labels, series_name()."""

from __future__ import annotations

import pytest

from pipeline.sinks.remote_write.naming import (
    NotExported,
    base_labels,
    base_name,
    label_name,
    metric_name,
    outputs,
    quantile_value,
    selector,
    series_name,
)


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
    own = {
        "quantile": "q",
        "service": "other",
        "__name__": "x",
        "exported_service": "taken",
        "empty": "",
        "resolution": "r",
    }
    labels = dict(base_labels("svc", "eu", None, own))
    assert labels["service"] == "svc"
    assert labels["exported_quantile"] == "q"
    assert labels["exported___name__"] == "x"
    # "exported_service" is an own label; the renamed "service" must not overwrite it.
    assert labels["exported_service"] == "taken"
    assert labels["exported_exported_service"] == "other"
    # Reserved in both schemes, so one own label gets one name whichever scheme is chosen.
    assert labels["exported_resolution"] == "r" and "resolution" not in labels
    assert "empty" not in labels
    assert dict(base_labels("svc", "eu", "1m", {}))["resolution"] == "1m"


@pytest.mark.parametrize(
    ("name", "kind", "unit", "base"),
    [
        ("http.server.duration", "timer", "ms", "http_server_duration_seconds"),
        ("process.memory.rss", "gauge", "MiBy", "process_memory_rss_bytes"),
        ("cpu.utilization", "gauge", "%", "cpu_utilization_percent"),
        ("queue.depth", "gauge", "1", "queue_depth_ratio"),
        ("queue.depth", "gauge", "{item}", "queue_depth"),
        ("queue.depth", "gauge", "", "queue_depth"),
        ("http.requests", "counter", "1", "http_requests_total"),
        ("http.requests", "counter", "{request}", "http_requests_total"),
        ("http.requests.total", "counter", "", "http_requests_total"),
        ("bytes.sent", "counter", "By", "bytes_sent_total"),  # the unit is already in the name
        ("egress", "counter", "KiBy", "egress_bytes_total"),
        ("response.time.seconds", "timer", "s", "response_time_seconds"),
        ("throughput", "gauge", "KiBy/s", "throughput_bytes_per_second"),
    ],
)
def test_base_names_carry_the_base_unit_and_total_for_counters(
    name: str, kind: str, unit: str, base: str
) -> None:
    assert base_name(name, kind, unit) == base


def test_timer_statistics_map_to_stream_aggregation_outputs() -> None:
    names = {
        stat: series_name("http.server.duration", "timer", "ms", stat, "1m")
        for stat in ("p99", "count", "sum", "min", "max")
    }
    assert names == {
        "p99": "http_server_duration_seconds:1m_quantiles",
        "count": "http_server_duration_seconds:1m_count_samples",
        "sum": "http_server_duration_seconds:1m_sum_samples",
        "min": "http_server_duration_seconds:1m_min",
        "max": "http_server_duration_seconds:1m_max",
    }
    assert (
        selector("http.server.duration", "timer", "ms", "p99.9", "5m")
        == 'http_server_duration_seconds:5m_quantiles{quantile="0.999"}'
    )


def test_gauges_send_a_mean_instead_of_a_sum() -> None:
    assert series_name("process.memory.rss", "gauge", "MiBy", "mean", "1h") == (
        "process_memory_rss_bytes:1h_avg"
    )
    with pytest.raises(NotExported, match="avg"):
        series_name("process.memory.rss", "gauge", "MiBy", "sum", "1h")


def test_counters_send_increase_rate_and_report_count_only() -> None:
    assert series_name("http.requests", "counter", "1", "sum", "1m") == (
        "http_requests_total:1m_increase"
    )
    assert (
        series_name("http.requests", "counter", "1", "rate", "1m") == "http_requests_total:1m_rate"
    )
    assert series_name("http.requests", "counter", "1", "count", "1m") == (
        "http_requests_total:1m_count_samples"
    )
    for stat in ("min", "max", "mean", "p99"):
        with pytest.raises(NotExported):
            series_name("http.requests", "counter", "1", stat, "1m")


def test_no_default_name_ends_in_a_cumulative_prometheus_suffix() -> None:
    keys = ("p50", "p99")
    for kind in ("timer", "gauge", "counter"):
        for out in outputs("x.count", kind, "ms", "10s", keys):
            assert not out.metric.endswith(("_count", "_sum", "_bucket", "_total")), out.metric
            assert out.family.type == "gauge"


def test_units_of_values_counts_and_rates() -> None:
    by_stat = {o.statistic: o for o in outputs("bytes.in", "counter", "KiBy", "1m")}
    assert by_stat["sum"].unit.convert(2.0) == 2048.0
    assert by_stat["rate"].unit.convert(2.0) == 2048.0  # KiB/s → bytes/s
    assert by_stat["count"].unit.convert(7.0) == 7.0  # a count of reports has no unit
    assert by_stat["sum"].family.unit == "bytes" and by_stat["rate"].family.unit == ""
    timer = {o.statistic: o for o in outputs("t", "timer", "ms", "1m", ("p99",))}
    assert timer["p99"].unit.convert(14.5) == 0.0145 and timer["p99"].family.unit == "seconds"
    assert timer["count"].family.unit == ""


def test_flat_scheme_keeps_the_earlier_names_and_raw_values() -> None:
    outs = outputs("http.server.duration", "timer", "ms", "1m", ("p50",), "flat")
    assert [(o.metric, o.quantile) for o in outs] == [
        ("http_server_duration_count", None),
        ("http_server_duration_sum", None),
        ("http_server_duration_min", None),
        ("http_server_duration_max", None),
        ("http_server_duration_rate", None),
        ("http_server_duration", "0.5"),
    ]
    assert all(o.unit.convert(14.5) == 14.5 for o in outs)
    with pytest.raises(NotExported):
        series_name("http.server.duration", "timer", "ms", "mean", "1m", "flat")


@pytest.mark.parametrize(("stat", "kind"), [("median", "timer"), ("count", "histogram")])
def test_unknown_statistics_and_types_are_errors(stat: str, kind: str) -> None:
    with pytest.raises(ValueError):
        series_name("x", kind, "", stat, "1m")
