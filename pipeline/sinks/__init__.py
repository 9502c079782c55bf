"""Sinks: processes that consume rollup topics and store them (remote-write TSDB, local Parquet)."""
