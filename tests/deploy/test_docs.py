"""docs/deploy.md, its short version ("In short") and the rest, match the chart: their install
commands render, and every values key they name exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import CHART, helm, render, workloads

ROOT = Path(__file__).resolve().parents[2]


def _part(document: str) -> str:
    """The short version (`in-short`) or the rest of docs/deploy.md (`details`)."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    start = text.index("## In short\n")
    end = text.index("\n## ", start + 1)
    return text[start:end] if document == "in-short" else text[end:]


def _install_values(text: str) -> dict[str, Any]:
    command = re.search(r"helm install .*?(?=\n```)", text, re.DOTALL)
    assert command, "no helm install command"
    sets = re.findall(r"--set (\S+)", command[0].replace("\\\n", " "))
    assert sets
    values: dict[str, Any] = {}
    for expression in sets:
        _deep_merge(values, helm.parse_set_string(expression))
    return values


def _deep_merge(into: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value
    return into


def _has_key(values: dict[str, Any], dotted: str) -> bool:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@pytest.mark.parametrize("document", ["in-short", "details"])
def test_install_command_renders(document: str) -> None:
    text = _part(document)
    values = _install_values(text)
    objects = render(values)
    names = {w["spec"]["template"]["spec"]["containers"][0]["name"] for w in workloads(objects)}
    assert "sink-remote-write" in names and "worker" in names


@pytest.mark.parametrize("document", ["in-short", "details"])
def test_named_values_exist(document: str) -> None:
    text = _part(document)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    blocks = set(defaults) - {"nameOverride", "fullnameOverride", "httpPort"}
    named = {
        n for n in re.findall(r"`([a-zA-Z]+(?:\.[a-zA-Z]+)+)`", text) if n.split(".")[0] in blocks
    }
    assert len(named) >= 5
    missing = sorted(n for n in named if not _has_key(defaults, n))
    assert not missing, f"docs/deploy.md ({document}) names values the chart lacks: {missing}"
