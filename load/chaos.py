"""Chaos figures, measured: kill -9 cycles, bad input, and a flood of new series.

`python -m load.chaos` runs three parts against a broker (`--bootstrap`, or an embedded Tansu it
starts and stops), each with a worker as a child process (`python -m pipeline.cli worker`):

- kill: a workload is fed in `--kills + 1` parts; after each of the first `--kills` parts the
  worker is killed with SIGKILL once it has emitted something, and a new one started. The
  outputs are then checked against the workload's ground truth: every (series, window) rollup
  present with its exact count, sums to 1e-9, no key emitted twice with different content,
  samples in rollups == samples sent.
- bad: `--bad-each` messages of every malformed class (pipeline/loadgen/malformed.py) mixed in a
  clean workload: dead-lettered samples per reason must equal what was mixed in.
- flood: `--flood` samples, each of a new series (a unique label value) of one metric, spread
  over one minute of event time. Reported: the worker's RSS before, at its peak and after the
  windows closed and the idle series were forgotten, the series it still holds, the samples
  sent to overflow, and conservation (every sample counted in some rollup).

Prints one JSON object (also written to `--out`). Defaults take 2-4 minutes on 2 busy cores.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Producer

from load.worker_run import scrape
from pipeline.core.series import MetricKind, SeriesIdentity
from pipeline.demo.summary import OutputSummary, read_outputs
from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.kafka.broker import EmbeddedBroker
from pipeline.loadgen.build import Workload, generate
from pipeline.loadgen.produce import produce
from pipeline.loadgen.spec import MalformedCounts, WorkloadSpec
from pipeline.loopback import free_port

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 4
RESOLUTION_MS = 10_000


class Worker:
    """A worker child process with its own topics (names from run_id)."""

    def __init__(self, bootstrap: str, run_id: str, **settings: str) -> None:
        self.port = free_port()
        self.topics = {
            "input_topic": f"chaos-{run_id}.raw",
            "rollup_topic_prefix": f"chaos-{run_id}.rollups.",
            "deadletter_topic": f"chaos-{run_id}.deadletter",
            "checkpoint_topic": f"chaos-{run_id}.checkpoints",
        }
        values = {
            "bootstrap_servers": bootstrap,
            "group_id": f"chaos-{run_id}",
            "session_timeout_ms": "6000",
            "topic_partitions": str(PARTITIONS),
            "http_port": str(self.port),
            "log_level": "warning",
            "idle_timeout": "3s",
            **self.topics,
            **settings,
        }
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_PIPELINE_")}
        self.env.update({f"METRICS_PIPELINE_{k.upper()}": v for k, v in values.items()})
        self.bootstrap = bootstrap
        self.log = tempfile.NamedTemporaryFile(prefix="chaos-worker-", suffix=".log")  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def input_topic(self) -> str:
        return self.topics["input_topic"]

    def start(self) -> None:
        argv = [sys.executable, "-m", "pipeline.cli", "worker"]
        self.proc = subprocess.Popen(
            argv, env=self.env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT
        )

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)  # our own child, by pid
        self.proc.wait(30)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def outputs(self) -> OutputSummary:
        return read_outputs(
            self.bootstrap,
            self.topics["rollup_topic_prefix"] + "10s",
            self.topics["deadletter_topic"],
        )

    def wait_accounted(self, total: int, timeout: float) -> OutputSummary:
        deadline = time.monotonic() + timeout
        while True:
            summary = self.outputs()
            if summary.samples_accounted >= total or time.monotonic() > deadline:
                return summary
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.tail()}")
            time.sleep(1.0)

    def rss_kb(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) of the child."""
        assert self.proc is not None
        fields = dict(
            line.split(":", 1)
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
        )
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])

    def tail(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-3000:]


def series_key(workload: Workload, index: int) -> str:
    s = workload.truth.series[index]
    kind = MetricKind.parse(s.type, s.temporality)
    assert kind is not None
    return SeriesIdentity(s.service, s.region, s.name, kind, s.unit, tuple(sorted(s.labels))).key


