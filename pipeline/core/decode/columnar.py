"""Columnar series batches: one series' identity once, parallel arrays `ts` and `value`.

The batch is validated as a whole (identity, instance, array types and lengths, timestamps);
only the checks that look at single values (finite, in range, sign of a delta counter, age) run
later per point, with every other sample of the consumed batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.core.columns import SampleColumns
from pipeline.core.decode.rejects import columnar_points
from pipeline.core.reasons import Reason
from pipeline.core.series import MetricKind
from pipeline.core.validate import (
    EXCERPT_BYTES,
    MAX_TS,
    NUMBER_TYPES,
    REQUIRED_FIELDS,
    TS_RULE,
    VALUE_RULE,
    Invalid,
    Reject,
    SampleValidator,
)

# (series id, ts, value, instance id, record offset, record time) of one accepted batch.
ColumnarPart = tuple[int, np.ndarray, np.ndarray, int, int, int]


def take_columnar(
    validator: SampleValidator,
    doc: dict[str, Any],
    offset: int,
    mtime: int,
    raw: bytes,
    parts: list[ColumnarPart],
    rejects: list[Reject],
) -> None:
    """Append the record's batch to `parts`, or one reject that accounts for all its points."""
    try:
        sid, ts_arr, val_arr, iid = read_columnar(validator, doc)
    except Invalid as bad:
        points = columnar_points(doc)
        rejects.append(Reject(offset, -1, bad.reason, bad.detail, raw[:EXCERPT_BYTES], points))
        return
    parts.append((sid, ts_arr, val_arr, iid, offset, mtime))


def read_columnar(
    validator: SampleValidator, doc: dict[str, Any]
) -> tuple[int, np.ndarray, np.ndarray, int]:
    """(series id, ts int64, value float64, instance id) of a batch, or Invalid."""
    missing = [f for f in REQUIRED_FIELDS if f not in doc]
    if missing:
        raise Invalid(Reason.MISSING_FIELD, f"missing {', '.join(missing)}")
    ts_list, val_list = doc["ts"], doc["value"]
    if not isinstance(val_list, list):
        raise Invalid(Reason.WRONG_TYPE, "columnar batch: value must be an array")
    if len(ts_list) != len(val_list):
        raise Invalid(Reason.LENGTH_MISMATCH, f"{len(ts_list)} timestamps, {len(val_list)} values")
    if not ts_list:
        raise Invalid(Reason.EMPTY_BATCH, "columnar batch without points")
    if not set(map(type, val_list)) <= NUMBER_TYPES:
        raise Invalid(Reason.WRONG_TYPE, "value must be an array of numbers")
    ts_arr = _timestamps(ts_list)
    try:
        val_arr = np.array(val_list, np.float64)
    except OverflowError:  # an integer beyond the float range
        raise Invalid(Reason.VALUE_OUT_OF_RANGE, VALUE_RULE) from None
    identity = validator.identity(
        doc["service"],
        doc["region"],
        doc["name"],
        doc["type"],
        doc.get("temporality"),
        doc.get("unit"),
        doc.get("labels"),
    )
    inst = doc.get("instance")
    iid = -1 if inst is None else validator.instance(inst)
    if inst is None and identity.kind is MetricKind.COUNTER_CUMULATIVE:
        raise Invalid(Reason.MISSING_INSTANCE, "cumulative counter without instance")
    return validator.series.intern(identity), ts_arr, val_arr, iid


def _timestamps(ts_list: list[Any]) -> np.ndarray:
    """A batch's timestamps as int64, integral floats included, or Invalid."""
    kinds = set(map(type, ts_list))
    rule = TS_RULE.replace("ts must be", "ts must hold")
    if not kinds <= NUMBER_TYPES:
        raise Invalid(Reason.WRONG_TYPE, rule)
    try:
        if float in kinds:  # below 2**42 every integer is exact in a float64
            as_float = np.array(ts_list, np.float64)
            if not (np.floor(as_float) == as_float).all():  # also false for NaN and inf
                raise Invalid(Reason.WRONG_TYPE, rule)
            if (as_float < 0).any() or (as_float >= MAX_TS).any():
                raise Invalid(Reason.WRONG_TYPE, rule)
            return as_float.astype(np.int64)
        ts_arr = np.array(ts_list, np.int64)
    except OverflowError:  # an integer beyond 64 bits (or the float range)
        raise Invalid(Reason.WRONG_TYPE, rule) from None
    if (ts_arr < 0).any() or (ts_arr >= MAX_TS).any():
        raise Invalid(Reason.WRONG_TYPE, rule)
    return ts_arr


def append_columnar(
    cols: SampleColumns, times: np.ndarray, parts: list[ColumnarPart]
) -> tuple[SampleColumns, np.ndarray]:
    """The row-wise samples and the batches' points merged, in partition order."""
    lengths = np.array([len(p[1]) for p in parts])
    pieces = [
        cols,
        SampleColumns(
            np.repeat(np.array([p[0] for p in parts], np.int32), lengths),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
            np.repeat(np.array([p[3] for p in parts], np.int32), lengths),
            np.repeat(np.array([p[4] for p in parts], np.int64), lengths),
            np.concatenate([np.arange(n, dtype=np.int32) for n in lengths]),
        ),
    ]
    all_times = np.concatenate([times, np.repeat(np.array([p[5] for p in parts]), lengths)])
    merged = SampleColumns.concat(pieces)
    order = np.lexsort((merged.index, merged.offset))
    return merged.take(order), all_times[order]
