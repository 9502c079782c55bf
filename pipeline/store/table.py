"""Rollup bodies (rollups.schema.json) → one Arrow table, the columns of every stored file.

Percentiles are stored twice, on purpose: `percentiles` (a map, e.g. `percentiles['p99.9']`) holds
whatever list the pipeline is configured with, and the default ones are also plain columns
(`p50`, `p90`, `p95`, `p99`, `p99_9`; null when not configured, and for counters) because plain
columns are what SQL, plots and spreadsheets handle best and Parquet keeps their statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa

#: Percentiles that also get a plain column: name in the rollup body → column name.
FLAT_PERCENTILES: dict[str, str] = {
    "p50": "p50",
    "p90": "p90",
    "p95": "p95",
    "p99": "p99",
    "p99.9": "p99_9",
}

TIMESTAMP = pa.timestamp("ms", tz="UTC")

SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("series_key", pa.string(), nullable=False),
        pa.field("service", pa.string(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("temporality", pa.string()),
        pa.field("unit", pa.string(), nullable=False),
        pa.field("labels", pa.map_(pa.string(), pa.string()), nullable=False),
        pa.field("resolution", pa.string(), nullable=False),
        pa.field("resolution_ms", pa.int64(), nullable=False),
        pa.field("window_start", TIMESTAMP, nullable=False),
        pa.field("window_end", TIMESTAMP, nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field("sum", pa.float64(), nullable=False),
        pa.field("min", pa.float64(), nullable=False),
        pa.field("max", pa.float64(), nullable=False),
        pa.field("mean", pa.float64(), nullable=False),
        pa.field("rate", pa.float64(), nullable=False),
        *(pa.field(column, pa.float64()) for column in FLAT_PERCENTILES.values()),
        pa.field("percentiles", pa.map_(pa.string(), pa.float64()), nullable=False),
        pa.field("digest", pa.string()),
        # Where the row came from: for diagnostics of re-deliveries (`rollups_all`).
        pa.field("source_topic", pa.string(), nullable=False),
        pa.field("source_partition", pa.int32(), nullable=False),
        pa.field("source_offset", pa.int64(), nullable=False),
    ]
)


def to_table(
    keys: Sequence[str],
    bodies: Sequence[dict[str, Any]],
    sources: Sequence[tuple[str, int, int]],
) -> pa.Table:
    """One row per rollup, in the given order. `sources` are (topic, partition, offset).

    Raises KeyError/TypeError/pa.ArrowInvalid on a body that does not follow the contract.
    """
    series = [b["series"] for b in bodies]
    percentiles = [b["percentiles"] for b in bodies]
    columns: dict[str, Any] = {
        "key": keys,
        "series_key": [b["series_key"] for b in bodies],
        "service": [s["service"] for s in series],
        "region": [s["region"] for s in series],
        "name": [s["name"] for s in series],
        "type": [s["type"] for s in series],
        "temporality": [s.get("temporality") for s in series],
        "unit": [s.get("unit", "") for s in series],
        "labels": [s["labels"] for s in series],
        "resolution": [b["resolution"] for b in bodies],
    }
    for field in ("resolution_ms", "window_start", "window_end", "count"):
        columns[field] = [b[field] for b in bodies]
    for field in ("sum", "min", "max", "mean", "rate"):
        columns[field] = [float(b[field]) for b in bodies]
    for name, column in FLAT_PERCENTILES.items():
        columns[column] = [p.get(name) for p in percentiles]
    columns["percentiles"] = percentiles
    columns["digest"] = [
        None if b["digest"] is None else orjson.dumps(b["digest"]).decode() for b in bodies
    ]
    columns["source_topic"] = [s[0] for s in sources]
    columns["source_partition"] = [s[1] for s in sources]
    columns["source_offset"] = [s[2] for s in sources]
    return pa.table(
        [pa.array(columns[f.name], type=f.type) for f in SCHEMA],
        schema=SCHEMA,
    )
