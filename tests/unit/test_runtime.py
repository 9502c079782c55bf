"""runtime.serve, the one supervision of every process command: HTTP up while the processes run
and down after, SIGTERM stops them, the first error stops the others and is raised.

The processes here are minimal implementations of the Process protocol (no Kafka): what is
under test is the supervision around them, not a pipeline stage."""

from __future__ import annotations

import gc
import os
import signal
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter

from pipeline.common_settings import CommonSettings
from pipeline.errors import PipelineError
from pipeline.observability import Health
from pipeline.runtime import GC_THRESHOLDS, Closing, ThreadSupervisor, serve


@pytest.fixture(autouse=True)
def _restore_garbage_collector() -> Iterator[None]:
    """serve() tunes the process's garbage collector: give the test session its own back."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.turns = Counter("turns", "Loop turns.", registry=self.registry)


class Loop:
    """Turns until stopped; `then` runs once, on the first turn."""

    def __init__(self, then: object = None) -> None:
        self.metrics = Metrics()
        self.health = Health()
        self.health.set_ready(True)
        self.then = then
        self.stopped = False

    def run(self, stop: threading.Event) -> None:
        first = True
        while not stop.wait(0.02):
            self.health.beat()
            self.metrics.turns.inc()
            if first and callable(self.then):
                first = False
                self.then()
        self.stopped = True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_http_serves_while_running_and_stops_after_sigterm() -> None:
    port = free_port()
    seen: dict[str, tuple[int, str]] = {}

    def look_then_terminate() -> None:
        seen["readyz"] = get(port, "/readyz")
        seen["metrics"] = get(port, "/metrics")
        os.kill(os.getpid(), signal.SIGTERM)

    loops = {"a": Loop(then=look_then_terminate), "b": Loop()}
    before = signal.getsignal(signal.SIGTERM)
    serve(CommonSettings(http_port=port), lambda: loops, label="part")

    assert seen["readyz"][0] == 200
    status, text = seen["metrics"]
    assert status == 200
    assert 'turns_total{part="a"}' in text and 'turns_total{part="b"}' in text
    assert "process_cpu_seconds_total" in text or "python_info" in text
    assert all(loop.stopped for loop in loops.values())
    assert signal.getsignal(signal.SIGTERM) is before
    with pytest.raises(OSError):  # the server is gone with the processes
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_the_processes_run_with_the_start_up_frozen_and_fewer_collections() -> None:
    seen: dict[str, object] = {}

    def look_then_terminate() -> None:
        seen["thresholds"] = gc.get_threshold()
        seen["frozen"] = gc.get_freeze_count()
        os.kill(os.getpid(), signal.SIGTERM)

    serve(CommonSettings(http_port=0), lambda: {"a": Loop(then=look_then_terminate)})
    assert seen["thresholds"] == GC_THRESHOLDS
    assert isinstance(seen["frozen"], int) and seen["frozen"] > 1000


def test_the_first_error_stops_the_others_and_is_raised() -> None:
    def fail() -> None:
        raise PipelineError("broken input")

    healthy = Loop()
    with pytest.raises(PipelineError, match="broken input"):
        serve(CommonSettings(http_port=0), lambda: {"bad": Loop(then=fail), "good": healthy})
    assert healthy.stopped


def test_closing_releases_after_run_even_when_it_raises() -> None:
    released: list[str] = []

    def fail() -> None:
        raise PipelineError("sink refused")

    with ThreadSupervisor() as supervisor:
        supervisor.start("sink", Closing(Loop(then=fail), lambda: released.append("closed")))
        supervisor.wait()
    assert released == ["closed"]
    assert list(supervisor.errors) == ["sink"]
    with pytest.raises(PipelineError, match="sink refused"):
        supervisor.raise_first_error()
