"""Loopback addresses and ports for the processes this project starts itself (the embedded
broker, worker child processes): a free port, `host:port` text, whether something answers,
what an HTTP endpoint answers."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request


def host_port(host: str, port: int) -> str:
    """Format ``host:port``, bracketing IPv6 literals as Kafka clients and URLs expect."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def socket_family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a currently free port on ``host`` (it can be taken again before use)."""
    with socket.socket(socket_family(host), socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def accepts_connections(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts a TCP connection on ``host:port`` now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """(HTTP status, body) of a local endpoint; status 0 if it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, ""
