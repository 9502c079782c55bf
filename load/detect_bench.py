"""How good is the detector: a labelled scenario suite through the pipeline's core.

`python -m load.detect_bench [--quick]` generates each scenario of load/detect_scenarios.py
for every seed (development seeds and held-out seeds), runs it raw samples → 10 s → 1 m →
detector (load/detect_pipeline.py, the real core code, no Kafka, default settings), scores the
episodes against the labels (load/detect_score.py: definitions there), prints a table per seed
group with the targets, writes one PNG per scenario (first development seed) and the results
as JSON (`load/results/detect-<date>.json`, `-quick` for the quick suite), and ends with one
summary line.

The defaults were chosen on the development seeds; the held-out seeds were run once at the
end, as a check that they generalise. Targets: F1 ≥ 0.9 over the suite, ≤ 0.3 false alarms per
series per day (pooled), median detection delay ≤ 3 windows, and outages and shifts covered by
an open episode for as long as they last (coverage, reported).
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from load.detect_pipeline import run
from load.detect_plot import plot_scenario
from load.detect_scenarios import SUITE, build
from load.detect_score import Quality, episode_spans, evaluate, pooled
from load.report import Target, machine_info
from pipeline.core.detect.detector import DetectConfig

RESULTS = Path(__file__).parent / "results"
F1_TARGET = 0.9
FALSE_ALARM_TARGET = 0.3
DELAY_TARGET = 3.0
DEVELOPMENT_SEEDS = (1,)
HELD_OUT_SEEDS = (101,)


def _run_one(args: tuple[str, bool, int, Path | None]) -> dict[str, Any]:
    return run_scenario(*args)


def run_scenario(name: str, quick: bool, seed: int, plots: Path | None) -> dict[str, Any]:
    began = time.perf_counter()
    scenario = build(name, quick, seed)
    output = run(scenario, DetectConfig())
    spans = episode_spans(output.events, scenario.end_ms)
    quality = evaluate(
        spans, scenario.labels, len(scenario.series), scenario.start_ms, scenario.end_ms,
        scenario.evaluate_from_ms,
    )  # fmt: skip
    png = None
    if plots is not None:
        png = str(plot_scenario(scenario, output, spans, plots / f"{name}.png"))
    return {
        "scenario": name,
        "seed": seed,
        "description": scenario.description,
        "has_anomalies": scenario.has_anomalies,
        "quality": quality,
        "samples": output.rollups.samples,
        "rollups_10s": output.rollups.base_rollups,
        "rollups_1m": len(output.rollups.records),
        "episodes": [asdict(s) for s in spans],
        "png": png,
        "seconds": time.perf_counter() - began,
    }


def targets(suite: dict[str, Any]) -> list[Target]:
    f1, delay, fa = suite["f1"], suite["median_delay"], suite["false_alarms_per_series_day"]
    return [
        Target(
            f"F1 over the suite ≥ {F1_TARGET}",
            "n/a" if f1 is None else f"{f1:.3f}",
            None if f1 is None else f1 >= F1_TARGET,
        ),
        Target(
            f"false alarms ≤ {FALSE_ALARM_TARGET:g} per series per day (pooled)",
            "n/a" if fa is None else f"{fa:.2f}",
            None if fa is None else fa <= FALSE_ALARM_TARGET,
        ),
        Target(
            f"median detection delay ≤ {DELAY_TARGET:g} windows",
            "n/a" if delay is None else f"{delay:g}",
            None if delay is None else delay <= DELAY_TARGET,
        ),
    ]


def _f(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def print_report(
    console: Console, title: str, results: list[dict[str, Any]], suite: dict[str, Any]
) -> None:
    table = Table(title=f"Detector quality, {title} — episodes, 1 m windows (detect_score.py)")
    for column in (
        "scenario", "series", "days", "labels", "found", "episodes", "false", "precision",
        "recall", "F1", "median delay", "FA/series/day", "coverage", "learning", "s",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for name in dict.fromkeys(r["scenario"] for r in results):
        q = merged([r["quality"] for r in results if r["scenario"] == name])
        seconds = sum(r["seconds"] for r in results if r["scenario"] == name)
        table.add_row(
            name, str(q.series), f"{q.days:g}", str(q.labels), str(q.detected),
            str(q.episodes), str(q.false_alarms), _f(q.precision), _f(q.recall), _f(q.f1),
            _f(q.median_delay, 1), _f(q.false_alarms_per_series_day), _f(q.coverage),
            str(q.learning_alarms), f"{seconds:.0f}",
        )  # fmt: skip
    table.add_section()
    table.add_row(
        "suite", "", "", str(suite["labels"]), str(suite["detected"]), str(suite["episodes"]),
        str(suite["false_alarms"]), _f(suite["precision"]), _f(suite["recall"]),
        _f(suite["f1"]), _f(suite["median_delay"], 1), _f(suite["false_alarms_per_series_day"]),
        _f(suite["coverage"]), "", "",
    )  # fmt: skip
    console.print(table)
    kinds: dict[str, list[int]] = {}
    for r in results:
        for k, (a, b) in r["quality"].detected_by_kind.items():
            found = kinds.setdefault(k, [0, 0])
            found[0] += a
            found[1] += b
    console.print("  detected by kind: " + ", ".join(f"{k} {a}/{b}" for k, (a, b) in
                                                     sorted(kinds.items())))  # fmt: skip
    verdicts = Table(title=f"Targets, {title}")
    for column in ("target", "measured", "verdict"):
        verdicts.add_column(column)
    for t in targets(suite):
        style = {"PASS": "green", "MISS": "red"}.get(t.verdict, "")
        verdicts.add_row(t.name, t.measured, f"[{style}]{t.verdict}[/]" if style else t.verdict)
    console.print(verdicts)


def merged(qualities: list[Quality]) -> Quality:
    """One scenario's figures over several seeds: counts summed."""
    first = qualities[0]
    out = Quality(first.series * len(qualities), first.days)
    for q in qualities:
        out.labels += q.labels
        out.detected += q.detected
        out.episodes += q.episodes
        out.true_episodes += q.true_episodes
        out.learning_alarms += q.learning_alarms
        out.delays += q.delays
        out.labelled_ms += q.labelled_ms
        out.covered_ms += q.covered_ms
    return out


