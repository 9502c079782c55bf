"""An anomaly event → the alert Alertmanager receives (labels, annotations, startsAt/endsAt).

Labels route and identify the alert: Alertmanager de-duplicates by the label set, so the labels
depend only on the series and the episode's fixed properties, never on a measured value.
Annotations carry what a responder reads. A firing alert's endsAt is set when it is sent
(now + the TTL), a resolved one's is the end of the window that resolved the episode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from pipeline.alerting.event import AnomalyEvent
from pipeline.alerting.labels import merge_series_labels
from pipeline.alerting.template import TemplateError, render


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert; `ends_at_ms` None means firing (endsAt = send time + TTL)."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at_ms: int
    ends_at_ms: int | None
    generator_url: str | None = None

    @property
    def identity(self) -> frozenset[tuple[str, str]]:
        """What Alertmanager de-duplicates on."""
        return frozenset(self.labels.items())

    def payload(self, now_ms: int, ttl_ms: int) -> dict[str, Any]:
        """The postableAlert JSON object of Alertmanager's v2 API."""
        ends = self.ends_at_ms
        if ends is None:
            # A start in the future (clock skew) must still come before the end.
            ends = max(now_ms, self.starts_at_ms) + ttl_ms
        body: dict[str, Any] = {
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": rfc3339(self.starts_at_ms),
            "endsAt": rfc3339(ends),
        }
        if self.generator_url is not None:
            body["generatorURL"] = self.generator_url
        return body


@dataclass(slots=True)
class AlertMapper:
    """Builds alerts the same way for every event: `alertname`, static `extra_labels`, and an
    optional dashboard link template (pipeline/alerting/template.py)."""

    alertname: str = "MetricAnomaly"
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    dashboard_template: str | None = None
    #: Events whose dashboard link could not be rendered (the alert goes out without it).
    template_errors: int = 0

    def alert(self, event: AnomalyEvent) -> Alert:
        s = event.series
        ours = {
            **self.extra_labels,
            "alertname": self.alertname,
            "service": s.service,
            "region": s.region,
            "metric": s.name,
            "statistic": event.statistic,
            "severity": event.severity,
            "resolution": event.resolution,
            "kind": event.kind,
        }
        # The series' labels may not shadow the routing labels, nor the static ones.
        labels = merge_series_labels({k: v for k, v in ours.items() if v}, s.labels)
        annotations = {
            "summary": summary(event),
            "description": description(event),
            "episode_id": event.episode_id,
            "detector": f"{event.detector.name}/{event.detector.version}",
            "observed": "" if event.observed is None else _number(event.observed),
            "expected": _number(event.expected),
            "lower": _number(event.lower),
            "upper": _number(event.upper),
            "score": _number(event.score),
            "direction": event.direction,
            "series_key": event.series_key,
        }
        link = self._link(event)
        if link is not None:
            annotations["dashboard"] = link
        ends = event.window_end if event.state == "resolved" else None
        return Alert(labels, annotations, event.started_at, ends, _generator_url(link))

    def _link(self, event: AnomalyEvent) -> str | None:
        if self.dashboard_template is None:
            return None
        try:
            return render(self.dashboard_template, template_fields(event))
        except TemplateError:
            self.template_errors += 1
            return None


def template_fields(event: AnomalyEvent) -> dict[str, object]:
    """What a dashboard template may use (TEMPLATE_FIELDS); times are epoch milliseconds."""
    s = event.series
    return {
        "episode_id": event.episode_id,
        "state": event.state,
        "kind": event.kind,
        "service": s.service,
        "region": s.region,
        "metric": s.name,
        "type": s.type,
        "unit": s.unit or "",
        "statistic": event.statistic,
        "resolution": event.resolution,
        "severity": event.severity,
        "direction": event.direction,
        "detector": event.detector.name,
        "series_key": event.series_key,
        "window_start": event.window_start,
        "window_end": event.window_end,
        "started_at": event.started_at,
        "ends_at": event.window_end if event.state == "resolved" else "now",
    }


def summary(event: AnomalyEvent) -> str:
    s = event.series
    where = f"{s.service}/{s.region}: {s.name}"
    if event.kind == "absence":
        return f"{where} stopped reporting ({event.severity})"
    trend = "above" if event.direction == "up" else "below"
    return f"{where} {event.statistic} {trend} its expected range ({event.severity})"


def description(event: AnomalyEvent) -> str:
    unit = f" {event.series.unit}" if event.series.unit else ""
    since = rfc3339(event.started_at)
    bounds = f"{_number(event.lower)}–{_number(event.upper)}{unit}"
    tail = (
        f"score {_number(event.score)} (1 = threshold), detector "
        f"{event.detector.name}/{event.detector.version}, {event.resolution} windows."
    )
    if event.kind == "absence":
        head = (
            f"No {event.statistic} data since {since}; expected "
            f"{_number(event.expected)}{unit} (normal range {bounds})"
        )
    else:
        assert event.observed is not None  # decode_event guarantees it for deviations
        head = (
            f"{event.statistic} {_number(event.observed)}{unit} is {event.direction} against "
            f"an expected {_number(event.expected)}{unit} (normal range {bounds}), "
            f"anomalous since {since}"
        )
    if event.state == "resolved":
        head += f"; back to normal at {rfc3339(event.window_end)}"
    return f"{head}; {tail}"


def rfc3339(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds")


def _number(value: float) -> str:
    return f"{value:.6g}"


def _generator_url(link: str | None) -> str | None:
    """The link as generatorURL when it is an absolute http(s) URL: Alertmanager refuses the
    whole alert when generatorURL is not a URI."""
    if link is None:
        return None
    try:
        parts = urlsplit(link)
    except ValueError:
        return None
    return link if parts.scheme in ("http", "https") and parts.netloc else None
