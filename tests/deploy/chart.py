"""Rendering the Helm chart offline with the real Helm engine (helm-python-sdk) and checking the
manifests against the Kubernetes OpenAPI schemas (kubernetes-validate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="pip install -e '.[dev]' (helm-python-sdk)")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

CHART = Path(__file__).resolve().parents[2] / "helm" / "metrics-pipeline"
KUBERNETES_VERSION = "1.30"  # the oldest minor the chart is validated against
RELEASE = "mp"
NAMESPACE = "observability"

Manifest = dict[str, Any]


def load_chart() -> Any:
    return helm.Chart.load(CHART)


def render(values: dict[str, Any]) -> list[Manifest]:
    """Every object the chart renders for `values` (schema-checked first, as install does)."""
    chart = load_chart()
    chart.validate_schema(values)
    files = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects: list[Manifest] = []
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def notes(values: dict[str, Any]) -> str:
    files = load_chart().render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(text for path, text in files.items() if path.endswith("NOTES.txt"))


def of_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind]


def workloads(objects: list[Manifest]) -> list[Manifest]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def by_name(objects: list[Manifest], kind: str, suffix: str) -> Manifest:
    name = f"{RELEASE}-metrics-pipeline-{suffix}"
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name} rendered {len(found)} times"
    return found[0]


def settings_files(objects: list[Manifest]) -> dict[str, str]:
    """The data of the settings ConfigMap: <process>.yaml → text."""
    maps = [o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("pipeline")]
    assert len(maps) == 1
    return dict(maps[0]["data"])


def validate_kubernetes(manifest: Manifest) -> None:
    """Strict OpenAPI validation: unknown fields fail too."""
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
