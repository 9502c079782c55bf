"""`plot`: one series from the store as a PNG — p50/p90/p99 over time and the rate below.

Each window is drawn as a step over [window_start, window_end), so a missing window shows as a
gap rather than a line interpolated across it. Times are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipeline.errors import PipelineError
from pipeline.store.query import QueryError, connect

#: Units that mean "a plain number" (UCUM "1", or none).
DIMENSIONLESS = ("", "1")


class PlotError(PipelineError):
    """Nothing (or more than one series) matches what was asked for."""


@dataclass(frozen=True)
class SeriesQuery:
    service: str
    region: str
    name: str
    resolution: str = "1m"
    since: datetime | None = None
    until: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)
    type: str | None = None


@dataclass
class SeriesData:
    """One series' windows on a regular grid of `resolution_ms`; NaN where a window is missing."""

    query: SeriesQuery
    series_key: str
    type: str
    unit: str
    labels: dict[str, str]
    resolution_ms: int
    edges: NDArray[np.datetime64]  # window starts, plus the last window's end
    p50: NDArray[np.float64]
    p90: NDArray[np.float64]
    p99: NDArray[np.float64]
    rate: NDArray[np.float64]
    windows: int

    @property
    def has_percentiles(self) -> bool:
        return bool(np.isfinite(self.p50).any())


def load_series(path: Path, query: SeriesQuery) -> SeriesData:
    """Read the one series matching `query` (raises PlotError naming the candidates otherwise)."""
    where = ["service = ?", "region = ?", "name = ?"]
    params: list[Any] = [query.service, query.region, query.name]
    if query.type:
        where.append("type = ?")
        params.append(query.type)
    for label, value in sorted(query.labels.items()):
        where.append("labels[?] = ?")
        params += [label, value]
    series_filter = " AND ".join(where)
    window_filter = ["resolution = ?"]
    window_params: list[Any] = [query.resolution]
    if query.since:
        window_filter.append("window_start >= ?")
        window_params.append(query.since)
    if query.until:
        window_filter.append("window_start < ?")
        window_params.append(query.until)
    con = connect(path)
    try:
        rows = con.execute(
            "SELECT series_key, type, unit, labels, resolution_ms, epoch_ms(window_start), "
            "p50, p90, p99, rate FROM rollups "
            f"WHERE {series_filter} AND {' AND '.join(window_filter)} "
            "ORDER BY series_key, window_start",
            params + window_params,
        ).fetchall()
        if not rows:
            stored = con.execute(
                "SELECT resolution, count(*) FROM rollups "
                f"WHERE {series_filter} GROUP BY resolution ORDER BY min(resolution_ms)",
                params,
            ).fetchall()
    except Exception as exc:  # duckdb.Error: a query of ours failing means a broken store
        raise QueryError(str(exc)) from exc
    finally:
        con.close()
    if not rows:
        raise PlotError(_nothing_found(query, stored))
    keys = sorted({r[0] for r in rows})
    if len(keys) > 1:
        listing = "\n  ".join(keys[:20])
        raise PlotError(
            f"{len(keys)} series match; narrow it with --label name=value or --type"
            f"{' (first 20 shown)' if len(keys) > 20 else ''}:\n  {listing}"
        )
    return _on_grid(query, rows)


def _nothing_found(query: SeriesQuery, stored: list[tuple[Any, ...]]) -> str:
    what = f"{query.service} / {query.region} / {query.name}"
    if not stored:
        return (
            f"no series {what} in the store; list them with: metrics-pipeline query "
            '"SELECT DISTINCT service, region, name, resolution FROM rollups"'
        )
    have = ", ".join(f"{res} ({n:,} windows)" for res, n in stored)
    span = " in the chosen time range" if query.since or query.until else ""
    return f"no {query.resolution} rollups of {what}{span}; stored: {have}"


def _on_grid(query: SeriesQuery, rows: list[tuple[Any, ...]]) -> SeriesData:
    series_key, kind, unit, labels, resolution_ms = rows[0][:5]
    starts = np.array([r[5] for r in rows], dtype=np.int64)
    first = int(starts[0])
    slot = (starts - first) // resolution_ms
    size = int(slot[-1]) + 2  # one more edge: the last window's end

    def column(index: int) -> NDArray[np.float64]:
        values = np.full(size, np.nan)
        values[slot] = np.array([np.nan if r[index] is None else r[index] for r in rows])
        values[-1] = values[-2]  # a step drawn "post" needs the last value at the last edge
        return values

    edges = (first + np.arange(size, dtype=np.int64) * resolution_ms).astype("datetime64[ms]")
    return SeriesData(
        query=query,
        series_key=series_key,
        type=kind,
        unit=unit or "",
        labels=dict(labels or {}),
        resolution_ms=int(resolution_ms),
        edges=edges,
        p50=column(6),
        p90=column(7),
        p99=column(8),
        rate=column(9),
        windows=len(rows),
    )


