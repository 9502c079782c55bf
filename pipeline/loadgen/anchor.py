"""Where generated event time starts: just behind now by default, so what the demo and `load`
produce is accepted by a running Prometheus (remote-write refuses samples far in the past) and
an Alertmanager; or a fixed moment, to repeat a run exactly."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

MINUTE_MS = 60_000


def event_start_ms(duration_s: float, start: datetime | None = None) -> int:
    """`start` (naive means UTC) in epoch ms, or, without one, the whole minute that lets
    `duration_s` of event time end at the latest at the current minute."""
    if start is not None:
        moment = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    now_minute = int(time.time() * 1000) // MINUTE_MS * MINUTE_MS
    return now_minute - math.ceil(duration_s * 1000 / MINUTE_MS) * MINUTE_MS
