"""The benchmark itself, reduced: it runs end to end on the session broker and its verification
passes. No timing is asserted (CI machines are noisy); `make bench` is the real measurement."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from load import bench


@pytest.mark.slow
def test_reduced_benchmark_runs_and_verifies(kafka_bootstrap: str, tmp_path: Path) -> None:
    status = bench.main(
        [
            "--bootstrap-servers",
            kafka_bootstrap,
            "--samples",
            "20000",
            "--runs",
            "1",
            "--encoding",
            "single-labelled",  # the single encoding with labels on every name
            "--multi-process",
            "single-labelled",
            "--hot-samples",
            "150000",
            "--memory-series",
            "2000",
            "--live-seconds",
            "0",  # load/live.py runs in `make bench`; here it would only add a minute
            "--results-dir",
            str(tmp_path),
        ]
    )
    assert status == 0
    (written,) = tmp_path.glob("*.json")
    results = orjson.loads(written.read_bytes())
    assert results["verified"] is True
    (run,) = results["encodings"]["single-labelled"]["runs"]
    # every name labelled, two label values each: twice the standard workload's series, each
    # matched to its own rollups by the verification
    assert results["encodings"]["single-labelled"]["workload"]["series"] == 2_000
    assert run["verification"]["ok"], run["verification"]["problems"]
    assert run["verification"]["samples_in_rollups"] == 20_000
    assert (
        run["worker"]["rollups"]
        == results["encodings"]["single-labelled"]["workload"]["expected_rollups"]
    )
    # the same run with one group member per usable CPU (a supervisor of child workers)
    assert run["verification_auto"]["ok"], run["verification_auto"]["problems"]
    assert run["worker_auto"]["processes"] == len(os.sched_getaffinity(0))
    assert run["worker_auto"]["rollups"] == run["worker"]["rollups"]
    median = results["encodings"]["single-labelled"]["median"]
    assert median["auto_speedup"] > 0 and median["cpu_ratio"] > 0
    assert results["limit_consumer"]["settings"]
    assert results["accuracy"]["windows"] > 0
    assert results["memory"]["open_windows"] == 2_000
