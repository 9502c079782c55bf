"""Checks that only need the columns, run vectorized over a whole consumed batch.

Finite values, the value range, the sign of delta counters, and timestamps against the time of
the record that carried them. A point failing several checks is rejected for the first.
"""

from __future__ import annotations

import numpy as np

from pipeline.core.columns import SampleColumns
from pipeline.core.decode.rejects import point_rejects
from pipeline.core.reasons import Reason
from pipeline.core.series import MetricKind, SeriesTable
from pipeline.core.validate import MAX_ABS_VALUE, VALUE_RULE, DecodeLimits, Reject


def check_columns(
    series: SeriesTable,
    limits: DecodeLimits,
    cols: SampleColumns,
    times: np.ndarray,
    rejects: list[Reject],
) -> SampleColumns:
    """The points that pass every check; rejects of the others are appended to `rejects`.

    times: each point's record time, epoch ms (-1 when the record carries none).
    """
    if len(cols) == 0:
        return cols
    kinds = series.kinds.view()[cols.series]
    has_time = times >= 0
    finite = np.isfinite(cols.value)
    checks = (
        (~finite, Reason.NON_FINITE_VALUE, "value is NaN or infinite"),
        (
            finite & (np.abs(cols.value) > MAX_ABS_VALUE),
            Reason.VALUE_OUT_OF_RANGE,
            VALUE_RULE,
        ),
        (
            (kinds == MetricKind.COUNTER_DELTA) & (cols.value < 0),
            Reason.NEGATIVE_DELTA_COUNTER,
            "delta counter increment < 0",
        ),
        (
            has_time & (cols.ts < times - limits.max_age_ms),
            Reason.TS_TOO_OLD,
            f"ts more than {limits.max_age_ms} ms before the message time",
        ),
        (
            has_time & (cols.ts > times + limits.max_future_ms),
            Reason.TS_IN_FUTURE,
            f"ts more than {limits.max_future_ms} ms after the message time",
        ),
    )
    bad_any = np.zeros(len(cols), dtype=bool)
    for mask, reason, detail in checks:
        hit = mask & ~bad_any
        if not hit.any():
            continue
        rejects.extend(point_rejects(cols.offset[hit], cols.index[hit], reason, detail))
        bad_any |= hit
    if bad_any.any():
        cols = cols.take(~bad_any)
    return cols