def _summary(name: str, seeds: tuple[int, ...], suite: dict[str, Any]) -> str:
    return (
        f"{name} seeds {','.join(map(str, seeds))}: F1 {_f(suite['f1'])} "
        f"(P {_f(suite['precision'])} R {_f(suite['recall'])}), "
        f"{_f(suite['false_alarms_per_series_day'])} false alarms/series-day, "
        f"median delay {_f(suite['median_delay'], 1)} windows, coverage {_f(suite['coverage'])}"
    )


def main(
    quick: Annotated[bool, typer.Option(help="Fewer series, shorter scenarios.")] = False,
    seed: Annotated[list[int] | None, typer.Option(help="Development seed (repeatable).")] = None,
    held_out: Annotated[list[int] | None, typer.Option(help="Held-out seed (repeatable).")] = None,
    only: Annotated[
        list[str] | None, typer.Option(help="Run only this scenario (repeatable).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory of the JSON results and PNGs.")] = RESULTS,
    plots: Annotated[bool, typer.Option(help="Write one PNG per scenario.")] = True,
    jobs: Annotated[int, typer.Option(help="Scenarios run in parallel.")] = 2,
) -> None:
    console = Console()
    if not console.is_terminal:  # piped or captured: room for the whole table
        console = Console(width=180)
    names = only or list(SUITE)
    unknown = sorted(set(names) - set(SUITE))
    if unknown:
        raise typer.BadParameter(f"unknown scenarios {unknown}; known: {sorted(SUITE)}")
    groups = {
        "development": tuple(seed or DEVELOPMENT_SEEDS),
        "held-out": tuple(held_out or HELD_OUT_SEEDS),
    }
    date = machine_info()["date"]
    stem = f"detect-{date}" + ("-quick" if quick else "")
    first_seed = groups["development"][0]
    work = [
        (name, quick, s, out / stem if plots and s == first_seed else None)
        for seeds in groups.values()
        for s in seeds
        for name in names
    ]
    console.print(f"[dim]{len(work)} scenario runs, {jobs} at a time…[/]")
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(_run_one, work))
    suites, lines = {}, []
    for group, seeds in groups.items():
        part = [r for r in results if r["seed"] in seeds]
        suites[group] = pooled([r["quality"] for r in part])
        print_report(console, f"{group} seeds {list(seeds)}", part, suites[group])
        lines.append(_summary(group, seeds, suites[group]))
    doc = {
        "machine": machine_info(),
        "args": {"quick": quick, "seeds": groups, "scenarios": names},
        "config": _config_json(DetectConfig()),
        "suites": suites,
        "targets": {
            g: [{**asdict(t), "verdict": t.verdict} for t in targets(suite)]
            for g, suite in suites.items()
        },
        "scenarios": [{**r, "quality": r["quality"].to_json()} for r in results],
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.json"
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    console.print(f"results: {path}" + (f"; plots: {out / stem}/" if plots else ""))
    print("detector suite — " + "; ".join(lines))


def _config_json(config: DetectConfig) -> dict[str, Any]:
    model = {f: getattr(config.model, f) for f in config.model.__dataclass_fields__}
    doc = {f: getattr(config, f) for f in config.__dataclass_fields__ if f != "model"}
    return {**doc, "model": model}


if __name__ == "__main__":
    typer.run(main)
