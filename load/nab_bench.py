"""The detector on the Numenta Anomaly Benchmark (NAB v1.1 corpus, 58 labelled files).

`python -m load.nab_bench --nab-dir PATH` runs every data file of a NAB checkout through the
detector's core with its default settings (load/nab_detect.py: one point = one window), scores
the anomaly scores by NAB's rules for the three profiles with NAB's threshold optimisation
(load/nab_score.py), prints the published scoreboard beside ours, writes the results as JSON
(`load/results/nab-<date>.json`), the scoreboard as a bar chart beside it (`.png`) and ends
with one summary line.

Two readings of the same run: `optimised` is NAB's (the threshold on our score that maximises
each profile's total); `as fired` counts only the windows where the detector fired an episode,
i.e. the detector exactly as deployed.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
import typer
from rich.console import Console
from rich.table import Table

from load.nab_detect import FileRun, detect_files, interval_of
from load.nab_plot import plot_scoreboard
from load.nab_score import (
    PROFILES,
    CorpusScore,
    Rows,
    read_series,
    read_windows,
    scorable_rows,
    score_corpus,
)
from load.report import machine_info
from pipeline.core.detect.detector import DetectConfig

RESULTS = Path(__file__).parent / "results"
TARGET = 60.0
#: Published NAB scores (standard, reward low FP, reward low FN), NAB's scoreboard.
SCOREBOARD = {
    "ARTime": (74.9, 65.1, 80.4),
    "Numenta HTM": (70.1, 63.1, 74.3),
    "contextOSE": (69.9, 67.0, 73.2),
    "KNN CAD": (58.0, 43.4, 64.8),
    "Random Cut Forest": (51.7, 38.4, 59.7),
    "Twitter ADVec": (47.1, 33.6, 53.5),
    "windowedGaussian": (39.6, 20.9, 47.4),
    "random": (16.8, 5.8, 25.9),
}


def _run(args: tuple[Path, list[str], DetectConfig]) -> dict[str, FileRun]:
    nab_dir, names, config = args
    runs = detect_files([nab_dir / "data" / n for n in names], config)
    return {n: runs[nab_dir / "data" / n] for n in names}


def groups(nab_dir: Path, names: list[str], size: int) -> list[list[str]]:
    """Files of the same interval, in chunks of at most `size` (one detector each)."""
    by_interval: dict[int, list[str]] = {}
    for name in names:
        times, _ = read_series(nab_dir / "data" / name)
        by_interval.setdefault(interval_of(times), []).append(name)
    return [g[i : i + size] for g in by_interval.values() for i in range(0, len(g), size)]


def score_runs(
    runs: dict[str, FileRun], windows: dict[str, list[Any]], field: str
) -> list[CorpusScore]:
    rows: list[Rows] = []
    first = 0
    for name in sorted(runs):
        run = runs[name]
        scores = getattr(run, field).astype(float)
        rows.append(scorable_rows(name, run.times, scores, windows[name], first))
        first += len(windows[name])
    labelled = sum(len(windows[n]) for n in runs)
    return [score_corpus(rows, profile, labelled) for profile in PROFILES]


def main(
    nab_dir: Annotated[Path, typer.Option(help="A NAB checkout: data/, labels/.")],
    jobs: Annotated[int, typer.Option(help="Files scored in parallel.")] = 2,
    only: Annotated[
        list[str] | None, typer.Option(help="Only this data file, e.g. realTweets/x.csv.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory of the JSON results.")] = RESULTS,
) -> None:
    console = Console(width=120)
    began = time.perf_counter()
    windows = read_windows(nab_dir)
    names = only or sorted(windows)
    config = DetectConfig()
    chunks = groups(nab_dir, names, 15)
    runs: dict[str, FileRun] = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for part in pool.map(_run, [(nab_dir, c, config) for c in chunks]):
            runs.update(part)
    optimised = score_runs(runs, windows, "anomaly_score")
    fired = score_runs(runs, windows, "firing")
    seconds = time.perf_counter() - began
    table = Table(title="NAB v1.1 — normalised scores (100 = perfect, 0 = no detection)")
    for column in ("detector", "standard", "reward low FP", "reward low FN"):
        table.add_column(column, justify="left" if column == "detector" else "right")
    ours = [c.normalized for c in optimised]
    rows = [*SCOREBOARD.items(), ("this detector (optimised)", tuple(ours))]
    rows.append(("this detector (as fired)", tuple(c.normalized for c in fired)))
    for name, scores in sorted(rows, key=lambda r: -r[1][0]):
        style = "bold" if name.startswith("this") else ""
        table.add_row(*(f"[{style}]{x}[/]" if style else x for x in
                        (name, *(f"{s:.1f}" for s in scores))))  # fmt: skip
    console.print(table)
    date = machine_info()["date"]
    doc = {
        "machine": machine_info(),
        "files": len(runs),
        "seconds": seconds,
        "optimised": [asdict(c) for c in optimised],
        "as_fired": [asdict(c) for c in fired],
        "episodes": int(sum(int(np.sum(r.firing)) for r in runs.values())),
        "scoreboard": SCOREBOARD,
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"nab-{date}.json"
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    plot_scoreboard(dict(rows), "this detector (optimised)", out / f"nab-{date}.png")
    standard, low_fp, low_fn = ours
    verdict = "PASS" if standard >= TARGET else "MISS"
    print(
        f"NAB {len(runs)} files: standard {standard:.1f} (target ≥ {TARGET:g}: {verdict}), "
        f"reward_low_FP {low_fp:.1f}, reward_low_FN {low_fn:.1f}; as fired "
        f"{fired[0].normalized:.1f}/{fired[1].normalized:.1f}/{fired[2].normalized:.1f}; "
        f"{seconds:.0f} s; {path}"
    )


if __name__ == "__main__":
    typer.run(main)
