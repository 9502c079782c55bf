"""`metrics-pipeline plot`: a real PNG rendered with matplotlib (Agg) from the store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.sinks.local import LocalStoreSink
from pipeline.store.plot import SeriesQuery, load_series

from .rollups import MINUTE, START_MS, rollup_records

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SERIES = ["--service", "checkout", "--region", "eu-west-1", "--name", "http.server.duration"]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    records = rollup_records()
    gap = {START_MS + 20 * MINUTE, START_MS + 21 * MINUTE}  # two windows never arrived
    LocalStoreSink(root).write([r for r in records if r.body["window_start"] not in gap])
    LocalStoreSink(root).write(records[:50])  # re-delivered: drawn once
    return root


def colour_share(image: np.ndarray, hex_colour: str) -> float:
    """Share of pixels within a small distance of a colour (RGB in 0..1)."""
    rgb = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return float((np.abs(image[..., :3] - rgb).max(axis=-1) < 0.06).mean())


def test_plot_writes_a_png_with_percentile_lines_and_the_rate(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "plots" / "checkout.png"
    result = runner.invoke(
        app, ["plot", *SERIES, "--label", "route=/pay", "--out", str(out), "--path", str(store)]
    )
    assert result.exit_code == 0, result.output
    assert "58 windows" in result.output
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert 20_000 < len(data) < 1_000_000
    image = matplotlib.image.imread(out)
    assert image.shape[:2] == (780, 1320)
    # The lines were drawn: p99 red, p50 blue, the rate green (matplotlib's tab10 colours).
    assert colour_share(image, "#d62728") > 0.001
    assert colour_share(image, "#1f77b4") > 0.001
    assert colour_share(image, "#2ca02c") > 0.001


def test_missing_windows_are_gaps_not_interpolated(store: Path) -> None:
    data = load_series(
        store,
        SeriesQuery("checkout", "eu-west-1", "http.server.duration", labels={"route": "/pay"}),
    )
    assert data.windows == 58
    assert len(data.edges) == 61  # 60 window starts on the grid + the last end
    assert np.isnan(data.p99[20:22]).all() and np.isnan(data.rate[20:22]).all()
    assert np.isfinite(np.delete(data.p99, [20, 21])).all()
    assert (np.diff(data.edges).astype(np.int64) == MINUTE).all()
    assert data.unit == "ms"


def test_since_and_until_select_a_time_range(store: Path) -> None:
    data = load_series(
        store,
        SeriesQuery(
            "search",
            "eu-west-1",
            "http.server.duration",
            since=datetime.fromtimestamp((START_MS + 30 * MINUTE) / 1000, tz=UTC),
            until=datetime.fromtimestamp((START_MS + 50 * MINUTE) / 1000, tz=UTC),
        ),
    )
    assert data.windows == 20
    assert data.edges[0] == np.datetime64(START_MS + 30 * MINUTE, "ms")


def test_a_counter_is_drawn_as_its_rate(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "requests.png"
    args = ["plot", "--service", "checkout", "--region", "eu-west-1", "--name", "http.requests"]
    result = runner.invoke(app, [*args, "--out", str(out), "--path", str(store)])
    assert result.exit_code == 0, result.output
    image = matplotlib.image.imread(out)
    assert image.shape[:2] == (540, 1320)
    assert colour_share(image, "#2ca02c") > 0.001
    assert colour_share(image, "#d62728") == 0.0  # no percentiles for counters


def test_ambiguous_series_exit_2_listing_the_candidates(store: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["plot", *SERIES, "--out", str(tmp_path / "x.png"), "--path", str(store)]
    )
    assert result.exit_code == 2
    assert "2 series match" in result.output
    assert '{"route":"/cart"}' in result.output and '{"route":"/pay"}' in result.output
    assert not (tmp_path / "x.png").exists()


def test_unknown_series_or_resolution_exit_2_with_a_hint(store: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "x.png")
    unknown = runner.invoke(
        app, ["plot", "--service", "nope", "--region", "eu-west-1", "--name", "x", "--out", out,
              "--path", str(store)],
    )  # fmt: skip
    assert unknown.exit_code == 2 and "no series nope" in unknown.output
    wrong_res = runner.invoke(
        app, ["plot", *SERIES, "--label", "route=/pay", "--resolution", "10s", "--out", out,
              "--path", str(store)],
    )  # fmt: skip
    assert wrong_res.exit_code == 2
    assert "no 10s rollups" in wrong_res.output and "stored: 1m (58 windows)" in wrong_res.output
    bad_label = runner.invoke(
        app, ["plot", *SERIES, "--label", "route", "--out", out, "--path", str(store)]
    )
    assert bad_label.exit_code == 2 and "name=value" in bad_label.output
