"""`metrics-pipeline worker --processes N|auto`: N rollup workers as child processes, one endpoint.

A Python process does its Python work on one core, so a machine's cores are used by more group
members. Each child is an ordinary `metrics-pipeline worker` (same options, same consumer group:
partition assignment, checkpoints and commits work exactly as with separately started workers)
with its own /metrics on a loopback port chosen here. This process only supervises:

- /metrics serves the children's metrics merged into one (pipeline/merged_metrics.py) plus its
  own: configured and running children, restarts;
- /healthz and /readyz answer 200 only when every child is running and says so itself;
- a child that exits while the supervisor runs is started again after a back-off (1 s, doubled
  per quick failure up to 30 s; reset once a child has run for 60 s), counted in
  `metrics_pipeline_worker_process_restarts_total`;
- SIGTERM/SIGINT is passed to every child (each drains and commits as a lone worker would); the
  supervisor exits once all have, with status 0 only if every child exited with 0. Children get
  SIGTERM from the kernel should the supervisor itself die (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from pipeline.errors import ConfigError
from pipeline.loopback import free_port, http_get
from pipeline.merged_metrics import Family, MergedChildren, parse_exposition
from pipeline.observability import Health
from pipeline.runtime import http_endpoint, stop_on_signals

log = structlog.get_logger("supervise")

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0  # a child that ran this long restarts after the first back-off again
STOP_GRACE_S = 60.0  # SIGKILL for children still running this long after SIGTERM
_PR_SET_PDEATHSIG = 1


def process_count(value: str) -> int:
    """`auto` → the CPUs this process may run on (affinity, not the machine's count); else N≥1."""
    if value == "auto":
        return len(os.sched_getaffinity(0))
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(f"--processes must be a positive number or auto, not {value!r}")
    return count


_SET_PER_CHILD = ("--processes", "--http-port", "--http-host")


def child_arguments(argv: list[str]) -> list[str]:
    """The `worker` command's options as given on this command line (`argv`, e.g. sys.argv),
    for a child: without --processes and the HTTP address, which the supervisor sets."""
    args = argv[argv.index("worker") + 1 :]
    out: list[str] = []
    skip_value = False
    for arg in args:
        if skip_value:
            skip_value = False
        elif arg in _SET_PER_CHILD:
            skip_value = True
        elif not arg.startswith(tuple(f"{option}=" for option in _SET_PER_CHILD)):
            out.append(arg)
    return out


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """One slot: the process running in it now, and when it may be started again."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    started: float = 0.0
    backoff_s: float = FIRST_BACKOFF_S
    restart_at: float = 0.0
    last_metrics: dict[str, Family] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class WorkerProcessSupervisor:
    """`worker --processes N`: N worker child processes kept running, their metrics merged."""

    def __init__(self, count: int, child_args: list[str]) -> None:
        self.children = [Child(i) for i in range(count)]
        self._child_args = child_args
        self._lock = threading.Lock()  # children's processes and ports vs. the HTTP threads
        self.registry = CollectorRegistry()
        p = "metrics_pipeline_worker_process"
        Gauge(p + "es", "Worker child processes configured.", registry=self.registry).set(count)
        Gauge(
            p + "es_running", "Worker child processes running now.", registry=self.registry
        ).set_function(lambda: sum(c.running for c in self.children))
        self.restarts = Counter(
            p + "_restarts",
            "Worker child processes started again after exiting (the log says how each ended).",
            registry=self.registry,
        )
        self.merged = MergedChildren(self._scrape_children)
        self.registry.register(self.merged)
        self.health = ChildrenHealth(self)

    # -- process management (main thread only: PR_SET_PDEATHSIG follows the forking thread)

    def start(self, child: Child) -> None:
        port = free_port()
        argv = [sys.executable, "-m", "pipeline.cli", "worker", *self._child_args]
        argv += ["--http-host", "127.0.0.1", "--http-port", str(port)]
        process = subprocess.Popen(argv, preexec_fn=_die_with_parent)
        if child.started:  # this slot's process ran before: a restart
            self.restarts.inc()
        with self._lock:
            child.process, child.port, child.started = process, port, time.monotonic()
        log.info("worker process started", index=child.index, pid=process.pid)

    def tend(self) -> None:
        """Start children whose back-off has passed; schedule the ones that exited."""
        now = time.monotonic()
        for child in self.children:
            if child.process is None:
                if now >= child.restart_at:
                    self.start(child)
                continue
            code = child.process.poll()
            if code is None:
                continue
            ran = now - child.started
            child.backoff_s = FIRST_BACKOFF_S if ran >= STABLE_AFTER_S else child.backoff_s
            child.restart_at = now + child.backoff_s
            log.warning(
                "worker process exited; restarting",
                index=child.index,
                pid=child.process.pid,
                exit_code=code,
                ran_s=round(ran, 1),
                restart_in_s=child.backoff_s,
            )
            child.backoff_s = min(child.backoff_s * 2, MAX_BACKOFF_S)
            with self._lock:
                self.merged.retire(child.last_metrics)
                child.last_metrics = {}
                child.process = None

    def stop(self) -> int:
        """SIGTERM every child, wait for all (SIGKILL after the grace); 0 if all exited 0."""
        running = [c.process for c in self.children if c.process is not None]
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        status = 0
        for process in running:
            try:
                code = process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker process ignored SIGTERM; killing it", pid=process.pid)
                process.kill()
                code = process.wait()
            status = status or (0 if code == 0 else 1)
        return status

    def run(self, stop: threading.Event, poll_s: float = 0.2) -> int:
        try:
            while not stop.is_set():
                self.tend()
                stop.wait(poll_s)
        finally:
            status = self.stop()
        return status

    # -- HTTP side (handler threads)

    def _scrape_children(self) -> list[dict[str, Family]]:
        with self._lock:
            live = [c for c in self.children if c.running]

        def one(child: Child) -> dict[str, Family]:
            process = child.process
            status, text = http_get(child.url("/metrics"))
            with self._lock:
                # kept only if that process still holds the slot (not retired meanwhile)
                if status == 200 and child.process is process:
                    child.last_metrics = parse_exposition(text)
                return child.last_metrics

        if not live:
            return []
        with ThreadPoolExecutor(len(live)) as pool:
            return list(pool.map(one, live))


class ChildrenHealth(Health):
    """Alive and ready only when every child process runs and its own endpoint says so."""

    def __init__(self, supervisor: WorkerProcessSupervisor) -> None:
        super().__init__()
        self._supervisor = supervisor

    def _failing(self, path: str) -> list[str]:
        problems = []
        for child in self._supervisor.children:
            if not child.running:
                problems.append(f"worker process {child.index}: not running (restarting)")
                continue
            status, body = http_get(child.url(path))
            if status != 200:
                said = body.strip() or "no answer"
                problems.append(f"worker process {child.index}: {said}")
        return problems

    @property
    def alive(self) -> bool:
        return not self._failing("/healthz")

    @property
    def ready(self) -> bool:
        return not self._failing("/readyz")

    @property
    def reason(self) -> str | None:
        return "; ".join(self._failing("/readyz")) or None


def supervise_workers(
    processes: str, http_host: str, http_port: int, argv: list[str] | None = None
) -> int:
    """Run `processes` workers, each with the options of the `worker` command line `argv`
    (sys.argv by default; environment and --config are inherited as they are), until SIGTERM
    or SIGINT; serve the merged endpoint on http_host:http_port (0: none). Returns the exit
    status."""
    arguments = child_arguments(sys.argv if argv is None else argv)
    supervisor = WorkerProcessSupervisor(process_count(processes), arguments)
    with (
        stop_on_signals() as stop,
        http_endpoint(http_host, http_port, supervisor.registry, supervisor.health),
    ):
        log.info("supervising worker processes", processes=len(supervisor.children))
        return supervisor.run(stop)
