"""Field types of settings: durations written as text ("250ms", "10s", "1m"), milliseconds inside.

A bare number is refused (a file's `resolution: 10` would be a trap); a dump (config show,
model_dump, settings as env vars) gives the text back, so it reads back to the same value.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from pipeline.core.durations import format_duration, parse_duration_ms
from pipeline.errors import ConfigError


class _Millis(int):
    """Milliseconds given in code (`duration("10s")`); never what a file, env var or flag holds."""


def duration(text: str) -> int:
    """A duration written in code (a default, a setting built by a program), for a Duration
    field: bare numbers are refused there, as a file's `resolution: 10` would be a trap."""
    return _Millis(_duration_or_off_ms(text))


def is_duration(text: str) -> bool:
    """Whether a Duration field would take `text`."""
    try:
        duration_setting_ms(text)
    except ValueError:
        return False
    return True


def duration_setting_ms(value: Any) -> Any:
    """A duration setting's milliseconds from its text ("250ms", "10s", "1m", ...)."""
    if isinstance(value, _Millis):
        if value <= 0:
            raise ValueError("a duration must be longer than 0")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, str):
        if isinstance(value, int | float):
            raise ValueError(f"{value} has no unit: write e.g. {value}s, {value}ms or {value}m")
        raise ValueError(f"not a duration: {value!r} (use e.g. 250ms, 10s, 1m, 5m, 1h, 1d)")
    if value.strip().isdigit():
        number = value.strip()
        raise ValueError(f"{number} has no unit: write e.g. {number}s or {number}ms")
    try:
        return parse_duration_ms(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def _duration_or_off_ms(value: Any) -> Any:
    if value == 0 and isinstance(value, _Millis):
        return 0
    if isinstance(value, str) and value.strip() in ("0", "0s", "0ms"):
        return 0
    return duration_setting_ms(value)


_AS_TEXT = PlainSerializer(format_duration, return_type=str)

#: A duration setting, milliseconds inside; read from and dumped as text ("10s").
Duration = Annotated[int, BeforeValidator(duration_setting_ms), _AS_TEXT]
#: A duration that "0s" (or "0") turns off: 0 ms.
DurationOrOff = Annotated[int, BeforeValidator(_duration_or_off_ms), _AS_TEXT]
#: A duration whose default (None) is derived from other settings.
OptionalDuration = Duration | None
