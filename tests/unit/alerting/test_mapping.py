"""Event → alert: routing labels, sanitized series labels, annotations, times, the link."""

from __future__ import annotations

import orjson
import pytest

from pipeline.alerting.event import decode_event
from pipeline.alerting.labels import merge_series_labels, sanitize_label_name
from pipeline.alerting.mapping import AlertMapper, rfc3339
from pipeline.alerting.template import TemplateError, check_template, render
from tests.support.anomaly_events import anomaly, record, resolved

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def test_labels_route_and_annotations_explain() -> None:
    event = anomaly("ep-1", "firing", started_at=T0, window_start=T0 + 120_000)
    alert = AlertMapper().alert(decode_event(*reversed(record(event))))
    assert alert.labels == {
        "alertname": "MetricAnomaly",
        "service": "checkout",
        "region": "eu-west-1",
        "metric": "http.server.duration",
        "statistic": "p99",
        "severity": "critical",
        "resolution": "1m",
        "kind": "deviation",
    }
    a = alert.annotations
    assert a["episode_id"] == "ep-1" and a["detector"] == "robust/1.0.0"
    assert a["summary"] == (
        "checkout/eu-west-1: http.server.duration p99 above its expected range (critical)"
    )
    assert "812.5 ms is up against an expected 120 ms (normal range 80–160 ms)" in a["description"]
    assert (
        "score 3.25" in a["description"]
        and "anomalous since 2026-01-01T00:00:00" in (a["description"])
    )
    assert (a["observed"], a["expected"], a["lower"], a["upper"], a["score"]) == (
        "812.5",
        "120",
        "80",
        "160",
        "3.25",
    )
    # Firing: starts at the episode's start, ends TTL after it is sent.
    body = alert.payload(now_ms=T0 + 300_000, ttl_ms=240_000)
    assert body["startsAt"] == "2026-01-01T00:00:00.000+00:00"
    assert body["endsAt"] == rfc3339(T0 + 540_000)
    assert "generatorURL" not in body


def test_a_resolved_alert_ends_with_the_window_that_resolved_it() -> None:
    firing = anomaly("ep-2", "firing", started_at=T0)
    event = resolved(firing, windows_later=4)
    alert = AlertMapper().alert(decode_event(record(event)[1], record(event)[0]))
    body = alert.payload(now_ms=T0 + 10**9, ttl_ms=240_000)
    assert body["startsAt"] == rfc3339(T0)
    assert body["endsAt"] == rfc3339(T0 + 5 * 60_000)  # end of the 4th window after the first
    assert "back to normal at" in alert.annotations["description"]
    # Same identity as the firing alert: Alertmanager resolves that very alert.
    fired = AlertMapper().alert(decode_event(record(firing)[1], record(firing)[0]))
    assert alert.identity == fired.identity


def test_absence_has_its_own_kind_and_wording() -> None:
    event = anomaly("ep-3", "firing", started_at=T0, kind="absence", direction="down")
    alert = AlertMapper().alert(decode_event(record(event)[1], record(event)[0]))
    assert alert.labels["kind"] == "absence"
    assert alert.annotations["summary"].endswith("stopped reporting (critical)")
    assert alert.annotations["description"].startswith("No p99 data since 2026-01-01")
    assert alert.annotations["observed"] == ""


def test_series_labels_are_sanitized_and_never_shadow_ours() -> None:
    labels = {
        "http.method": "GET",
        "1st": "a",
        "severity": "low",  # would reroute the alert
        "series_severity": "x",  # takes the renamed one's first choice
        "empty": "",
        "": "blank",
    }
    event = anomaly("ep-4", "firing", started_at=T0, labels=labels)
    mapper = AlertMapper(extra_labels={"team": "payments"})
    alert = mapper.alert(decode_event(record(event)[1], record(event)[0]))
    assert alert.labels["severity"] == "critical"
    assert alert.labels["team"] == "payments"
    extra = {
        k: v
        for k, v in alert.labels.items()
        if k
        not in mapper.alert(
            decode_event(*reversed(record(anomaly("ep-5", "firing", started_at=T0))))
        ).labels
    }
    assert extra == {
        "http_method": "GET",
        "_1st": "a",
        "series_severity": "x",
        "series_severity_": "low",
        "_": "blank",
    }
    # Same input, same labels: the alert's identity survives replays.
    again = mapper.alert(decode_event(record(event)[1], record(event)[0]))
    assert again.labels == alert.labels


