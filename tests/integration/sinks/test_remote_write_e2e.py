"""Real rollups (the real worker on generated load) → sink runner + RemoteWriteSink → a real
Prometheus / VictoriaMetrics → read back over HTTP: every stored value equals its rollup."""

from __future__ import annotations

import pytest

from load.tsdb import TsdbServer, VictoriaMetricsServer

from .helpers import (
    differences,
    expected_points,
    real_rollups,
    recent_spec,
    rollup_bodies,
    runner_thread,
    sink_settings,
    topic_ends,
    wait_committed,
)

#: VictoriaMetrics keeps values as decimal mantissa/exponent pairs, not binary doubles: it
#: returns 0.30000000000000004 as 0.3. Prometheus returns every double exactly.
VM_RELATIVE_PRECISION = 1e-12


@pytest.mark.slow
def test_rollups_of_two_resolutions_land_exactly(
    kafka_bootstrap: str, unique_name: str, tsdb: TsdbServer
) -> None:
    topics = real_rollups(kafka_bootstrap, unique_name, recent_spec(), ("10s", "1m"))
    rollups = rollup_bodies(kafka_bootstrap, topics)
    resolutions = {r["resolution"] for r in rollups}
    assert resolutions == {"10s", "1m"}
    settings = sink_settings(kafka_bootstrap, unique_name, tsdb.write_url, topics)
    with runner_thread(settings) as runner:
        wait_committed(runner, topic_ends(kafka_bootstrap, topics))
        totals = runner.totals
        assert totals.stored == len(rollups)
        assert totals.rejected == totals.unreadable == 0

    expected = expected_points(rollups)
    stored = tsdb.samples('{__name__=~".+"}')
    rel = VM_RELATIVE_PRECISION if isinstance(tsdb, VictoriaMetricsServer) else 0.0
    problems = differences(stored, expected, rel)
    assert not problems, f"{len(problems)} differences, e.g. {problems[:5]}"
    # Several series and windows, every statistic: the comparison above was not vacuous.
    names = {dict(k)["__name__"] for k in stored}
    assert {
        "http_server_duration_seconds:10s_quantiles",
        "http_server_duration_seconds:1m_count_samples",
        "bytes_sent_total:1m_rate",
    } <= names
    assert len({dict(k)["service"] for k in stored}) == 3
    assert sum(len(v) for v in stored.values()) >= 10 * len(rollups) // 2
