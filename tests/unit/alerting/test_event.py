"""Decoding anomaly events: what the bridge accepts, and the reason code for what it does not."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pipeline.alerting.event import InvalidEvent, decode_event
from pipeline.core.reasons import Reason
from tests.support.anomaly_events import anomaly, record

T0 = 1_767_225_600_000


def test_a_schema_valid_event_decodes() -> None:
    event = anomaly("ep", "firing", started_at=T0, labels={"pod": "a"})
    decoded = decode_event(record(event)[1], record(event)[0])
    assert decoded.episode_id == "ep" and decoded.series.labels == {"pod": "a"}
    assert decoded.key == "ep@firing"


def test_unknown_fields_of_a_newer_detector_are_tolerated() -> None:
    event = {**anomaly("ep", "firing", started_at=T0), "model_params": {"n": 30}}
    assert decode_event(orjson.dumps(event), b"ep@firing").episode_id == "ep"


def test_a_record_without_key_is_read_by_its_body() -> None:
    event = anomaly("ep", "resolved", started_at=T0, window_start=T0 + 60_000)
    assert decode_event(orjson.dumps(event), None).state == "resolved"


def change(**fields: Any) -> bytes:
    event = anomaly("ep", "firing", started_at=T0, window_start=T0 + 60_000)
    event.update(fields)
    return orjson.dumps(event)


@pytest.mark.parametrize(
    ("raw", "key", "reason", "says"),
    [
        (b"", b"k", Reason.MALFORMED_JSON, "empty"),
        (b"{not json", b"k", Reason.MALFORMED_JSON, ""),
        (b"[1, 2]", b"k", Reason.INVALID_ANOMALY, "object"),
        (change(state="pending"), b"ep@pending", Reason.INVALID_ANOMALY, "state"),
        (change(observed="high"), b"ep@firing", Reason.INVALID_ANOMALY, "observed"),
        (change(resolution="1 minute"), b"ep@firing", Reason.INVALID_ANOMALY, "resolution"),
        (change(episode_id=""), b"@firing", Reason.INVALID_ANOMALY, "episode_id"),
        (change(), b"other@firing", Reason.INVALID_ANOMALY, "Kafka key"),
        (change(window_end=T0 + 60_000), b"ep@firing", Reason.INVALID_ANOMALY, "empty"),
        (change(started_at=T0 + 120_000), b"ep@firing", Reason.INVALID_ANOMALY, "after"),
        (change(observed=None), b"ep@firing", Reason.INVALID_ANOMALY, "observed value"),
        (change(window_end=10**17), b"ep@firing", Reason.INVALID_ANOMALY, "9999"),
        (change(started_at=-5), b"ep@firing", Reason.INVALID_ANOMALY, "1970"),
    ],
)
def test_bad_records_get_a_reason(raw: bytes, key: bytes, reason: Reason, says: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(raw, key)
    assert caught.value.reason == reason
    assert says in caught.value.detail
