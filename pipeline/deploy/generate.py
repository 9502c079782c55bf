"""Write the generated artefacts into the Helm chart (`python -m pipeline.deploy [--check]`)."""

from __future__ import annotations

import json
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from pipeline.deploy import health, latency
from pipeline.deploy.panels import build_dashboard
from pipeline.deploy.rules import rules_yaml

CHART = Path("helm/metrics-pipeline")


def _json(board: object) -> str:
    return json.dumps(board, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def artefacts() -> dict[str, str]:
    """Chart-relative path → file content."""
    health_board = build_dashboard(
        health.UID, health.TITLE, health.DESCRIPTION, health.ROWS, variables=health.variables()
    )
    latency_board = build_dashboard(
        latency.UID,
        latency.TITLE,
        latency.DESCRIPTION,
        latency.ROWS,
        variables=latency.variables(),
        annotations=latency.annotation_queries(),
    )
    return {
        "dashboards/metrics-pipeline-health.json": _json(health_board.build()),
        "dashboards/metrics-pipeline-latency.json": _json(latency_board.build()),
        "rules/metrics-pipeline.rules.yaml": rules_yaml(),
    }


def write(chart: Path = CHART) -> list[Path]:
    written = []
    for relative, text in artefacts().items():
        path = chart / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
