"""Real Prometheus and VictoriaMetrics servers for tests and benchmarks.

Each runs from its Debian package binary on a free loopback port with its data in a directory
the caller owns, is stopped by its pid (SIGTERM, then SIGKILL after a grace period) and can be
restarted on the same data directory. Reading back returns raw samples per series:
Prometheus through /api/v1/query with a range selector (exact float text), VictoriaMetrics
through /api/v1/export after /internal/force_flush (raw data: no latency offset, no cache).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, ClassVar

import httpx

from pipeline.loopback import free_port

SeriesKey = frozenset[tuple[str, str]]
Stored = dict[SeriesKey, list[tuple[int, float]]]


class TsdbServer:
    """A server process started by us; `start()`, `stop()`, `restart()` (same port and data)."""

    binary: ClassVar[str]
    kind: ClassVar[str]
    #: The Debian package that installs `binary`.
    package: ClassVar[str]

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @classmethod
    def available(cls) -> bool:
        return shutil.which(cls.binary) is not None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def write_url(self) -> str:
        return self.base_url + "/api/v1/write"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.kind}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready_path(self) -> str:
        raise NotImplementedError

    def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, cwd=self.data_dir
        )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.kind} exited with {self.process.returncode}: {self.tail()}"
                )
            try:
                if httpx.get(self.base_url + self.ready_path(), timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.kind} not ready after {timeout:.0f} s: {self.tail()}")

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM our own process by pid; SIGKILL it if it outlives the grace period."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def samples(self, selector: str, lookback: str = "2h") -> Stored:
        """Every raw sample of the series matching `selector` in the last `lookback`."""
        raise NotImplementedError

    def sample_count(self, selector: str, lookback: str = "2h") -> int:
        return sum(len(points) for points in self.samples(selector, lookback).values())


class PrometheusServer(TsdbServer):
    binary = "prometheus"
    kind = "prometheus"
    package = "prometheus"

    def __init__(
        self, data_dir: Path, port: int | None = None, out_of_order_window: str | None = "1h"
    ) -> None:
        """out_of_order_window: how far behind the newest sample a sample is still accepted
        (re-deliveries need it). Older ones are refused: Prometheus 2.42 answers 500 "too old
        sample" with a window, 400 "out of bounds" without one (None)."""
        super().__init__(data_dir, port)
        self.out_of_order_window = out_of_order_window

    def command(self) -> list[str]:
        config = self.data_dir / "prometheus.yml"
        text = "global:\n  scrape_interval: 1m\n"
        if self.out_of_order_window is not None:
            text += f"storage:\n  tsdb:\n    out_of_order_time_window: {self.out_of_order_window}\n"
        config.write_text(text)
        return [
            shutil.which(self.binary) or self.binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.data_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-remote-write-receiver",
            "--log.level=warn",
        ]

    def ready_path(self) -> str:
        return "/-/ready"

    def samples(self, selector: str, lookback: str = "2h") -> Stored:
        response = httpx.get(
            self.base_url + "/api/v1/query",
            params={"query": f"{selector}[{lookback}]", "time": f"{time.time():.3f}"},
            timeout=60.0,
        )
        response.raise_for_status()
        out: Stored = {}
        for series in response.json()["data"]["result"]:
            key = frozenset(series["metric"].items())
            out[key] = [(round(float(t) * 1000), float(v)) for t, v in series["values"]]
        return out


class VictoriaMetricsServer(TsdbServer):
    binary = "victoria-metrics"
    kind = "victoria-metrics"
    package = "victoria-metrics"

    def command(self) -> list[str]:
        return [
            shutil.which(self.binary) or self.binary,
            f"-storageDataPath={self.data_dir / 'data'}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-retentionPeriod=1y",
            # Tests read right after writing: no response cache, no "too recent" hiding.
            "-search.disableCache",
            "-search.latencyOffset=0s",
            # Identical re-deliveries (same series and timestamp) are kept once.
            "-dedup.minScrapeInterval=1ms",
            "-loggerLevel=WARN",
        ]

    def ready_path(self) -> str:
        return "/health"

    def samples(self, selector: str, lookback: str = "2h") -> Stored:
        httpx.get(self.base_url + "/internal/force_flush", timeout=30.0).raise_for_status()
        out: Stored = {}
        with httpx.stream(
            "GET",
            self.base_url + "/api/v1/export",
            params={"match[]": selector, "start": f"-{lookback}", "nocache": "1"},
            timeout=120.0,
        ) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.strip():
                    continue
                series = json.loads(line)
                key = frozenset(series["metric"].items())
                points = list(zip(series["timestamps"], map(float, series["values"]), strict=True))
                out.setdefault(key, []).extend(points)
        for points in out.values():
            points.sort()
        return out
