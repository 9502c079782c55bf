"""A real Alertmanager (Debian package prometheus-alertmanager) for tests and benchmarks.

Started like the TSDB servers of load/tsdb.py: a free loopback port, its storage in a directory
the caller owns, clustering off, stopped by its pid, restartable on the same storage path (which
keeps silences and the notification log; alerts live in memory only, so a restarted
Alertmanager knows only what senders tell it again). Notifications go to a null receiver, or to
`webhook_url` with resolved notifications on, to see what Alertmanager itself sends.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx

from load.tsdb import TsdbServer


class AlertmanagerServer(TsdbServer):
    binary = "prometheus-alertmanager"
    kind = "alertmanager"
    package = "prometheus-alertmanager"

    def __init__(
        self, data_dir: Path, port: int | None = None, webhook_url: str | None = None
    ) -> None:
        super().__init__(data_dir, port)
        self.webhook_url = webhook_url

    def command(self) -> list[str]:
        config = self.data_dir / "alertmanager.yml"
        if self.webhook_url is None:
            receiver = "  - name: blackhole\n"
        else:
            receiver = (
                "  - name: blackhole\n"
                "    webhook_configs:\n"
                f"      - url: {self.webhook_url}\n"
                "        send_resolved: true\n"
            )
        config.write_text(
            "route:\n"
            "  receiver: blackhole\n"
            "  group_by: ['...']\n"  # one notification per alert: easy to read back
            "  group_wait: 0s\n"
            "  group_interval: 1s\n"
            "  repeat_interval: 1h\n"
            "receivers:\n" + receiver
        )
        return [
            shutil.which(self.binary) or self.binary,
            f"--config.file={config}",
            f"--storage.path={self.data_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]

    def ready_path(self) -> str:
        return "/-/ready"

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """GET /api/v2/alerts: the alerts Alertmanager holds as active (not yet ended)."""
        response = httpx.get(self.base_url + "/api/v2/alerts", params=filters, timeout=30.0)
        response.raise_for_status()
        alerts: list[dict[str, Any]] = response.json()
        return alerts

    def received(self) -> dict[str, float]:
        """alertmanager_alerts_received_total by status (firing, resolved), from /metrics."""
        response = httpx.get(self.base_url + "/metrics", timeout=30.0)
        response.raise_for_status()
        out: dict[str, float] = {}
        for line in response.text.splitlines():
            if line.startswith("alertmanager_alerts_received_total{"):
                labels, value = line.rsplit(" ", 1)
                status = labels.split('status="', 1)[1].split('"', 1)[0]
                out[status] = out.get(status, 0.0) + float(value)
        return out
