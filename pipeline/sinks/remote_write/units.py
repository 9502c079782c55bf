"""A series' `unit` → the Prometheus unit word for its name and the factor to base units.

Prometheus names carry the unit in base units (`_seconds`, `_bytes`); the values the pipeline
aggregates are in whatever unit the producer reported (`ms`, `MiBy`, ...). This module follows
OpenTelemetry's Prometheus-compatibility rules for the word, and additionally converts time and
size units to seconds and bytes (OpenTelemetry keeps `ms` as `_milliseconds`; Prometheus'
own convention asks for base units, and a dashboard mixing `ms` and `s` series is a classic bug):

- time: `ns`, `us`/`µs`, `ms`, `s`, `min`, `h`, `d` (and their long English names) → `seconds`;
- size: `B`/`By`, `KiB`/`KiBy`, `MiB`/`MiBy`, `GiB`/`GiBy`, `TiB`/`TiBy` (×1024ⁿ) and
  `kB`/`KBy`, `MB`/`MBy`, `GB`/`GBy`, `TB`/`TBy` (×1000ⁿ) → `bytes`;
- `{...}` annotations (UCUM's "curly braces", e.g. `{request}`) carry no unit and are dropped;
- `1` is a dimensionless ratio: `ratio`, for gauges and timers only (counters count things);
- `%` → `percent`; a few other UCUM units get their English name (`m` → `meters`,
  `Hz` → `hertz`, `Cel` → `celsius`, ...); anything else is sanitized to `[a-zA-Z0-9_]`;
- `a/b` → `<a>_per_<b>`, a time `b` as `second` and a size `b` as `byte` (`KiBy/ms` →
  `bytes_per_second` ×1,024,000, `{packet}/s` → `per_second`).

Unit-less (empty) stays unit-less. Conversion factors are exact fractions so that, e.g.,
milliseconds become seconds by a division by 1000 (correctly rounded), not a multiplication
by the inexact double 0.001.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

_SECOND = Fraction(1)
_TIME: dict[str, Fraction] = {
    "ns": Fraction(1, 10**9),
    "us": Fraction(1, 10**6),
    "µs": Fraction(1, 10**6),
    "μs": Fraction(1, 10**6),  # Greek mu, not the micro sign
    "ms": Fraction(1, 10**3),
    "s": _SECOND,
    "min": Fraction(60),
    "h": Fraction(3600),
    "d": Fraction(86400),
    "nanoseconds": Fraction(1, 10**9),
    "microseconds": Fraction(1, 10**6),
    "milliseconds": Fraction(1, 10**3),
    "seconds": _SECOND,
    "minutes": Fraction(60),
    "hours": Fraction(3600),
    "days": Fraction(86400),
}
# Exact spellings only: `Mb` and `kb` are megabits and kilobits to many, so they are not bytes.
_SIZE: dict[str, Fraction] = {"B": Fraction(1), "By": Fraction(1), "bytes": Fraction(1)}
for _power, _prefix in enumerate("KMGT", start=1):
    _SIZE[f"{_prefix}iB"] = _SIZE[f"{_prefix}iBy"] = Fraction(1024**_power)
    for _decimal in {_prefix, _prefix.lower()} if _prefix == "K" else {_prefix}:
        _SIZE[f"{_decimal}B"] = _SIZE[f"{_decimal}By"] = Fraction(1000**_power)
# Other UCUM units, as OpenTelemetry's Prometheus translation names them (values unchanged).
_WORDS = {
    "%": "percent",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
}
_ANNOTATION = re.compile(r"\{[^}]*\}")
_NOT_IN_WORD = re.compile(r"[^a-zA-Z0-9_]+")


@dataclass(frozen=True, slots=True)
class PromUnit:
    """`word`: the unit as it appears in the series name (`seconds`, `bytes_per_second`,
    `percent`, `""`); `factor`: multiply a raw value by it to get the value in `word`."""

    word: str
    factor: Fraction

    @property
    def multiply_divide(self) -> tuple[float, float]:
        """(m, d) with `value * m / d` the value in `word`: one correctly rounded operation for
        the usual factors (`ms`: × 1 / 1000, `MiBy`: × 1048576 / 1), exact for unit-less."""
        return float(self.factor.numerator), float(self.factor.denominator)

    def convert(self, value: float) -> float:
        m, d = self.multiply_divide
        return value * m / d


NO_UNIT = PromUnit("", Fraction(1))


def _single(unit: str) -> PromUnit:
    """One unit without `/`: its word and factor."""
    unit = _ANNOTATION.sub("", unit).strip()
    if not unit:
        return NO_UNIT
    if unit in _TIME:
        return PromUnit("seconds", _TIME[unit])
    if unit in _SIZE:
        return PromUnit("bytes", _SIZE[unit])
    if unit in _WORDS:
        return PromUnit(_WORDS[unit], Fraction(1))
    return PromUnit(_NOT_IN_WORD.sub("_", unit).strip("_"), Fraction(1))


@lru_cache(maxsize=4096)
def prom_unit(unit: str, metric_type: str) -> PromUnit:
    """The Prometheus unit of a series reported with `unit` and type `metric_type`
    (`timer`, `gauge`, `counter`); see the module docstring for the rules."""
    unit = unit.strip()
    if unit == "1":
        return PromUnit("ratio", Fraction(1)) if metric_type != "counter" else NO_UNIT
    numerator, slash, denominator = unit.partition("/")
    top = _single(numerator)
    if not slash:
        return top
    bottom = _single(denominator)
    if not bottom.word:
        return top
    # A rate of anything per time unit becomes per second, per size unit per byte.
    per = {"seconds": "second", "bytes": "byte"}.get(bottom.word, bottom.word)
    word = f"{top.word}_per_{per}" if top.word else f"per_{per}"
    return PromUnit(word, top.factor / bottom.factor)
