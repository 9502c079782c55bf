"""Fixtures: a real Prometheus, VictoriaMetrics and Alertmanager per test (load/tsdb.py and
load/alertmanager.py run them).

Each starts on a free loopback port with its data in the test's tmp dir and is stopped by its
pid at the end. They skip the test only when the server's binary is not installed (Debian:
`apt-get install prometheus victoria-metrics prometheus-alertmanager`); any other start-up
failure fails the test. A test needing other options starts its own with `running(...)`.
Import them in a conftest.py:
``from tests.support.tsdb_servers import prometheus, tsdb, victoria_metrics``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from load.alertmanager import AlertmanagerServer
from load.tsdb import PrometheusServer, TsdbServer, VictoriaMetricsServer

Server = TypeVar("Server", bound=TsdbServer)


def require(cls: type[TsdbServer]) -> None:
    """Skip the test when the server's Debian package is not installed."""
    if not cls.available():
        pytest.skip(
            f"{cls.binary} is not installed: apt-get install {cls.package} "
            "(these tests need the real server)"
        )


@contextmanager
def running(server: Server) -> Iterator[Server]:
    """`server` started for the block and stopped after it (the test skips without it)."""
    require(type(server))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[PrometheusServer]:
    """Prometheus with the remote-write receiver and a 1 h out-of-order window."""
    with running(PrometheusServer(tmp_path / "prometheus")) as server:
        yield server


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[VictoriaMetricsServer]:
    with running(VictoriaMetricsServer(tmp_path / "victoria-metrics")) as server:
        yield server


@pytest.fixture(params=[PrometheusServer, VictoriaMetricsServer], ids=lambda c: c.kind)
def tsdb(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TsdbServer]:
    """Each of the two servers in turn."""
    with running(request.param(tmp_path / request.param.kind)) as server:
        yield server


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[AlertmanagerServer]:
    """Alertmanager with a null receiver and clustering off."""
    with running(AlertmanagerServer(tmp_path / "alertmanager")) as server:
        yield server
