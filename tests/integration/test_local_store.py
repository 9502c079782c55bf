"""The local store end to end on the real broker: the base worker's real rollups, read from the
rollup topic, written by LocalStoreSink in batches with re-deliveries, checked through `query`
against the workload's ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.kafka.admin import TopicSpec, ensure_topics, partition_count
from pipeline.kafka.reader import read_to_end
from pipeline.loadgen.build import generate
from pipeline.loadgen.produce import produce
from pipeline.sinks.base import SinkRecord
from pipeline.sinks.local import LocalStoreSink
from tests.support.workloads import mixed_spec

from .harness import expected_rollups, wait_for, worker_settings, worker_thread

PARTITIONS = 4
runner = CliRunner()


def rollup_records(bootstrap: str, topic: str) -> list[SinkRecord]:
    records = []
    for msg in read_to_end(bootstrap, topic, range(partition_count(bootstrap, topic))):
        value = msg.value() or b""
        records.append(
            SinkRecord(
                msg.topic(), msg.partition(), msg.offset(), msg.key(), value, orjson.loads(value)
            )
        )
    return records


def query_json(store: Path, sql: str) -> list[dict[str, Any]]:
    result = runner.invoke(app, ["query", sql, "--path", str(store), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.output)
    return rows


@pytest.mark.slow
def test_worker_rollups_stored_locally_match_the_ground_truth_once_each(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    spec = mixed_spec(
        seed=23,
        services=3,
        regions=2,
        duration_s=120.0,
        samples=40_000,
        late_fraction=0.01,
    )
    workload = generate(spec)
    settings = worker_settings(kafka_bootstrap, unique_name)
    ensure_topics(kafka_bootstrap, [TopicSpec(settings.input_topic, PARTITIONS)])
    produce(kafka_bootstrap, settings.input_topic, workload.messages())
    with worker_thread(settings):
        wait_for(settings, PARTITIONS, workload.manifest.samples_total)
    records = rollup_records(kafka_bootstrap, settings.output_topic)
    expected = expected_rollups(workload.truth)
    assert len(records) >= len(expected) > 100

    # The sink runner's view: batches in topic order, a crash that re-delivers the tail of
    # every batch with the next one, and one whole batch delivered twice.
    store = tmp_path / "store"
    sink = LocalStoreSink(store, compact_after=8)
    size, overlap = 250, 60
    starts = range(0, len(records), size)
    for start in starts:
        assert sink.write(records[max(0, start - overlap) : start + size]) == []
    assert sink.write(records[size : 2 * size]) == []
    sink.close()

    rows = query_json(
        store,
        "SELECT series_key, epoch_ms(window_start) AS window_start, count, sum, min, max, "
        "resolution FROM rollups",
    )
    got = {(r["series_key"], r["window_start"]): r for r in rows}
    assert len(got) == len(rows), "a (series, window) appears twice in rollups"
    assert set(got) == set(expected)
    for key, exp in expected.items():
        row = got[key]
        assert row["count"] == exp.count, key
        np.testing.assert_allclose(row["sum"], exp.sum, rtol=1e-9, atol=1e-9)
        assert (row["min"], row["max"]) == (exp.min, exp.max)
        assert row["resolution"] == "10s"

    [totals] = query_json(
        store,
        "SELECT (SELECT count(*) FROM rollups) AS unique_rows, "
        "(SELECT count(*) - count(DISTINCT key) FROM rollups) AS duplicate_keys, "
        "(SELECT count(*) FROM rollups_all) AS stored_rows, "
        "(SELECT sum(count) FROM rollups) AS samples",
    )
    assert totals["duplicate_keys"] == 0
    assert totals["unique_rows"] == len(expected)
    assert totals["stored_rows"] > len(expected)  # the re-deliveries are stored, and hidden
    assert totals["samples"] == sum(e.count for e in expected.values())

    # The analyst's picture of one real timer series, at the worker's resolution.
    [series] = query_json(
        store,
        "SELECT service, region, name, labels FROM rollups WHERE type = 'timer' "
        "ORDER BY series_key LIMIT 1",
    )
    out = tmp_path / "series.png"
    labels = [f"--label={k}={v}" for k, v in series["labels"].items()]
    result = runner.invoke(
        app,
        ["plot", "--service", str(series["service"]), "--region", str(series["region"]),
         "--name", str(series["name"]), *labels, "--resolution", "10s", "--out", str(out),
         "--path", str(store)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 20_000
