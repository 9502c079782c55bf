"""The real Alertmanager fixture (tests/tsdb_servers.py) for the alert bridge tests."""

from tsdb_servers import alertmanager

__all__ = ["alertmanager"]
