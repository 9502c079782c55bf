"""The real TSDB fixtures (tests/tsdb_servers.py) for the sink tests."""

from tsdb_servers import prometheus, tsdb, victoria_metrics

__all__ = ["prometheus", "tsdb", "victoria_metrics"]
