"""The dashboards and alert rules in the chart are what pipeline/deploy generates, and every
PromQL expression in them parses (promtool, Debian's prometheus package)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("grafana_foundation_sdk", reason="pip install -e '.[dev]'")

from pipeline.deploy import latency
from pipeline.deploy.generate import artefacts
from tests.deploy.chart import CHART
from tests.deploy.queries import all_queries, concrete

RULES = CHART / "rules" / "metrics-pipeline.rules.yaml"
RULES_TESTS = Path(__file__).with_name("rules_test.yaml")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed: apt-get install prometheus")
    return path


def _exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for v in node.values() for e in _exprs(v)]
    if isinstance(node, list):
        return [e for v in node for e in _exprs(v)]
    return []


def test_committed_files_equal_a_fresh_generation() -> None:
    stale = [path for path, text in artefacts().items() if (CHART / path).read_text() != text]
    assert not stale, f"run `python -m pipeline.deploy` and commit: {stale}"


def test_dashboards_hold_exactly_the_declared_queries() -> None:
    in_json: list[str] = []
    for name in ("metrics-pipeline-health.json", "metrics-pipeline-latency.json"):
        board = json.loads((CHART / "dashboards" / name).read_text())
        assert board["uid"] == name.removesuffix(".json")
        in_json += _exprs(board)
    declared = [q.expr for q in all_queries()]
    assert sorted(in_json) == sorted(declared)
    for q in all_queries():
        assert q.expect in ("data", "zero", "parse")
        assert (q.expect == "parse") == bool(q.why), f"say why only parsing is checked: {q}"


def test_every_expression_parses(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query_{i}:{resolution}", "expr": concrete(q.expr, resolution)}
        for i, q in enumerate(all_queries())
        for resolution in latency.RESOLUTIONS
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    run = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_alert_rules_check_and_pass_their_unit_tests() -> None:
    run = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"SUCCESS: \d+ rules found", run.stdout + run.stderr)
    run = subprocess.run(
        [promtool(), "test", "rules", str(RULES_TESTS)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_has_a_unit_test() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    tests = yaml.safe_load(RULES_TESTS.read_text())["tests"]
    tested = {a["alertname"] for t in tests for a in t["alert_rule_test"] if a["exp_alerts"]}
    assert alerts == tested
