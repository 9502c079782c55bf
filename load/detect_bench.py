"""How good is the detector: a labelled scenario suite through the pipeline's core.

`python -m load.detect_bench [--quick]` generates each scenario of load/detect_scenarios.py
(seeded), runs it raw samples → 10 s → 1 m → detector (load/detect_pipeline.py, the real core
code, no Kafka), scores the episodes against the labels (load/detect_score.py: definitions
there), prints a table with the issue's targets, writes one PNG per scenario and the results as
JSON (`load/results/detect-<date>.json`, `-quick` for the quick suite).

Targets (issue 5): F1 ≥ 0.9 over the suite, ≤ 1 false alarm per series per day on each
no-anomaly scenario, median detection delay ≤ 3 windows.
"""

from __future__ import annotations

import time
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
FALSE_ALARM_TARGET = 1.0
DELAY_TARGET = 3.0


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


def targets(results: list[dict[str, Any]], suite: dict[str, Any]) -> list[Target]:
    quiet = [r for r in results if not r["has_anomalies"]]
    worst = max((r["quality"].false_alarms_per_series_day for r in quiet), default=None)
    f1, delay = suite["f1"], suite["median_delay"]
    return [
        Target(
            f"F1 over the suite ≥ {F1_TARGET}",
            "n/a" if f1 is None else f"{f1:.3f}",
            None if f1 is None else f1 >= F1_TARGET,
        ),
        Target(
            f"false alarms ≤ {FALSE_ALARM_TARGET:g} per series per day (no-anomaly scenarios)",
            "n/a" if worst is None else f"{worst:.2f} (worst)",
            None if worst is None else worst <= FALSE_ALARM_TARGET,
        ),
        Target(
            f"median detection delay ≤ {DELAY_TARGET:g} windows",
            "n/a" if delay is None else f"{delay:g}",
            None if delay is None else delay <= DELAY_TARGET,
        ),
    ]


def _f(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def print_report(console: Console, results: list[dict[str, Any]], suite: dict[str, Any]) -> None:
    table = Table(title="Detector quality — episode level, 1 m windows (load/detect_score.py)")
    for column in (
        "scenario", "series", "days", "labels", "found", "episodes", "false", "precision",
        "recall", "F1", "median delay", "FA/series/day", "learning", "s",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for r in results:
        q: Quality = r["quality"]
        table.add_row(
            r["scenario"], str(q.series), f"{q.days:g}", str(q.labels), str(q.detected),
            str(q.episodes), str(q.false_alarms), _f(q.precision), _f(q.recall), _f(q.f1),
            _f(q.median_delay, 1), _f(q.false_alarms_per_series_day),
            str(q.learning_alarms), f"{r['seconds']:.0f}",
        )  # fmt: skip
    table.add_section()
    table.add_row(
        "suite", "", "", str(suite["labels"]), str(suite["detected"]), str(suite["episodes"]),
        str(suite["episodes"] - suite["true_episodes"]), _f(suite["precision"]),
        _f(suite["recall"]), _f(suite["f1"]), _f(suite["median_delay"], 1), "", "", "",
    )  # fmt: skip
    console.print(table)
    for r in results:
        q = r["quality"]
        kinds = ", ".join(f"{k} {a}/{b}" for k, (a, b) in sorted(q.detected_by_kind.items()))
        if len(q.detected_by_kind) > 1:
            console.print(f"  {r['scenario']}: detected by kind — {kinds}")
    verdicts = Table(title="Targets (issue 5)")
    for column in ("target", "measured", "verdict"):
        verdicts.add_column(column)
    for t in targets(results, suite):
        style = {"PASS": "green", "MISS": "red"}.get(t.verdict, "")
        verdicts.add_row(t.name, t.measured, f"[{style}]{t.verdict}[/]" if style else t.verdict)
    console.print(verdicts)


def main(
    quick: Annotated[bool, typer.Option(help="Fewer series, shorter scenarios.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of every scenario's random draws.")] = 7,
    only: Annotated[
        list[str] | None, typer.Option(help="Run only this scenario (repeatable).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory of the JSON results and PNGs.")] = RESULTS,
    plots: Annotated[bool, typer.Option(help="Write one PNG per scenario.")] = True,
) -> None:
    console = Console()
    if not console.is_terminal:  # piped or captured: room for the whole table
        console = Console(width=160)
    names = only or list(SUITE)
    unknown = sorted(set(names) - set(SUITE))
    if unknown:
        raise typer.BadParameter(f"unknown scenarios {unknown}; known: {sorted(SUITE)}")
    date = machine_info()["date"]
    stem = f"detect-{date}" + ("-quick" if quick else "")
    results = []
    for name in names:
        console.print(f"[dim]running {name}…[/]")
        results.append(run_scenario(name, quick, seed, out / stem if plots else None))
    suite = pooled([r["quality"] for r in results])
    print_report(console, results, suite)
    doc = {
        "machine": machine_info(),
        "args": {"quick": quick, "seed": seed, "scenarios": names},
        "config": _config_json(DetectConfig()),
        "suite": suite,
        "targets": [{**asdict(t), "verdict": t.verdict} for t in targets(results, suite)],
        "scenarios": [{**r, "quality": r["quality"].to_json()} for r in results],
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.json"
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    console.print(f"results: {path}" + (f"; plots: {out / stem}/" if plots else ""))


def _config_json(config: DetectConfig) -> dict[str, Any]:
    model = {f: getattr(config.model, f) for f in config.model.__dataclass_fields__}
    doc = {f: getattr(config, f) for f in config.__dataclass_fields__ if f != "model"}
    return {**doc, "model": model}


if __name__ == "__main__":
    typer.run(main)
