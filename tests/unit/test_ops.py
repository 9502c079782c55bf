"""Operator helpers without a broker: config show's sources and masking, tail's rendering and
filters, event-time anchoring, librdkafka log rate limiting."""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from pipeline.kafka.logs import RateLimitedLibrdkafkaLogs
from pipeline.loadgen.anchor import event_start_ms
from pipeline.ops.config_show import MASK, effective_settings
from pipeline.ops.tail import Record, TableWriter, TailOptions, json_line, matches
from pipeline.settings import WorkerSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("METRICS_PIPELINE_"):
            monkeypatch.delenv(name)


def test_config_show_names_sources_and_masks_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "resolution: 1m\nkafka_config:\n  sasl.username: u\n  sasl.password: hunter2\n"
    )
    monkeypatch.setenv("METRICS_PIPELINE_GROUP_ID", "from-env")
    shown = {
        s.name: s
        for s in effective_settings(WorkerSettings, config, {"bootstrap_servers": "flag:9092"})
    }
    assert (shown["bootstrap_servers"].source, shown["bootstrap_servers"].value) == (
        "flag",
        "flag:9092",
    )
    assert (shown["group_id"].source, shown["group_id"].value) == ("env", "from-env")
    assert (shown["resolution"].source, shown["resolution"].value) == ("file", "1m")
    assert (shown["idle_timeout"].source, shown["idle_timeout"].value) == ("default", "30s")
    assert shown["kafka_config"].value == {"sasl.username": "u", "sasl.password": MASK}
    assert "hunter2" not in repr(shown)


def rollup(series: str, start: int) -> bytes:
    return orjson.dumps(
        {
            "series_key": series,
            "resolution": "10s",
            "window_start": start,
            "count": 3,
            "mean": 2.5,
            "percentiles": {"p99": 4.0},
            "rate": 0.3,
        }
    )


def deadletter(reason: str) -> bytes:
    return orjson.dumps(
        {
            "reason": reason,
            "stage": "worker",
            "topic": "metrics.raw",
            "partition": 1,
            "offset": 7,
            "samples": 1,
            "error": "bad",
        }
    )


def record(raw: bytes, offset: int = 0) -> Record:
    return Record(0, offset, orjson.loads(raw), raw)


def test_tail_filters_by_series_and_reason() -> None:
    a, b = record(rollup("svc|eu|lat", 0)), record(rollup("svc|us|lat", 0))
    assert [matches(r, TailOptions(series="|eu|")) for r in (a, b)] == [True, False]
    late, bad = record(deadletter("late")), record(deadletter("malformed_json"))
    assert [matches(r, TailOptions(reason="late")) for r in (late, bad)] == [True, False]


def test_tail_table_has_a_header_per_kind_and_json_is_the_record() -> None:
    lines: list[str] = []
    table = TableWriter(lines.append)
    for offset, raw in enumerate(
        [rollup("s|r|n", 1_767_225_600_000), rollup("s|r|m", 0), deadletter("late")]
    ):
        table.write(record(raw, offset))
    assert lines[0].split()[:3] == ["p@offset", "window", "res"]
    assert lines[1].split()[:4] == ["0@0", "2026-01-01T00:00:00Z", "10s", "s|r|n"]
    assert lines[3].split()[:2] == ["p@offset", "reason"]
    assert lines[4].split()[:3] == ["0@2", "late", "worker"]
    assert len(lines) == 5
    assert orjson.loads(json_line(record(deadletter("late")))) == orjson.loads(deadletter("late"))


def test_event_time_is_anchored_to_now_unless_fixed() -> None:
    before = time.time() * 1000
    start = event_start_ms(300.0)
    assert start % 60_000 == 0
    assert before - 6 * 60_000 <= start <= before - 300_000
    fixed = datetime(2026, 1, 1, tzinfo=UTC)
    assert (
        event_start_ms(300.0, fixed) == event_start_ms(0, datetime(2026, 1, 1)) == 1_767_225_600_000
    )


def test_librdkafka_logs_are_rate_limited_per_complaint(capsys: pytest.CaptureFixture[str]) -> None:
    handler = RateLimitedLibrdkafkaLogs(interval=60.0)

    def emit(text: str) -> None:
        handler.emit(
            logging.LogRecord(
                "k", logging.ERROR, "", 0, "%s [%s] %s", ("FAIL", "rdkafka#consumer-1", text), None
            )
        )

    for port in range(50):
        emit(
            f"[thrd:b/bootstrap]: 127.0.0.1:{port}/bootstrap: Connect to ipv4#127.0.0.1:{port} "
            f"failed: Connection refused (after {port}ms in state CONNECT)"
        )
    out = capsys.readouterr().out
    assert out.count("Connection refused") == 1
    assert (
        handler.last_warning
        == "Connect to ipv4#127.0.0.1:49 failed: Connection refused (after 49ms in state CONNECT)"
    )


def test_version_option_prints_the_installed_version() -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.selfmetrics import package_version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"metrics-pipeline {package_version()}\n"
    assert package_version() != "unknown"


def test_config_show_command_masks_in_its_output(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    monkeypatch.setenv("METRICS_PIPELINE_KAFKA_CONFIG", '{"sasl.password": "hunter2"}')
    result = CliRunner().invoke(app, ["config", "show", "tier", "--bootstrap-servers", "k:9092"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split(None, 2)[1:] for line in result.output.splitlines()}
    assert lines["bootstrap_servers"] == ["flag", '"k:9092"']
    assert lines["kafka_config"] == ["env", '{"sasl.password":"***"}']
    assert lines["chain"] == ["default", '["10s","1m","5m","1h"]']
    assert "hunter2" not in result.output
