"""One PNG per scenario: the watched statistic of each series, its baseline and band per window,
the labelled intervals and the episodes the detector raised."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FormatStrFormatter, NullFormatter

from load.detect_pipeline import RunOutput
from load.detect_scenarios import HOUR, Scenario
from load.detect_score import EpisodeSpan
from pipeline.core.detect.noise import from_model

MAX_ROWS = 6
WINDOW_S = 60.0  # the detector reads the 1 m tier
UNITS = {"p99": "p99 (ms)", "rate": "rate (req/s)"}


def plot_scenario(
    scenario: Scenario, output: RunOutput, spans: list[EpisodeSpan], path: Path
) -> Path:
    stat = scenario.statistic
    services = [p.service for p in scenario.series][:MAX_ROWS]
    fig, axes = plt.subplots(
        len(services), 1, figsize=(15, 1.0 + 2.3 * len(services)), sharex=True, squeeze=False
    )
    starts = np.array(output.trace.starts, dtype=np.float64)
    hours = (starts - scenario.start_ms) / HOUR
    width = 1 / 60  # one 1 m window, in hours
    for ax, service in zip(axes[:, 0], services, strict=True):
        track = output.tracks.get((service, stat))
        if track is not None:
            rows = output.trace.track(track)
            value, expected, band = rows[:, 0], rows[:, 1], rows[:, 2]

            def unit(x: np.ndarray, stat: str = stat) -> np.ndarray:
                """From the model's scale back to the statistic's unit (1 m windows)."""
                return np.array([from_model(stat, float(v), WINDOW_S) for v in x])

            ax.fill_between(
                hours, unit(expected - band), unit(expected + band),
                color="tab:blue", alpha=0.18, linewidth=0, step="post",
            )  # fmt: skip
            ax.plot(hours, unit(expected), color="tab:blue", linewidth=0.9)
            ax.plot(hours, unit(value), color="black", linewidth=0.6)
            seen = unit(value[np.isfinite(value)])
            seen = seen[seen > 0]
            if len(seen):  # the data decide the range, not a band widened by a level change
                ax.set_ylim(seen.min() / 2, seen.max() * 2)
        for label in scenario.labels:
            if label.series == service:
                ax.axvspan(
                    (label.start - scenario.start_ms) / HOUR,
                    (label.end - scenario.start_ms) / HOUR,
                    color="tab:orange", alpha=0.35, linewidth=0,
                )  # fmt: skip
        for span in spans:
            if span.series != service:
                continue
            color = "tab:red" if span.statistic == stat else "tab:purple"
            a = (span.started_at - scenario.start_ms) / HOUR
            b = (span.ended_at - scenario.start_ms) / HOUR
            ax.axvspan(a, max(b, a + width), ymin=0.0, ymax=0.12, color=color, alpha=0.9)
            ax.axvline((span.fired_at - scenario.start_ms) / HOUR, color=color, lw=0.8, ls="--")
        if scenario.evaluate_from_ms > scenario.start_ms:
            ax.axvspan(
                0, (scenario.evaluate_from_ms - scenario.start_ms) / HOUR,
                color="grey", alpha=0.12, linewidth=0,
            )  # fmt: skip
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel(f"{service}\n{UNITS.get(stat, stat)}", fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
    last = axes[-1, 0]
    last.set_xlabel("hours since start (event time, 1 m windows)")
    last.set_xlim(0, scenario.duration_ms / HOUR)
    step = 6 if scenario.duration_ms > 1.5 * 86_400_000 else 2
    last.set_xticks(np.arange(0, math.ceil(scenario.duration_ms / HOUR) + 1, step))
    handles = [
        Line2D([], [], color="black", lw=0.8, label=f"observed {stat}"),
        Line2D([], [], color="tab:blue", lw=1.0, label="expected"),
        Patch(color="tab:blue", alpha=0.25, label="band (score < 1)"),
        Patch(color="tab:orange", alpha=0.45, label="labelled anomaly"),
        Patch(color="tab:red", label=f"episode on {stat} (dashed: fired)"),
        Patch(color="tab:purple", label="episode on another statistic / absence"),
    ]
    if scenario.evaluate_from_ms > scenario.start_ms:
        handles.append(Patch(color="grey", alpha=0.3, label="learning (not judged)"))
    top = 1.0 - 0.9 / fig.get_figheight()  # room for the title and the legend, in inches
    fig.suptitle(f"{scenario.name}: {scenario.description}", y=1.0 - 0.12 / fig.get_figheight(),
                 va="top", fontsize=12)  # fmt: skip
    fig.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1.0 - 0.45 / fig.get_figheight()),
        ncol=len(handles), fontsize=9, frameon=False,
    )  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, top))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
