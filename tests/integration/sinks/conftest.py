"""The real TSDB fixtures (tests/support/tsdb_servers.py) for the sink tests."""

from tests.support.tsdb_servers import prometheus, tsdb, victoria_metrics

__all__ = ["prometheus", "tsdb", "victoria_metrics"]