@pytest.mark.parametrize(
    ("name", "clean"),
    [("ok_name", "ok_name"), ("a.b-c", "a_b_c"), ("9lives", "_9lives"), ("", "_"), ("é", "_")],
)
def test_sanitize_label_name(name: str, clean: str) -> None:
    assert sanitize_label_name(name) == clean


def test_merge_keeps_ours_whatever_the_series_says() -> None:
    ours = {"alertname": "A", "service": "s"}
    merged = merge_series_labels(ours, {"alertname": "B", "service": "t", "series_service": "u"})
    assert merged["alertname"] == "A" and merged["service"] == "s"
    assert merged["series_alertname"] == "B"
    assert {merged["series_service"], merged["series_service_"]} == {"t", "u"}


def test_dashboard_link_is_rendered_with_escaped_values() -> None:
    template = "https://grafana/d/x?var-service={service}&var-region={region}&from={started_at}"
    event = anomaly("ep-6", "firing", started_at=T0, service="check out&co")
    alert = AlertMapper(dashboard_template=template).alert(
        decode_event(record(event)[1], record(event)[0])
    )
    link = "https://grafana/d/x?var-service=check%20out%26co&var-region=eu-west-1&from=" + str(T0)
    assert alert.annotations["dashboard"] == link
    assert alert.generator_url == link


def test_a_template_that_fails_on_an_event_costs_the_link_not_the_alert() -> None:
    mapper = AlertMapper(dashboard_template="https://g/{service:d}")  # ints only: fails on str
    event = anomaly("ep-7", "firing", started_at=T0)
    alert = mapper.alert(decode_event(record(event)[1], record(event)[0]))
    assert "dashboard" not in alert.annotations and alert.generator_url is None
    assert mapper.template_errors == 1
    assert alert.labels["alertname"] == "MetricAnomaly"


def test_a_link_that_is_not_an_url_stays_an_annotation_only() -> None:
    # Alertmanager refuses a whole alert whose generatorURL is not a URI (HTTP 422).
    mapper = AlertMapper(dashboard_template="see dashboard {service}")
    event = anomaly("ep-8", "firing", started_at=T0)
    alert = mapper.alert(decode_event(record(event)[1], record(event)[0]))
    assert alert.annotations["dashboard"] == "see dashboard checkout"
    assert alert.generator_url is None


@pytest.mark.parametrize(
    "template",
    [
        "https://g/{series.__class__}",
        "https://g/{service[0]}",
        "https://g/{nope}",
        "https://g/{service!r}",
        "https://g/{service",
        "https://g/{}",
    ],
)
def test_unsafe_or_unknown_template_fields_are_refused_at_start(template: str) -> None:
    with pytest.raises(TemplateError):
        check_template(template)


def test_render_reports_errors_instead_of_raising_others() -> None:
    with pytest.raises(TemplateError):
        render("{window_start:%Y}", {"window_start": 5})
    assert render("{window_start:d}-{service}", {"window_start": 5, "service": "a/b"}) == "5-a%2Fb"


def test_the_payload_is_json_alertmanager_reads() -> None:
    event = anomaly("ep-9", "firing", started_at=T0, labels={"pod": "a-1"})
    alert = AlertMapper(dashboard_template="https://g/{episode_id}").alert(
        decode_event(record(event)[1], record(event)[0])
    )
    body = orjson.loads(orjson.dumps(alert.payload(T0, 60_000)))
    assert set(body) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    assert all(isinstance(v, str) for v in body["annotations"].values())