def check_exact(workload: Workload, summary: OutputSummary) -> list[str]:
    """Problems of the rollups against the ground truth (empty when exact)."""
    truth = workload.truth
    keep = ~truth.late
    start = truth.ts[keep] - truth.ts[keep] % RESOLUTION_MS
    series = truth.series_key[keep]
    codes, counts = np.unique((series.astype(np.int64) << 42) | (start // 1000), return_counts=True)
    keys = {int(s): series_key(workload, int(s)) for s in np.unique(series).tolist()}
    expected = {
        (keys[int(c >> 42)], int(c & (2**42 - 1)) * 1000): int(n)
        for c, n in zip(codes.tolist(), counts.tolist(), strict=True)
    }
    got = {(r["series_key"], r["window_start"]): r["count"] for r in summary.rollups.values()}
    problems = []
    if summary.conflicting_duplicates:
        problems.append(f"{summary.conflicting_duplicates} keys re-emitted with other content")
    missing = expected.keys() - got.keys()
    if missing:
        problems.append(f"{len(missing)} expected rollups missing")
    wrong = sum(1 for k, n in expected.items() if k in got and got[k] != n)
    if wrong:
        problems.append(f"{wrong} rollups with a wrong count")
    if set(got) - set(expected):
        problems.append(f"{len(set(got) - set(expected))} unexpected rollups")
    return problems


def clean_spec(samples: int, seed: int, **overrides: Any) -> WorkloadSpec:
    values: dict[str, Any] = {
        "seed": seed,
        "services": 5,
        "regions": 2,
        "timers": 2,
        "gauges": 1,
        "delta_counters": 1,
        "cumulative_counters": 1,
        "duration_s": 120.0,
        "samples": samples,
    }
    values.update(overrides)
    return WorkloadSpec(**values)


def kill_cycles(bootstrap: str, samples: int, kills: int, seed: int) -> dict[str, Any]:
    workload = generate(clean_spec(samples, seed))
    total = workload.manifest.samples_total
    worker = Worker(bootstrap, uuid.uuid4().hex[:8], commit_interval="500ms", idle_timeout="20s")
    ensure_topics(bootstrap, [TopicSpec(worker.input_topic, PARTITIONS)])
    messages = list(workload.messages())
    parts = np.array_split(np.arange(len(messages)), kills + 1)
    rng = random.Random(seed)
    started = time.monotonic()
    killed_after: list[int] = []
    for part in parts[:-1]:
        worker.start()
        before = len(worker.outputs().rollups)
        produce(bootstrap, worker.input_topic, [messages[i] for i in part.tolist()])
        deadline = time.monotonic() + 30
        while len(worker.outputs().rollups) <= before and time.monotonic() < deadline:
            time.sleep(0.3)
        time.sleep(rng.uniform(0.0, 1.0))
        killed_after.append(len(worker.outputs().rollups))
        worker.kill9()
    worker.start()
    produce(bootstrap, worker.input_topic, [messages[i] for i in parts[-1].tolist()])
    summary = worker.wait_accounted(total, timeout=240)
    code = worker.stop()
    problems = check_exact(workload, summary)
    if summary.samples_in_rollups != total:
        problems.append(f"conservation: {summary.samples_in_rollups} in rollups != {total} sent")
    if code != 0:
        problems.append(f"the last worker exited with {code}")
    return {
        "samples": total,
        "kills": kills,
        "rollups_seen_at_each_kill": killed_after,
        "rollups": len(summary.rollups),
        "duplicate_rollups_identical": summary.duplicate_rollups,
        "conflicting_duplicates": summary.conflicting_duplicates,
        "samples_in_rollups": summary.samples_in_rollups,
        "problems": problems,
        "ok": not problems,
        "seconds": round(time.monotonic() - started, 1),
    }


def bad_input(bootstrap: str, samples: int, each: int, seed: int) -> dict[str, Any]:
    counts = MalformedCounts.each(each)
    workload = generate(clean_spec(samples, seed, malformed=counts))
    total = workload.manifest.samples_total
    worker = Worker(bootstrap, uuid.uuid4().hex[:8])
    ensure_topics(bootstrap, [TopicSpec(worker.input_topic, PARTITIONS)])
    started = time.monotonic()
    worker.start()
    produce(bootstrap, worker.input_topic, workload.messages())
    summary = worker.wait_accounted(total, timeout=180)
    worker.stop()
    got = dict(summary.deadletter_samples("worker"))
    wanted = {k: v for k, v in workload.manifest.malformed.items() if v}
    problems = [] if got == wanted else [f"dead letters {got} != mixed in {wanted}"]
    problems += check_exact(workload, summary)
    return {
        "classes": len(wanted),
        "bad_messages": sum(wanted.values()),
        "deadlettered_by_reason": got,
        "samples_in_rollups": summary.samples_in_rollups,
        "problems": problems,
        "ok": not problems,
        "seconds": round(time.monotonic() - started, 1),
    }


def flood(bootstrap: str, series: int, idle_s: int, **settings: str) -> dict[str, Any]:
    """`series` samples of as many new series of one metric, as JSON arrays of 100."""
    worker = Worker(bootstrap, uuid.uuid4().hex[:8], series_idle_timeout=f"{idle_s}s", **settings)
    ensure_topics(bootstrap, [TopicSpec(worker.input_topic, PARTITIONS)])
    started = time.monotonic()
    worker.start()
    now_ms = int(time.time() * 1000)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "log_level": 0})
    producer.produce(worker.input_topic, b"{}", key=b"warm|up")  # one dead letter: warm-up
    producer.flush(30)
    worker.wait_accounted(1, timeout=60)
    time.sleep(1.0)
    rss_before, _ = worker.rss_kb()
    span_ms = 60_000
    for lo in range(0, series, 100):
        batch = [
            {
                "service": "flood",
                "region": "eu",
                "name": "requests",
                "type": "timer",
                "labels": {"request_id": f"r{i}"},
                "value": 1.0,
                "ts": now_ms - span_ms + i * span_ms // series,
            }
            for i in range(lo, min(series, lo + 100))
        ]
        producer.produce(worker.input_topic, orjson.dumps(batch), key=b"flood|eu")
        producer.poll(0)
    producer.flush(60)
    summary = worker.wait_accounted(series + 1, timeout=300)
    _, peak = worker.rss_kb()
    time.sleep(idle_s + 7.0)  # idle series are swept within ~5 s after idle_s
    rss_after, peak = worker.rss_kb()
    metrics = scrape(worker.port)
    worker.stop()
    overflow = [
        r for r in summary.rollups.values() if "otel_metric_overflow" in r["series"]["labels"]
    ]
    return {
        "series": series,
        "settings": settings,
        "rss_before_mib": round(rss_before / 1024, 1),
        "rss_peak_mib": round(peak / 1024, 1),
        "rss_after_mib": round(rss_after / 1024, 1),
        "active_series_after": None if metrics is None else metrics.get("active_series"),
        "overflow_rollups": len(overflow),
        "samples_in_overflow": sum(r["count"] for r in overflow),
        "samples_in_rollups": summary.samples_in_rollups,
        "ok": summary.samples_in_rollups == series,
        "seconds": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="an existing cluster (default: embedded Tansu)")
    parser.add_argument("--samples", type=int, default=40_000, help="kill/bad workload size")
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--bad-each", type=int, default=20)
    parser.add_argument("--flood", type=int, default=200_000, help="new series in the flood")
    parser.add_argument("--flood-idle", type=int, default=10, help="series_idle_timeout, s")
    parser.add_argument("--unlimited", action="store_true", help="also flood without a budget")
    parser.add_argument("--parts", default="kill,bad,flood")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%d", time.gmtime())}
    with ExitStack() as stack:
        bootstrap = args.bootstrap or stack.enter_context(EmbeddedBroker()).bootstrap_servers
        if "kill" in parts:
            result["kill"] = kill_cycles(bootstrap, args.samples, args.kills, args.seed)
        if "bad" in parts:
            result["bad"] = bad_input(bootstrap, args.samples // 4, args.bad_each, args.seed)
        if "flood" in parts:
            result["flood"] = flood(bootstrap, args.flood, args.flood_idle)
            if args.unlimited:
                result["flood_unlimited"] = flood(
                    bootstrap,
                    args.flood,
                    args.flood_idle,
                    max_series="0",
                    max_series_per_metric="0",
                )
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if not all(part.get("ok", True) for part in result.values() if isinstance(part, dict)):
        sys.exit(1)


if __name__ == "__main__":
    main()
