"""Reported units → Prometheus unit words and base-unit values (OpenTelemetry's rules)."""

from __future__ import annotations

import pytest

from pipeline.sinks.remote_write.units import prom_unit


@pytest.mark.parametrize(
    ("unit", "kind", "word", "raw", "converted"),
    [
        ("ns", "timer", "seconds", 2.5e9, 2.5),
        ("us", "timer", "seconds", 1500.0, 0.0015),
        ("µs", "timer", "seconds", 1500.0, 0.0015),
        ("ms", "timer", "seconds", 14.5, 0.0145),
        ("s", "timer", "seconds", 3.0, 3.0),
        ("min", "gauge", "seconds", 2.0, 120.0),
        ("h", "gauge", "seconds", 1.5, 5400.0),
        ("B", "gauge", "bytes", 3.0, 3.0),
        ("By", "gauge", "bytes", 3.0, 3.0),
        ("KiB", "gauge", "bytes", 2.0, 2048.0),
        ("KiBy", "gauge", "bytes", 2.0, 2048.0),
        ("MiB", "gauge", "bytes", 1.0, 1048576.0),
        ("MiBy", "gauge", "bytes", 1.5, 1572864.0),
        ("GiB", "gauge", "bytes", 1.0, 1073741824.0),
        ("kB", "gauge", "bytes", 2.0, 2000.0),
        ("MB", "gauge", "bytes", 2.0, 2e6),
        ("GB", "gauge", "bytes", 2.0, 2e9),
        ("GBy", "gauge", "bytes", 2.0, 2e9),
        ("%", "gauge", "percent", 42.0, 42.0),
        ("1", "gauge", "ratio", 0.5, 0.5),
        ("1", "counter", "", 5.0, 5.0),
        ("{request}", "counter", "", 5.0, 5.0),
        ("", "gauge", "", 5.0, 5.0),
        ("Hz", "gauge", "hertz", 5.0, 5.0),
        ("By/s", "gauge", "bytes_per_second", 5.0, 5.0),
        ("KiBy/ms", "gauge", "bytes_per_second", 1.0, 1024000.0),
        ("{packet}/s", "gauge", "per_second", 5.0, 5.0),
        ("req/min", "gauge", "req_per_second", 60.0, 1.0),
        ("widgets", "gauge", "widgets", 5.0, 5.0),
        ("wid-gets!", "gauge", "wid_gets", 5.0, 5.0),
    ],
)
def test_units(unit: str, kind: str, word: str, raw: float, converted: float) -> None:
    got = prom_unit(unit, kind)
    assert got.word == word
    assert got.convert(raw) == converted


def test_milliseconds_divide_exactly_instead_of_multiplying_by_an_inexact_thousandth() -> None:
    # 0.001 is not a double; 14.7 * 0.001 != 0.0147 but 14.7 / 1000 is the nearest double.
    assert prom_unit("ms", "timer").convert(14.7) == 14.7 / 1000 == 0.0147


def test_bits_are_not_mistaken_for_bytes() -> None:
    assert prom_unit("Mb", "gauge").word == "Mb"
    assert prom_unit("Mb", "gauge").convert(3.0) == 3.0
