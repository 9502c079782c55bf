"""Rollup JSON rendered in bulk: the numbers of every closing window in a few orjson calls.

Building one dict per centroid and per rollup and dumping them cost ~70 µs per rollup, most of the
close. Here each numeric column of all closing windows is rendered by one `orjson.dumps` of a
numpy array and split into per-element tokens, and the bodies are spliced from those tokens with
fixed templates. The bytes are exactly what `orjson.dumps(body_dict)` gives (same key order; orjson
formats a numpy float64 or int64 as it formats the Python number; tests/unit/core/test_render.py),
so a replay, or the code before this module, emits byte-identical rollups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

_NUMPY = orjson.OPT_SERIALIZE_NUMPY

# Between two centroids: the end of one and the start of the next.
_CENTROID_PIECES = (b',"c":', b'},{"m":')
# The same where every count is 1 (all values distinct, the common case of a 10 s window): the
# means' JSON array with each comma replaced is the whole centroid list.
_SINGLE_SEPARATOR = b',"c":1},{"m":'
_ROLLUP = (
    b'%b%b,"window_end":%b,"count":%b,"sum":%b,"min":%b,"max":%b,"mean":%b,"rate":%b,'
    b'"percentiles":%b,"digest":%b}'
)


def json_tokens(array: np.ndarray) -> list[bytes]:
    """The JSON text of every element of an int64 or float64 array (flattened in C order)."""
    flat = np.ascontiguousarray(array).ravel()
    if not len(flat):
        return []
    return orjson.dumps(flat, option=_NUMPY)[1:-1].split(b",")


def exact_digests(
    run_values: np.ndarray,
    run_counts: np.ndarray,
    first_run: np.ndarray,
    last_run: np.ndarray,
    sizes: Sequence[int],
    compression: int,
) -> list[bytes]:
    """Serialized exact digests: group g is the runs first_run[g]..last_run[g] (one centroid per
    run of equal values, its mean and count) holding sizes[g] values.

    Each is the JSON of `{"compression", "n", "exact": true, "centroids": [{"m", "c"}, ...]}`.
    """
    counted = np.concatenate(([0], np.cumsum(run_counts != 1)))
    all_single = (counted[last_run] == counted[first_run]).tolist()
    head = b'{"compression":%d,"n":%%d,"exact":true,"centroids":[' % compression
    out: list[bytes] = []
    for a, b, n, single in zip(
        first_run.tolist(), last_run.tolist(), sizes, all_single, strict=True
    ):
        if b == a:
            out.append(head % n + b"]}")
        elif single:
            means = orjson.dumps(run_values[a:b], option=_NUMPY)[1:-1]
            out.append(
                b"".join((head % n, b'{"m":', means.replace(b",", _SINGLE_SEPARATOR), b',"c":1}]}'))
            )
        else:
            out.append(
                b"".join(
                    (
                        head % n,
                        b'{"m":',
                        *_centroid_pieces(run_values[a:b], run_counts[a:b]),
                        b"}]}",
                    )
                )
            )
    return out


def _centroid_pieces(means: np.ndarray, counts: np.ndarray) -> list[bytes]:
    """m0 ,"c": c0 },{"m": m1 ,"c": c1 (the text between `{"m":` and the closing `}`)."""
    n = len(means)
    pieces: list[bytes] = [b""] * (4 * n)
    pieces[0::4] = json_tokens(means)
    pieces[1::4] = [_CENTROID_PIECES[0]] * n
    pieces[2::4] = json_tokens(counts)
    pieces[3::4] = [_CENTROID_PIECES[1]] * n
    return pieces[:-1]


def series_prefix(
    series: dict[str, Any], series_key: str, resolution: str, resolution_ms: int
) -> bytes:
    """A rollup body up to its window_start value (the same for every window of a series)."""
    head = orjson.dumps(
        {
            "series": series,
            "series_key": series_key,
            "resolution": resolution,
            "resolution_ms": resolution_ms,
        }
    )
    return head[:-1] + b',"window_start":'


@dataclass(frozen=True, slots=True)
class ClosingColumns:
    """One row per closing window. sums: exact totals (timers, gauges: of values; counters: of
    increases). percentiles: (windows × quantiles), read only where has_digest. digests: the
    serialized digest where has_digest, else None."""

    prefix: list[bytes]
    window_start: np.ndarray
    count: np.ndarray
    sum: np.ndarray
    min: np.ndarray
    max: np.ndarray
    percentiles: np.ndarray
    has_digest: np.ndarray
    digests: list[bytes | None]


def render_bodies(
    cols: ClosingColumns, resolution_ms: int, percentile_names: Sequence[str]
) -> list[bytes]:
    """The JSON body of each closing window (schemas/rollup.schema.json)."""
    n = len(cols.prefix)
    if n == 0:
        return []
    count = cols.count.astype(np.int64)
    ints = json_tokens(
        np.column_stack((cols.window_start, cols.window_start + resolution_ms, count))
    )
    per_second = np.where(cols.has_digest, count, cols.sum) / (resolution_ms / 1000.0)
    floats = json_tokens(
        np.column_stack((cols.sum, cols.min, cols.max, cols.sum / count, per_second))
    )
    q = len(percentile_names)
    pct_template = b"{" + b",".join(orjson.dumps(name) + b":%b" for name in percentile_names) + b"}"
    pct = json_tokens(cols.percentiles) if q else []
    out: list[bytes] = []
    for k, (prefix, has_digest, digest) in enumerate(
        zip(cols.prefix, cols.has_digest.tolist(), cols.digests, strict=True)
    ):
        i, f = 3 * k, 5 * k
        out.append(
            _ROLLUP
            % (
                prefix,
                ints[i],
                ints[i + 1],
                ints[i + 2],
                floats[f],
                floats[f + 1],
                floats[f + 2],
                floats[f + 3],
                floats[f + 4],
                pct_template % tuple(pct[q * k : q * k + q]) if has_digest else b"{}",
                digest if has_digest and digest is not None else b"null",
            )
        )
    return out
