"""The PromQL an SRE writes against the remote-written series, answered by a real Prometheus and
a real VictoriaMetrics, equals numpy over the raw samples.

Raw load (a few services and regions, 10 minutes of event time inside the last full clock hour,
so the hour's window has closed) → the real worker at 1 m → a real tier 1 m → 1 h → two sink
runners with RemoteWriteSink (default naming) → both TSDBs → /api/v1/query.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import replace
from typing import Any

import httpx
import numpy as np
import pytest

from load.tsdb import PrometheusServer, TsdbServer, VictoriaMetricsServer
from pipeline.kafka.tier_worker import TierWorker
from pipeline.loadgen.build import Workload, generate
from pipeline.settings import TierSettings

from ..harness import read_outputs, stage_thread, worker_settings
from .helpers import real_rollups, recent_spec, runner_thread, sink_settings, topic_ends
from .helpers import wait_committed as wait_stored

HOUR_MS = 3_600_000
MINUTE_MS = 60_000


def hour_workload(seed: int = 11) -> tuple[Workload, int]:
    """10 minutes of load ending 10 minutes before the last full hour; returns the hour's end."""
    hour_end = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    spec = recent_spec(seed=seed, duration_s=600.0, samples=30_000, cumulative_counters=0)
    return generate(replace(spec, start_ms=hour_end - 20 * MINUTE_MS)), hour_end


def query(server: TsdbServer, promql: str, at_ms: int) -> dict[tuple[str, ...], float]:
    """Instant query at `at_ms`: {label values in label-name order: value}."""
    if isinstance(server, VictoriaMetricsServer):
        httpx.get(server.base_url + "/internal/force_flush", timeout=30).raise_for_status()
    response = httpx.get(
        server.base_url + "/api/v1/query",
        params={"query": promql, "time": f"{at_ms / 1000:.3f}"},
        timeout=30,
    )
    response.raise_for_status()
    result = response.json()["data"]["result"]
    return {tuple(v for _, v in sorted(r["metric"].items())): float(r["value"][1]) for r in result}


def raw_by_series(work: Workload, name: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """series index → (ts, value) of the raw samples of metric `name`."""
    truth = work.truth
    out = {}
    for index, series in enumerate(truth.series):
        if series.name == name:
            mask = truth.series_key == index
            out[index] = (truth.ts[mask], truth.value[mask])
    assert out, f"the workload has no {name}"
    return out


def assert_close(got: dict[tuple[str, ...], float], want: dict[tuple[str, ...], float]) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-9), key


