"""Typed decoding of rollup records (schemas/rollup.schema.json) for the stages that read them.

msgspec checks every field's type in C; the few rules a type cannot state (a finite, ordered
min/max, positive centroid weights, a window of the stated resolution) are checked here too, so a
tier never merges a record that would poison a coarser window.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import msgspec

from pipeline.core.reasons import Reason

Positive = Annotated[float, msgspec.Meta(gt=0)]


class WireCentroid(msgspec.Struct, gc=False):
    m: float
    c: Positive


class WireDigest(msgspec.Struct, gc=False):
    compression: Annotated[int, msgspec.Meta(ge=1)]
    n: Annotated[int, msgspec.Meta(ge=1)]
    centroids: Annotated[list[WireCentroid], msgspec.Meta(min_length=1)]
    exact: bool = False


class WireSeries(msgspec.Struct, gc=False):
    service: str
    region: str
    name: str
    type: str
    labels: dict[str, str]
    unit: str | None = None
    temporality: str | None = None


class WireRollup(msgspec.Struct, gc=False):
    series: WireSeries
    series_key: str
    resolution_ms: Annotated[int, msgspec.Meta(ge=1)]
    window_start: int
    window_end: int
    count: Annotated[int, msgspec.Meta(ge=1)]
    sum: float
    min: float
    max: float
    digest: WireDigest | None = None
    mean: float = math.nan
    rate: float = math.nan
    percentiles: dict[str, float] = {}


_DECODER = msgspec.json.Decoder(WireRollup)


class RollupReject(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def decode_rollup(raw: bytes | None, resolution_ms: int) -> WireRollup:
    """The rollup in `raw`, which must be of `resolution_ms`; raises RollupReject otherwise."""
    if raw is None:
        raise RollupReject(Reason.MALFORMED_JSON, "empty record")
    try:
        rollup = _DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        raise RollupReject(Reason.INVALID_ROLLUP, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise RollupReject(Reason.MALFORMED_JSON, str(exc)) from None
    if rollup.resolution_ms != resolution_ms:
        raise RollupReject(
            Reason.WRONG_RESOLUTION,
            f"resolution_ms {rollup.resolution_ms}, this stage reads {resolution_ms}",
        )
    problem = _problem(rollup)
    if problem:
        raise RollupReject(Reason.INVALID_ROLLUP, problem)
    return rollup


def _problem(r: WireRollup) -> str:
    if r.window_start % r.resolution_ms or r.window_end != r.window_start + r.resolution_ms:
        return f"window [{r.window_start}, {r.window_end}) is not one aligned {r.resolution_ms} ms"
    if not all(map(math.isfinite, (r.sum, r.min, r.max))) or r.min > r.max:
        return "sum/min/max must be finite with min <= max"
    if r.series.type == "counter":
        return ""
    if r.digest is None:
        return f"a {r.series.type} rollup needs a digest"
    if not all(math.isfinite(c.m) and math.isfinite(c.c) for c in r.digest.centroids):
        return "digest centroids must be finite"
    return ""


def series_dict(series: WireSeries) -> dict[str, Any]:
    """The series object as the rollup schema writes it (optional fields only when set)."""
    return {f: v for f in series.__struct_fields__ if (v := getattr(series, f)) is not None}
