"""A fast replay of the onset score on NAB, for sweeps of the onset settings (seconds, not minutes).

`python -m load.nab_replay record --nab-dir PATH` runs every NAB file through the detector's core
once (as load/nab_bench.py does) and keeps, per file, its values and the deviation models' z of
every window (`--cache`, an .npz). `python -m load.nab_replay sweep --nab-dir PATH --set
warmup=300 --set quiet_windows=30,60` then replays only the onset channel (novelty.py's own
`Novelty`, the product code) over those values and z for each combination of settings and
scores it by NAB's rules.

What it leaves out: an onset opens an episode, and a window inside an episode is not learnt by
the deviation models' baseline, so a variant that fires other onsets would see slightly other z
later on. The replay keeps the recorded z; a result worth having is confirmed by the product run
(load/nab_bench.py).
"""

from __future__ import annotations

import itertools
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from load.nab_bench import _run, groups
from load.nab_detect import FileRun
from load.nab_score import PROFILES, Rows, read_series, read_windows, scorable_rows, score_corpus
from pipeline.core.detect.detector import DetectConfig
from pipeline.core.detect.novelty import Novelty, NoveltyConfig

CACHE = Path("/tmp/nab-replay.npz")
app = typer.Typer(add_completion=False)


def record_runs(nab_dir: Path, jobs: int) -> dict[str, FileRun]:
    windows = read_windows(nab_dir)
    names = sorted(windows)
    config = DetectConfig()
    runs: dict[str, FileRun] = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for part in pool.map(_run, [(nab_dir, c, config) for c in groups(nab_dir, names, 15)]):
            runs.update(part)
    return runs


def onset_scores(values: np.ndarray, z: np.ndarray, config: NoveltyConfig) -> np.ndarray:
    """The onset score of every window of every file (rows: files, NaN-padded at the end),
    as the detector computes it: scored before the window is learnt, quiet after firing."""
    files, length = values.shape
    novelty = Novelty(config)
    novelty.grow(files)
    out = np.zeros((files, length))
    no_noise = np.zeros(files)
    no_spread = np.full(files, np.nan)
    for i in range(length):
        unit, zi = values[:, i], z[:, i]
        onset, _ = novelty.onset(i, unit, no_noise, zi)
        onset = np.where(np.isfinite(unit), onset, 0.0)
        out[:, i] = onset
        novelty.fired(np.flatnonzero(onset >= 1.0).tolist(), i)
        novelty.learn(unit, zi, no_spread)
    return out


def score(
    names: list[str],
    times: list[np.ndarray],
    onset: np.ndarray,
    windows: dict[str, list[tuple[np.datetime64, np.datetime64]]],
) -> list[float]:
    rows: list[Rows] = []
    first = 0
    for k, name in enumerate(names):
        n = len(times[k])
        s = onset[k, :n]
        rows.append(scorable_rows(name, times[k], s / (1.0 + s), windows[name], first))
        first += len(windows[name])
    labelled = sum(len(windows[n]) for n in names)
    return [score_corpus(rows, p, labelled).normalized for p in PROFILES]


@app.command()
def record(
    nab_dir: Annotated[Path, typer.Option(help="A NAB checkout: data/, labels/.")],
    cache: Annotated[Path, typer.Option(help="Where the recorded windows go.")] = CACHE,
    jobs: int = 2,
) -> None:
    runs = record_runs(nab_dir, jobs)
    names = sorted(runs)
    length = max(len(r.times) for r in runs.values())
    values = np.full((len(names), length), np.nan)
    z = np.full((len(names), length), np.nan)
    onset = np.zeros((len(names), length))
    for k, name in enumerate(names):
        _, v = read_series(nab_dir / "data" / name)
        values[k, : len(v)] = v
        z[k, : len(v)] = runs[name].deviation_z
        a = runs[name].anomaly_score
        onset[k, : len(v)] = a / (1.0 - a)
    np.savez(cache, names=np.array(names), values=values, z=z, onset=onset)
    windows = read_windows(nab_dir)
    times = [runs[n].times for n in names]
    product = score(names, times, onset, windows)
    replayed = score(names, times, onset_scores(values, z, NoveltyConfig()), windows)
    print("product " + " / ".join(f"{x:.2f}" for x in product))
    print("replay  " + " / ".join(f"{x:.2f}" for x in replayed))


def _parse(settings: list[str]) -> list[dict[str, Any]]:
    kinds = {f.name: f.type for f in fields(NoveltyConfig)}
    axes: list[list[tuple[str, float]]] = []
    for item in settings:
        key, _, values = item.partition("=")
        if key not in kinds:
            raise typer.BadParameter(f"{key}: not a NoveltyConfig field")
        cast = int if kinds[key] in (int, "int") else float
        axes.append([(key, cast(v)) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)]


@app.command()
def sweep(
    nab_dir: Annotated[Path, typer.Option(help="A NAB checkout: data/, labels/.")],
    cache: Annotated[Path, typer.Option(help="The recorded windows (record).")] = CACHE,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="field=v1,v2 of NoveltyConfig")
    ] = None,
) -> None:
    data = np.load(cache)
    names = [str(n) for n in data["names"]]
    windows = read_windows(nab_dir)
    times = [read_series(nab_dir / "data" / n)[0] for n in names]
    for combo in _parse(set_ or []):
        config = replace(NoveltyConfig(), **combo)
        got = score(names, times, onset_scores(data["values"], data["z"], config), windows)
        label = " ".join(f"{k}={v:g}" for k, v in combo.items()) or "defaults"
        print(f"{label:60s} " + " / ".join(f"{x:.2f}" for x in got))


if __name__ == "__main__":
    app()