@pytest.mark.slow
def test_sre_queries_match_numpy_over_the_raw_samples(
    kafka_bootstrap: str,
    unique_name: str,
    prometheus: PrometheusServer,
    victoria_metrics: VictoriaMetricsServer,
) -> None:
    work, hour_end = hour_workload()
    minute_topic = real_rollups(kafka_bootstrap, unique_name, work.spec, ("1m",))[0]
    base = worker_settings(
        kafka_bootstrap, f"{unique_name}-1m", rollup_topic_prefix=f"rollups-{unique_name}."
    )
    hour = TierSettings(
        bootstrap_servers=kafka_bootstrap,
        group_id=f"tier-{unique_name}",
        rollup_topic_prefix=base.rollup_topic_prefix,
        deadletter_topic=base.deadletter_topic,
        checkpoint_topic=base.checkpoint_topic,
        input_resolution="1m",
        resolution="1h",
        idle_timeout="2s",
        session_timeout_ms=6000,
        http_port=0,
        topic_partitions=4,
    )
    total = work.manifest.samples_total
    with stage_thread(TierWorker(hour)):
        deadline = time.monotonic() + 120
        while read_outputs(hour).samples_in_rollups < total and time.monotonic() < deadline:
            time.sleep(0.5)
    assert read_outputs(hour).samples_in_rollups == total
    topics = [minute_topic, hour.output_topic]
    servers: list[TsdbServer] = [prometheus, victoria_metrics]
    for server in servers:
        settings = sink_settings(
            kafka_bootstrap, f"{unique_name}-{server.kind}", server.write_url, topics
        )
        with runner_thread(settings) as runner:
            wait_stored(runner, topic_ends(kafka_bootstrap, topics))
            assert runner.totals.rejected == 0

    durations = raw_by_series(work, "http.server.duration")
    worst_p99: dict[tuple[str, ...], float] = defaultdict(float)
    for index, (ts, values) in durations.items():
        service = work.truth.series[index].service
        for window in np.unique(ts // MINUTE_MS):
            in_window = values[ts // MINUTE_MS == window]
            p99 = float(np.quantile(in_window, 0.99)) / 1000  # ms → s
            worst_p99[(service,)] = max(worst_p99[(service,)], p99)

    requests = raw_by_series(work, "http.requests")
    last_window_end = max(int(ts.max()) for ts, _ in requests.values()) // MINUTE_MS * MINUTE_MS
    rate: dict[tuple[str, ...], float] = defaultdict(float)
    increase: dict[tuple[str, ...], float] = defaultdict(float)
    for index, (ts, values) in requests.items():
        region = (work.truth.series[index].region,)
        last = (ts >= last_window_end - MINUTE_MS) & (ts < last_window_end)
        rate[region] += float(values[last].sum()) / 60
        increase[region] += float(values.sum())

    rss_max = {
        (s.region, s.service): float(values.max()) * 1048576  # MiBy → bytes
        for index, (_, values) in raw_by_series(work, "process.memory.rss").items()
        for s in [work.truth.series[index]]
    }

    # Every service, region and series answers: the comparisons below are not vacuous.
    assert (len(worst_p99), len(rate), len(increase), len(rss_max)) == (3, 2, 2, 6)
    for server in servers:
        # Worst p99 per service over the hour, from the 1 m tier. The 1 m windows hold few
        # enough samples for the digest to keep each value (exact, as np.quantile's linear rule).
        got = query(
            server,
            "max by (service) (max_over_time("
            'http_server_duration_seconds:1m_quantiles{quantile="0.99"}[1h]))',
            hour_end,
        )
        assert_close(got, dict(worst_p99))
        # Request rate per region in the last minute, and requests per region over the hour.
        got = query(server, "sum by (region) (http_requests_total:1m_rate)", last_window_end)
        assert_close(got, dict(rate))
        got = query(
            server,
            "sum by (region) (sum_over_time(http_requests_total:1m_increase[1h]))",
            hour_end,
        )
        assert_close(got, dict(increase))
        # The 1 h tier: its sample sits at the hour's end, the only one in the range. Queried a
        # millisecond later: VictoriaMetrics looks a series up in the per-day index of the
        # query's days, and a range ending exactly at midnight leaves out the new day, so at
        # 00:00 UTC the sample stamped 00:00:00.000 is not found (this test failed between
        # 00:00 and 01:00 UTC; its own issue tracker knows it).
        got = query(
            server,
            "max by (region, service) (max_over_time(process_memory_rss_bytes:1h_max[1h]))",
            hour_end + 1,
        )
        assert_close(got, rss_max)
        assert_metadata_not_kept(server)


def assert_metadata_not_kept(server: TsdbServer) -> None:
    """Both servers took the requests that carried metadata (the data above landed), but
    neither keeps remote-written metadata: Prometheus 2.42's receiver ignores the field and
    VictoriaMetrics 1.79 answers /api/v1/metadata with an empty placeholder. This fails when a
    newer package starts keeping it — then assert the families' types and units here."""
    response = httpx.get(server.base_url + "/api/v1/metadata", timeout=30)
    response.raise_for_status()
    data: dict[str, Any] = response.json()["data"]
    assert not [name for name in data if ":1m_" in name or ":1h_" in name], data
