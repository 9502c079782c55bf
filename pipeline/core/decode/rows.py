"""Samples of single and array records (one JSON object per sample) → columns plus rejects.

Two paths. `typed_rows` takes the samples msgspec has already type-checked (wire.py) and, for
series and instances seen before, costs a few C-level maps and one dictionary lookup per
sample; only a sample that introduces a new series or instance (or lacks a required instance)
goes through the validator, so a burst of new series does not slow the rest. `object_rows`
takes any parsed JSON and asks the validator about every sample, so each gets its own reason.

Both return `kept`: the positions of the input samples that became rows, which the caller
uses to select the samples' record times.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

import msgspec
import numpy as np

from pipeline.core.columns import SampleColumns
from pipeline.core.decode.labels import LabelKeys, parsed_labels
from pipeline.core.decode.wire import WireSample
from pipeline.core.series import MetricKind
from pipeline.core.validate import Invalid, Reject, SampleValidator


def typed_rows(
    validator: SampleValidator,
    label_keys: LabelKeys,
    items: list[WireSample],
    offsets: np.ndarray,
    index: np.ndarray,
) -> tuple[SampleColumns, list[Reject], np.ndarray] | None:
    """Type-checked samples as columns, rejects for the invalid ones, and the kept positions;
    None if some sample's labels are not an object of strings (the general path's case).

    Rejects carry no excerpt yet: finish_rejects adds one, once per record and reason.
    """
    kept = np.arange(len(items))
    if not items:
        return SampleColumns.empty(), [], kept
    labels = label_keys.keys(list(map(_LABELS, items)))
    if labels is None:
        return None  # labels of another type: the general path gives each its reason
    # Same layout as the key SampleValidator.sample caches; C-level map/zip throughout.
    keys = zip(map(_IDENTITY, items), labels)  # noqa: B905 - repeat() has no len
    series_ids: list[int | None] = list(map(validator.lookup.get, keys))
    series = validator.series
    known = series.instances
    instance_ids = [-1 if n is None else known.get(n, -2) for n in map(_INSTANCE, items)]
    unknown: list[int] = []
    if None in series_ids or -2 in instance_ids:  # C-level scans; rare after warm-up
        unknown = [
            i
            for i, (sid, iid) in enumerate(zip(series_ids, instance_ids, strict=True))
            if sid is None or iid == -2
        ]
        sid_arr = np.array([-1 if sid is None else sid for sid in series_ids], np.int32)
    else:
        sid_arr = np.array(series_ids, np.int32)
    inst_arr = np.array(instance_ids, np.int32)
    without = (inst_arr == -1) & (sid_arr >= 0)
    if without.any():  # a known cumulative counter must name its instance
        missing = np.zeros(len(items), dtype=bool)
        kinds = series.kinds.view()[sid_arr[without]]
        missing[without] = kinds == MetricKind.COUNTER_CUMULATIVE
        if missing.any():
            unknown = sorted({*unknown, *np.flatnonzero(missing).tolist()})
    rejects: list[Reject] = []
    if unknown:
        dropped: list[int] = []
        for i in unknown:
            sample = msgspec.structs.asdict(items[i])
            sample["labels"] = parsed_labels(sample["labels"])
            try:
                series_ids[i], _, _, instance_ids[i] = validator.sample(sample)
            except Invalid as bad:
                rejects.append(Reject(int(offsets[i]), int(index[i]), bad.reason, bad.detail, b""))
                dropped.append(i)
        if dropped:
            keep = np.ones(len(items), dtype=bool)
            keep[dropped] = False
            kept = np.flatnonzero(keep)
            items = [items[i] for i in kept.tolist()]
            series_ids = [series_ids[i] for i in kept.tolist()]
            instance_ids = [instance_ids[i] for i in kept.tolist()]
            offsets, index = offsets[kept], index[kept]
    ts = np.fromiter(map(_TS, items), np.int64, len(items))
    values = np.fromiter(map(_VALUE, items), np.float64, len(items))
    if unknown:  # ids were filled in (and rows maybe dropped) above
        sid_arr = np.array(series_ids, np.int32)
        inst_arr = np.array(instance_ids, np.int32)
    return SampleColumns(sid_arr, ts, values, inst_arr, offsets, index), rejects, kept


def object_rows(
    validator: SampleValidator,
    items: list[Any],
    offsets: np.ndarray,
    index: np.ndarray,
    rejects: list[Reject],
) -> tuple[SampleColumns, np.ndarray]:
    """Any parsed samples as columns and the kept positions; rejects are appended to `rejects`.

    Rejects carry no excerpt yet: finish_rejects adds one, once per record and reason.
    """
    series: list[int] = []
    ts: list[int] = []
    value: list[float] = []
    instance: list[int] = []
    kept_list: list[int] = []
    for pos, (item, offset, idx) in enumerate(
        zip(items, offsets.tolist(), index.tolist(), strict=True)
    ):
        try:
            sid, t, v, iid = validator.sample(item)
        except Invalid as bad:
            rejects.append(Reject(offset, idx, bad.reason, bad.detail, b""))
            continue
        series.append(sid)
        ts.append(t)
        value.append(v)
        instance.append(iid)
        kept_list.append(pos)
    kept = np.array(kept_list, np.int64)
    columns = SampleColumns(
        np.array(series, np.int32),
        np.array(ts, np.int64),
        np.array(value, np.float64),
        np.array(instance, np.int32),
        offsets[kept],
        index[kept],
    )
    return columns, kept


_TS = attrgetter("ts")
_VALUE = attrgetter("value")
_IDENTITY = attrgetter("service", "region", "name", "type", "temporality", "unit")
_LABELS = attrgetter("labels")
_INSTANCE = attrgetter("instance")
