"""The demo's example query for the TSDB it remote-wrote to."""

from __future__ import annotations

import io

from rich.console import Console

from pipeline.demo.sinks import print_remote_write_query


def test_the_demo_prints_a_runnable_query_for_the_tsdb() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, color_system=None)
    print_remote_write_query(console, "http://127.0.0.1:8428/api/v1/write", 1_767_225_930_001)
    text = out.getvalue()
    # One line, not wrapped at 80 columns: it is meant to be pasted into a shell.
    command = next(line.strip() for line in text.splitlines() if "curl" in line)
    assert command.startswith("curl -G http://127.0.0.1:8428/api/v1/query ")
    assert 'http_server_duration_seconds:1m_quantiles{quantile="0.99"}[1h]' in command
    assert command.endswith("-d time=1767225960")  # the load's end, rounded up to the minute
