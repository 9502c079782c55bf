"""Run the real worker (`python -m pipeline.cli worker`) as a subprocess and time it via /metrics.

The worker is configured only through METRICS_PIPELINE_* variables: a unique consumer group and
unique output topics per run, /metrics on a free loopback port, a 120 s idle timeout (so windows
close by watermark, never by the idle rule), a 6 s session timeout. The bench reads the
worker's CPU time (/proc/<pid>/stat) and scrapes /metrics every ~50 ms until the first input,
then every 0.5 s until `metrics_pipeline_rollups_delivered_total` reaches the expected number of
rollups. Each scrape costs the worker ~5–10 ms of CPU (every metric rendered, /proc read by the
process collector): at 20 scrapes a second that was 15–20 % of its CPU in a py-spy profile,
a cost no Prometheus (one scrape every 15–60 s) puts on it.

- timed interval: `metrics_pipeline_first_input_timestamp_seconds` (first records consumed, so
  the group join is excluded) to `metrics_pipeline_last_rollup_delivered_timestamp_seconds`;
- work CPU: the worker's CPU time at the last scrape that still showed no input, subtracted from
  the one right after the scrape that showed every rollup delivered (10 ms clock ticks; up to
  0.5 s of an idle worker after its last delivery): the CPU spent on the timed interval,
  without interpreter start-up and group join;
- process CPU: from `os.wait4` after SIGTERM (the whole life of the process);
- peak RSS: the worker's VmHWM right before SIGTERM (not ru_maxrss: see load/procfs.py);
- with `--processes N|auto` the worker is a supervisor of N child workers: CPU and peak RSS are
  summed over the supervisor and its children (/proc/<pid>/task/<pid>/children), and the
  metrics above come from its merged /metrics (first input: the earliest child's; last
  delivery: the latest child's; counters summed);
- p99 emission delay: from the `metrics_pipeline_emission_delay_seconds` histogram, linearly
  interpolated inside the bucket that holds the 99th percentile (as Prometheus'
  histogram_quantile does); bucket bounds are 5, 10, 25, 50, 100, 150, 200, 250, 500 ms, ...
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from load.procfs import cpu_seconds, peak_rss_kb, per
from pipeline.loopback import free_port

_P = "metrics_pipeline_"
#: Seconds between scrapes: often before the first input (the CPU baseline is the last scrape
#: before it), rarely while the worker works (a scrape costs it ~5-10 ms of CPU).
_POLL_STARTING_S = 0.05
_POLL_RUNNING_S = 0.5
ROOT = Path(__file__).resolve().parents[1]


def process_tree(pid: int) -> list[int]:
    """pid and its descendants (the supervisor's child workers), as /proc shows them now."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as f:
                todo += [int(child) for child in f.read().split()]
        except OSError:  # exited meanwhile
            continue
    return found


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for member in process_tree(pid):
        try:
            total += cpu_seconds(member)
        except OSError:  # exited between listing and reading
            continue
    return total


def tree_peak_rss_kb(pid: int) -> int:
    return sum(peak_rss_kb(member) for member in process_tree(pid))


@dataclass(frozen=True)
class WorkerResult:
    processes: int
    samples: int
    rollups: int
    seconds: float  # first input consumed → last rollup delivered
    cpu_seconds: float  # worker CPU over that interval
    process_cpu_seconds: float  # whole process (wait4), start-up and shutdown included
    peak_rss_kb: int  # VmHWM, read just before SIGTERM (see load/procfs.py)
    delay_p99_s: float
    delay_p99_above: bool  # the 99th percentile is in the +Inf bucket: delay_p99_s is a floor
    rollup_topic: str
    deadletter_topic: str

    @property
    def samples_per_s(self) -> float:
        return per(self.samples, self.seconds)

    @property
    def samples_per_cpu_s(self) -> float:
        return per(self.samples, self.cpu_seconds)

    @property
    def samples_per_process_cpu_s(self) -> float:
        return per(self.samples, self.process_cpu_seconds)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["samples_per_s"] = self.samples_per_s
        out["samples_per_cpu_s"] = self.samples_per_cpu_s
        out["samples_per_process_cpu_s"] = self.samples_per_process_cpu_s
        return out


class WorkerRunError(RuntimeError):
    """The worker died, or did not deliver the expected rollups in time."""


@dataclass
class Scrape:
    values: dict[str, float]
    buckets: list[tuple[float, float]]  # (upper bound, cumulative count) of the delay histogram

    def get(self, name: str) -> float:
        return self.values.get(_P + name, 0.0)


def scrape(port: int) -> Scrape | None:
    """The worker's metrics, or None while its HTTP server is not up yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    values: dict[str, float] = {}
    buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == _P + "emission_delay_seconds_bucket":
                buckets.append((float(sample.labels["le"]), sample.value))
            elif not sample.labels:
                values[sample.name] = sample.value
    return Scrape(values, sorted(buckets))


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> tuple[float, bool]:
    """q-quantile from cumulative buckets, interpolated linearly inside its bucket.

    Returns (value, above): above is True when the quantile lies in the +Inf bucket, and value is
    then the largest finite bound (a lower bound of the true quantile).
    """
    if not buckets or buckets[-1][1] <= 0:
        return 0.0, False
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if bound == float("inf"):
                return lower, True
            inside = cumulative - below
            fraction = (rank - below) / inside if inside > 0 else 1.0
            return lower + (bound - lower) * fraction, False
        lower, below = bound, cumulative
    return lower, True


def worker_env(
    bootstrap: str, topic: str, lateness_ms: int, port: int, run_id: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_PIPELINE_")}
    settings = {
        "bootstrap_servers": bootstrap,
        "group_id": f"bench-{run_id}",
        "input_topic": topic,
        "rollup_topic_prefix": f"bench-{run_id}.rollups.",
        "deadletter_topic": f"bench-{run_id}.deadletter",
        "checkpoint_topic": f"bench-{run_id}.checkpoints",
        "allowed_lateness": f"{lateness_ms}ms",
        "idle_timeout": "120s",
        "session_timeout_ms": "6000",
        "topic_partitions": "8",
        "create_topics": "true",
        "http_host": "127.0.0.1",
        "http_port": str(port),
        "log_level": "warning",
    }
    env.update({f"METRICS_PIPELINE_{k.upper()}": v for k, v in settings.items()})
    return env


def run_worker(
    bootstrap: str,
    topic: str,
    lateness_ms: int,
    samples: int,
    expected_rollups: int,
    timeout_s: float = 300.0,
    progress: Callable[[int, int], None] | None = None,
    processes: int = 1,
) -> WorkerResult:
    """Start a worker on `topic` (`processes` group members, see pipeline/supervise.py), wait
    for `expected_rollups` deliveries, stop it, report.

    progress(rollups delivered, samples aggregated) is called after every scrape.
    """
    run_id = uuid.uuid4().hex[:10]
    port = free_port()
    env = worker_env(bootstrap, topic, lateness_ms, port, run_id)
    argv = [sys.executable, "-m", "pipeline.cli", "worker", "--processes", str(processes)]
    with tempfile.NamedTemporaryFile(prefix="bench-worker-", suffix=".log") as log:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            result = _watch(
                proc, port, log.name, env, samples, expected_rollups, timeout_s, progress
            )
            return replace(result, processes=processes)
        finally:
            if proc.returncode is None:
                _stop(proc)


def _watch(
    proc: subprocess.Popen[bytes],
    port: int,
    log_path: str,
    env: dict[str, str],
    samples: int,
    expected_rollups: int,
    timeout_s: float,
    progress: Callable[[int, int], None] | None,
) -> WorkerResult:
    cpu_before: float | None = None
    deadline = time.monotonic() + timeout_s
    poll_s = _POLL_STARTING_S
    while True:
        if proc.poll() is not None:
            raise WorkerRunError(f"worker exited with {proc.returncode}: {_tail(log_path)}")
        cpu_a = tree_cpu_seconds(proc.pid)
        got = scrape(port)
        cpu_b = tree_cpu_seconds(proc.pid)
        if got is not None:
            if got.get("first_input_timestamp_seconds") == 0:
                cpu_before = cpu_a
            else:
                poll_s = _POLL_RUNNING_S
            delivered = int(got.get("rollups_delivered_total"))
            if progress is not None:
                progress(delivered, int(got.get("samples_aggregated_total")))
            if delivered >= expected_rollups:
                break
        if time.monotonic() > deadline:
            raise WorkerRunError(
                f"worker delivered {0 if got is None else delivered:,} of "
                f"{expected_rollups:,} rollups in {timeout_s:.0f} s: {_tail(log_path)}"
            )
        time.sleep(poll_s)
    if cpu_before is None:
        raise WorkerRunError("no scrape before the worker's first input: CPU baseline missing")
    first = got.get("first_input_timestamp_seconds")
    last = got.get("last_rollup_delivered_timestamp_seconds")
    p99, above = histogram_quantile(0.99, got.buckets)
    peak = tree_peak_rss_kb(proc.pid)
    process_cpu_s = _stop(proc)
    return WorkerResult(
        processes=1,
        samples=samples,
        rollups=delivered,
        seconds=last - first,
        cpu_seconds=cpu_b - cpu_before,
        process_cpu_seconds=process_cpu_s,
        peak_rss_kb=peak,
        delay_p99_s=p99,
        delay_p99_above=above,
        rollup_topic=env["METRICS_PIPELINE_ROLLUP_TOPIC_PREFIX"] + "10s",
        deadletter_topic=env["METRICS_PIPELINE_DEADLETTER_TOPIC"],
    )


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 30.0) -> float:
    """SIGTERM the worker (SIGKILL after grace_s), reap it with wait4: its total CPU seconds
    (a supervisor's include its children's: it waits for them before it exits)."""
    os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            os.kill(proc.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return float(usage.ru_utime + usage.ru_stime)


def _tail(path: str, size: int = 3000) -> str:
    text = Path(path).read_text(errors="replace")
    return text[-size:] or "(no output)"
