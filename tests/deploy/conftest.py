"""The real Alertmanager fixture (tests/support/tsdb_servers.py) for the dashboard queries test."""

from tests.support.tsdb_servers import alertmanager

__all__ = ["alertmanager"]
