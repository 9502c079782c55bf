"""`metrics-pipeline broker`: the embedded broker (pipeline/kafka/broker.py) in the foreground."""

from __future__ import annotations

import signal
import threading
from types import FrameType

from pipeline.kafka.broker import MEMORY_STORAGE, BrokerError, EmbeddedBroker


def run_embedded_broker(
    port: int = 9092, host: str = "127.0.0.1", storage: str = MEMORY_STORAGE
) -> None:
    """Run the embedded broker in the foreground until SIGINT or SIGTERM.

    This is ``metrics-pipeline broker``. Prints where it listens. Raises ``BrokerError`` if the
    port is taken or the broker dies.
    Signal handlers are installed only when called from the main thread; from another thread,
    stop it by raising ``KeyboardInterrupt`` or ending the process.
    """
    stop_requested = threading.Event()

    def _request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {
            sig: signal.signal(sig, _request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
    broker = EmbeddedBroker(port=port, host=host, log_path=None, storage=storage)
    kept = "memory only" if storage == MEMORY_STORAGE else f"storage {storage}"
    try:
        with broker:
            print(
                f"Kafka-compatible broker (Tansu, {kept}) listening on "
                f"{broker.bootstrap_servers} — pid {broker.pid}, log {broker.log_path}. "
                "Ctrl-C to stop.",
                flush=True,
            )
            while not stop_requested.wait(0.5):
                if not broker.running:
                    raise BrokerError(
                        f"the embedded broker exited unexpectedly; log tail:\n{broker.log_tail()}"
                    )
    finally:
        for sig, handler in previous.items():
            # None means "not installed from Python"; the default is the closest restorable.
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
