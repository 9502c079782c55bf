"""Fixtures: a real Prometheus, VictoriaMetrics and Alertmanager per test (load/tsdb.py and
load/alertmanager.py run them).

Each starts on a free loopback port with its data in the test's tmp dir and is stopped by its
pid at the end. They skip the test only when the server's binary is not installed (Debian:
`apt-get install prometheus victoria-metrics prometheus-alertmanager`); any other start-up
failure fails the test.
Import them in a conftest.py:
``from tests.support.tsdb_servers import prometheus, tsdb, victoria_metrics``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from load.alertmanager import AlertmanagerServer
from load.tsdb import PrometheusServer, TsdbServer, VictoriaMetricsServer


def _require(cls: type[TsdbServer]) -> None:
    if not cls.available():
        pytest.skip(
            f"{cls.binary} is not installed: apt-get install prometheus victoria-metrics "
            "(the remote-write tests need the real servers)"
        )


def start_server(cls: type[TsdbServer], data_dir: Path) -> TsdbServer:
    _require(cls)
    server = cls(data_dir)
    server.start()
    return server


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[PrometheusServer]:
    """Prometheus with the remote-write receiver and a 1 h out-of-order window."""
    _require(PrometheusServer)
    server = PrometheusServer(tmp_path / "prometheus")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[VictoriaMetricsServer]:
    _require(VictoriaMetricsServer)
    server = VictoriaMetricsServer(tmp_path / "victoria-metrics")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=[PrometheusServer, VictoriaMetricsServer], ids=lambda c: c.kind)
def tsdb(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TsdbServer]:
    """Each of the two servers in turn."""
    server = start_server(request.param, tmp_path / request.param.kind)
    try:
        yield server
    finally:
        server.stop()


def require_alertmanager() -> None:
    if not AlertmanagerServer.available():
        pytest.skip(
            f"{AlertmanagerServer.binary} is not installed: apt-get install "
            "prometheus-alertmanager (the alert bridge tests need the real server)"
        )


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[AlertmanagerServer]:
    """Alertmanager with a null receiver and clustering off."""
    require_alertmanager()
    server = AlertmanagerServer(tmp_path / "alertmanager")
    server.start()
    try:
        yield server
    finally:
        server.stop()
