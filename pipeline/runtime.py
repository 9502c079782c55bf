"""How every long-running command runs: a `Process` (`run(stop)`, its metrics, its health) and
one `serve()` that owns everything around it — logging, SIGTERM/SIGINT, the /metrics /healthz
/readyz server (started and stopped), one thread per process, and the first error raised.

The demo, which drives its own progress bars on the main thread, uses the same
`ThreadSupervisor` without the signals and the HTTP server. `worker --processes N`
(pipeline/supervise.py) uses the signals and the HTTP server around its child processes.
"""

from __future__ import annotations

import gc
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry

from pipeline.observability import (
    AllHealthy,
    Health,
    LabelledRegistries,
    configure_logging,
    serve_http,
)

if TYPE_CHECKING:
    from pipeline.common_settings import CommonSettings

#: How long a stopping process gets to commit and close before it is left behind.
JOIN_TIMEOUT_S = 60.0

#: Cyclic garbage collector thresholds for the long-running processes (Python's default is
#: (700, 10, 10)). A stage allocates thousands of short-lived containers per batch (records,
#: parsed samples, delivery callbacks), nearly all freed by reference counting, so the default
#: collects young objects hundreds of times a second for nothing and runs a full collection
#: every few seconds; measured in the catch-up benchmark, a full collection paused the worker
#: for up to 120 ms of CPU and the collector took ~14 % of the worker's CPU.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_garbage_collector() -> None:
    """Freeze what start-up built (modules, settings, the processes: never garbage, no
    longer scanned) and collect young objects less often (see GC_THRESHOLDS)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class HasRegistry(Protocol):
    @property
    def registry(self) -> CollectorRegistry: ...


class Process(Protocol):
    """A long-running part: it works until `stop` is set (or raises), exporting its metrics
    and telling /healthz and /readyz how it is doing."""

    @property
    def metrics(self) -> HasRegistry: ...

    @property
    def health(self) -> Health: ...

    def run(self, stop: threading.Event) -> None: ...


class Closing:
    """A process that owns a resource to release once it has stopped (a sink's files or HTTP
    client): `close` runs after `run`, also when run raises."""

    def __init__(self, process: Process, close: Callable[[], None]) -> None:
        self._process = process
        self._close = close

    @property
    def metrics(self) -> HasRegistry:
        return self._process.metrics

    @property
    def health(self) -> Health:
        return self._process.health

    def run(self, stop: threading.Event) -> None:
        try:
            self._process.run(stop)
        finally:
            self._close()


class ThreadSupervisor:
    """Processes on threads sharing one stop event: the first to fail stops the others, and
    leaving the `with` block stops and joins them all. `raise_first_error()` re-raises it."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()
        self.errors: dict[str, BaseException] = {}  # process name → what it raised
        self._threads: dict[str, threading.Thread] = {}

    def start(self, name: str, process: Process) -> None:
        def run() -> None:
            try:
                process.run(self.stop)
            except BaseException as exc:  # one failed part stops the others
                self.errors.setdefault(name, exc)
                self.stop.set()

        thread = threading.Thread(target=run, name=name)
        self._threads[name] = thread
        thread.start()

    def running(self, name: str) -> bool:
        return self._threads[name].is_alive()

    def wait(self) -> None:
        """Until every process has returned (a short join, so signal handlers get to run)."""
        for thread in self._threads.values():
            while thread.is_alive():
                thread.join(0.5)

    def shutdown(self, timeout_s: float = JOIN_TIMEOUT_S) -> None:
        self.stop.set()
        for thread in self._threads.values():
            if thread.is_alive():
                thread.join(timeout_s)

    def raise_first_error(self) -> None:
        for error in self.errors.values():
            raise error

    def __enter__(self) -> ThreadSupervisor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()


def serve(
    settings: CommonSettings,
    build: Callable[[], Mapping[str, Process]],
    *,
    label: str | None = None,
) -> None:
    """Run the processes `build` returns until SIGTERM/SIGINT or the first error (re-raised).

    Logging is configured before `build`, so the processes' start-up is logged as configured.
    With several processes, /metrics labels each one's samples `label=<its name>` and /readyz
    is ready when all are."""
    configure_logging(settings.log_level, settings.log_format)
    with stop_on_signals() as stop:
        processes = build()
        tune_garbage_collector()
        with _http_endpoint_of(settings, processes, label):
            with ThreadSupervisor(stop) as supervisor:
                for name, process in processes.items():
                    supervisor.start(name, process)
                supervisor.wait()
            supervisor.raise_first_error()


@contextmanager
def http_endpoint(
    host: str, port: int, registry: CollectorRegistry, health: Health
) -> Iterator[None]:
    """/metrics, /healthz and /readyz on host:port while the block runs (port 0: none)."""
    if not port:
        yield
        return
    server = serve_http(host, port, registry, health)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def _http_endpoint_of(
    settings: CommonSettings, processes: Mapping[str, Process], label: str | None
) -> AbstractContextManager[None]:
    """The endpoint of `serve`: one process's registry as it is, or several labelled."""
    from pipeline.selfmetrics import add_process_collectors

    if not settings.http_port:
        return nullcontext()
    if len(processes) == 1 and label is None:
        (process,) = processes.values()
        registry = process.metrics.registry
        health = process.health
    else:
        registry = CollectorRegistry()
        registry.register(
            LabelledRegistries(
                label or "process", {name: p.metrics.registry for name, p in processes.items()}
            )
        )
        health = AllHealthy([p.health for p in processes.values()])
    add_process_collectors(registry)
    return http_endpoint(settings.http_host, settings.http_port, registry, health)


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event SIGTERM and SIGINT set; the previous handlers are back afterwards."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