def render_png(data: SeriesData, out: Path) -> None:
    """Write the figure (PNG, 1320×780 px) to `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    if data.has_percentiles:
        fig, (top, bottom) = plt.subplots(
            2, 1, sharex=True, figsize=(11, 6.5), dpi=120, height_ratios=[3, 1.4]
        )
        _percentile_panel(top, data)
    else:
        fig, bottom = plt.subplots(1, 1, figsize=(11, 4.5), dpi=120)
    _rate_panel(bottom, data)
    locator = mdates.AutoDateLocator(tz="UTC")  # type: ignore[no-untyped-call]
    bottom.xaxis.set_major_locator(locator)
    formatter = mdates.ConciseDateFormatter(locator, tz="UTC")  # type: ignore[no-untyped-call]
    # Ticks between minutes read "00:01:15", not a bare "15" (10 s rollups).
    formatter.formats = ["%Y", "%b", "%d", "%H:%M", "%H:%M", "%H:%M:%S"]
    formatter.zero_formats = ["", "%Y", "%b", "%b-%d", "%H:%M", "%H:%M:%S"]
    bottom.xaxis.set_major_formatter(formatter)
    bottom.set_xlabel("time (UTC)")
    bottom.set_xlim(data.edges[0], data.edges[-1])
    # Header positions in inches from the top, whatever the figure's height.
    height = fig.get_figheight()
    fig.text(0.01, 1 - 0.1 / height, _title(data), fontsize=13, fontweight="bold", va="top")
    fig.text(0.01, 1 - 0.38 / height, _subtitle(data), fontsize=9.5, color="0.35", va="top")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / height))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    plt.close(fig)


def _percentile_panel(ax: Any, data: SeriesData) -> None:
    x = data.edges
    ax.fill_between(x, data.p50, data.p99, step="post", color="tab:blue", alpha=0.15, lw=0,
                    label="p50–p99 band")  # fmt: skip
    ax.step(x, data.p99, where="post", color="tab:red", lw=1.6, label="p99")
    ax.step(x, data.p90, where="post", color="tab:orange", lw=1.4, ls="--", label="p90")
    ax.step(x, data.p50, where="post", color="tab:blue", lw=1.8, label="p50")
    ax.set_ylabel(f"{data.query.name}{_in_unit(data.unit)}")
    ax.set_ylim(bottom=min(0.0, float(np.nanmin(data.p50))))
    ax.grid(True, alpha=0.3)
    # Above the axes, right-aligned: never on top of the lines it explains.
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=4, fontsize=9, frameon=False)


def _rate_panel(ax: Any, data: SeriesData) -> None:
    x = data.edges
    ax.fill_between(x, 0, data.rate, step="post", color="tab:green", alpha=0.2, lw=0)
    ax.step(x, data.rate, where="post", color="tab:green", lw=1.5)
    ax.set_ylabel(_rate_label(data))
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)


def _rate_label(data: SeriesData) -> str:
    if data.type == "counter":  # increase per second, in the counter's own unit
        if data.unit in DIMENSIONLESS:
            return "increase per second"
        return f"increase ({data.unit}/s)"
    return "rate (samples/s)"


def _in_unit(unit: str) -> str:
    return "" if unit in DIMENSIONLESS else f" ({unit})"


def _title(data: SeriesData) -> str:
    q = data.query
    labels = ", ".join(f"{k}={v}" for k, v in sorted(data.labels.items()))
    return f"{q.service} · {q.region} · {q.name}" + (f" {{{labels}}}" if labels else "")


def _subtitle(data: SeriesData) -> str:
    first = _utc(data.edges[0])
    last = _utc(data.edges[-1])
    kind = data.type + (f", unit {data.unit}" if data.unit not in DIMENSIONLESS else "")
    return (
        f"{data.query.resolution} rollups ({kind}) · {data.windows:,} windows · "
        f"{first} → {last} UTC"
    )


def _utc(value: np.datetime64) -> str:
    return str(value.astype("datetime64[s]")).replace("T", " ")


def plot_series(path: Path, query: SeriesQuery, out: Path) -> SeriesData:
    """Load the series and write its PNG; returns what was drawn."""
    data = load_series(path, query)
    render_png(data, out)
    return data
