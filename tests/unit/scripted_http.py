"""A loopback HTTP server answering a scripted sequence of statuses, recording each request.

A fake, for the faults real servers cannot be made to show on demand (429, 503, 401 answers)
and to read the headers a client sent; the real servers are exercised in tests/integration/.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class Scripted:
    def __init__(self) -> None:
        self.answers: list[tuple[int, str, dict[str, str]]] = []
        self.requests: list[tuple[dict[str, str], bytes]] = []


@pytest.fixture
def scripted_http() -> Iterator[tuple[str, Scripted]]:
    """(base URL, script): POSTs get the script's answers in turn, then 204."""
    script = Scripted()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            script.requests.append((dict(self.headers.items()), body))
            status, text, headers = script.answers.pop(0) if script.answers else (204, "", {})
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text.encode())

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
