"""The sink benchmark runs end to end and verifies what it stored (no timing assertions)."""

from __future__ import annotations

import pytest

from load import sink_bench
from load.tsdb import PrometheusServer, VictoriaMetricsServer


@pytest.mark.slow
def test_sink_bench_runs_and_verifies(kafka_bootstrap: str) -> None:
    for server in (PrometheusServer, VictoriaMetricsServer):
        if not server.available():
            pytest.skip(f"{server.binary} is not installed: apt-get install {server.binary}")
    result = sink_bench.run_once(
        kafka_bootstrap,
        "victoria-metrics",
        rollups=600,
        series=60,
        concurrency=2,
        batch_records=200,
        split=True,
    )
    assert result.verified and result.stored_samples == 600 * sink_bench.samples_per_rollup()
    assert result.runner_cpu_seconds is not None and result.encoder_cpu_seconds is not None
    # Rounded to 10 ms: encoding 600 rollups can take less than 5 ms, so 0.0 is a valid reading.
    assert 0 <= result.encoder_cpu_seconds <= result.sink_cpu_seconds
    argv = ["--rollups", "500", "--series", "50", "--bootstrap-servers", kafka_bootstrap]
    flat = ["--tsdb", "prometheus", "--batch-records", "100", "--naming", "flat"]
    assert sink_bench.main([*argv, *flat]) == 0
