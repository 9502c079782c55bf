"""The NAB scoreboard as a bar chart: published detectors beside this one, three profiles."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

PROFILE_NAMES = ("standard", "reward low FP", "reward low FN")


def plot_scoreboard(rows: dict[str, tuple[float, ...]], ours: str, path: Path) -> None:
    names = sorted(rows, key=lambda n: rows[n][0])
    y = np.arange(len(names))
    height = 0.27
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.2))
    for k, profile in enumerate(PROFILE_NAMES):
        values = [rows[n][k] for n in names]
        ax.barh(y + (1 - k) * height, values, height, label=profile)
    ax.set_yticks(y, names)
    ax.get_yticklabels()[names.index(ours)].set_fontweight("bold")
    ax.axvline(60.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("normalised NAB score (100 = perfect, 0 = no detection); dashed: target 60")
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title("NAB v1.1: published detectors and this one")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
