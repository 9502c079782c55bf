"""Prometheus remote-write 1.0 sink: rollups → protobuf WriteRequest → snappy → HTTP POST."""

from pipeline.sinks.remote_write.settings import RemoteWriteSettings
from pipeline.sinks.remote_write.sink import RemoteWriteSink

__all__ = ["RemoteWriteSettings", "RemoteWriteSink"]
