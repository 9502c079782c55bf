"""librdkafka's own log lines, routed through structlog without flooding.

A client that cannot reach its broker logs the same complaint every second or so (per broker
thread, per client); a process has several clients. Each distinct complaint is logged once per
`interval` with the number of repeats it stood for, and the latest warning is kept so a failure
message can say what librdkafka last saw (a refused connection, a TLS handshake, SASL).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Final

import structlog

#: Numbers (ports, counts, milliseconds) vary between repeats of one complaint.
_VARYING: Final = re.compile(r"\d+")
_SUPPRESSED: Final = re.compile(r",? ?\(?\d+ identical error\(s\) suppressed\)?")
#: "FAIL [rdkafka#producer-1] [thrd:host:port/bootstrap]: host:port/bootstrap: " before the news.
_PREFIX: Final = re.compile(r"^.*\]: (?:\S+/\S+: )?")

log = structlog.get_logger("librdkafka")


class RateLimitedLibrdkafkaLogs(logging.Handler):
    """A logging handler for the `logger` client setting of confluent-kafka."""

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__(level=logging.INFO)
        self.interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}  # complaint → (last logged, repeats)
        self.last_warning: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        text = _SUPPRESSED.sub("", record.getMessage()).strip()
        key = _VARYING.sub("#", text)
        now = time.monotonic()
        with self._lock:
            if record.levelno >= logging.WARNING:
                self.last_warning = _PREFIX.sub("", text)
            logged_at, repeats = self._last.get(key, (float("-inf"), 0))
            if now - logged_at < self.interval:
                self._last[key] = (logged_at, repeats + 1)
                return
            self._last[key] = (now, 0)
        level = record.levelname.lower()
        fields = {"repeats": repeats} if repeats else {}
        getattr(log, level if level in ("debug", "info", "warning", "error") else "error")(
            text, **fields
        )


_handler = RateLimitedLibrdkafkaLogs()
_logger = logging.getLogger("pipeline.librdkafka")
_logger.addHandler(_handler)
_logger.setLevel(logging.INFO)
_logger.propagate = False


def librdkafka_logger() -> logging.Logger:
    """The `logger` every client is configured with."""
    return _logger


def last_librdkafka_warning() -> str | None:
    """The latest warning or error any client of this process logged (None if none)."""
    return _handler.last_warning


def forget_librdkafka_warning() -> None:
    """Start afresh before a check whose failure message quotes the last warning."""
    _handler.last_warning = None
