"""Run workers against the real broker and compute what they must emit, exactly, with numpy."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import orjson
from pydantic_settings import BaseSettings

from pipeline.core.series import MetricKind, SeriesIdentity
from pipeline.demo import summary
from pipeline.demo.summary import OutputSummary
from pipeline.kafka.worker import RollupWorker
from pipeline.loadgen.workload import GroundTruth
from pipeline.settings import StageSettings, WorkerSettings

RESOLUTION_MS = 10_000


def worker_settings(bootstrap: str, name: str, **overrides: Any) -> WorkerSettings:
    values: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": f"rollup-{name}",
        "input_topic": f"raw-{name}",
        "rollup_topic_prefix": f"rollups-{name}.",
        "deadletter_topic": f"deadletter-{name}",
        "checkpoint_topic": f"checkpoints-{name}",
        "idle_timeout": "2s",
        "session_timeout_ms": 6000,
        "http_port": 0,
        "topic_partitions": 4,
    }
    values.update(overrides)
    return WorkerSettings(**values)


def settings_env(settings: BaseSettings) -> dict[str, str]:
    """The same settings as METRICS_PIPELINE_* environment variables (for a subprocess)."""
    env = dict(os.environ)
    for key, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, list | dict):
            env[f"METRICS_PIPELINE_{key.upper()}"] = orjson.dumps(value).decode()
        else:
            env[f"METRICS_PIPELINE_{key.upper()}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
    return env


@contextmanager
def worker_thread(settings: WorkerSettings) -> Iterator[RollupWorker]:
    with stage_thread(RollupWorker(settings)) as worker:
        yield worker


class Runs(Protocol):
    def run(self, stop: threading.Event) -> None: ...


StageT = TypeVar("StageT", bound=Runs)


@contextmanager
def stage_thread(worker: StageT) -> Iterator[StageT]:
    """Run a process's main loop (rollup or tier worker, sink runner) on a thread; stop it on
    exit, re-raise its error."""
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:  # surfaced in the test thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name="worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(60)
    if failure:
        raise failure[0]


def worker_process(
    settings: BaseSettings, log_path: str, command: tuple[str, ...] = ("worker",)
) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", *command],
            env=settings_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def read_outputs(settings: StageSettings, partitions: int = 0) -> OutputSummary:
    """Rollups and dead letters by key; a duplicate key must carry identical bytes."""
    del partitions  # read from the topics' own partition counts
    outputs = summary.read_outputs(
        settings.bootstrap_servers, settings.output_topic, settings.deadletter_topic
    )
    assert outputs.conflicting_duplicates == 0, "a rollup was re-emitted with other content"
    return outputs


def wait_for(
    settings: StageSettings, partitions: int, total: int, timeout: float = 120.0
) -> OutputSummary:
    """Poll the outputs until they account for `total` samples (or fail with what is there)."""
    deadline = time.monotonic() + timeout
    while True:
        outputs = read_outputs(settings, partitions)
        if outputs.samples_accounted >= total or time.monotonic() > deadline:
            return outputs
        time.sleep(1.0)


def series_key_of(truth: GroundTruth, index: int) -> str:
    s = truth.series[index]
    kind = MetricKind.parse(s.type, s.temporality)
    assert kind is not None
    return SeriesIdentity(s.service, s.region, s.name, kind, s.unit, tuple(sorted(s.labels))).key


@dataclass
class Expected:
    count: int
    sum: float
    min: float
    max: float
    values: np.ndarray  # raw values (timers, gauges), for percentiles


def expected_rollups(
    truth: GroundTruth, resolution_ms: int = RESOLUTION_MS
) -> dict[tuple[str, int], Expected]:
    """Exact rollups of the samples not meant to be late, computed straight from the truth.

    Cumulative counters: increase per (series, instance) in production order (which is each
    partition's order when producer keys match), a reset counting its new value, the first
    sample 0; a sample older than the newest one seen of its (series, instance) adds 0 and is
    skipped. Late samples are skipped too: they leave the previous value alone, so the next
    sample's increase covers them (as in the worker).
    """
    contribution = truth.value.copy()
    prev: dict[tuple[int, int], tuple[float, int]] = {}
    is_cumulative = np.array(
        [truth.series[int(k)].temporality == "cumulative" for k in truth.series_key]
    )
    for i in np.flatnonzero(is_cumulative & ~truth.late).tolist():
        key = (int(truth.series_key[i]), int(truth.instance[i]))
        v, t = float(truth.value[i]), int(truth.ts[i])
        seen = prev.get(key)
        if seen is None:
            contribution[i] = 0.0
        elif t < seen[1]:
            contribution[i] = 0.0
            continue
        else:
            contribution[i] = v - seen[0] if v >= seen[0] else v
        prev[key] = (v, t)
    keep = ~truth.late
    start = truth.ts - truth.ts % resolution_ms
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i in np.flatnonzero(keep).tolist():
        groups[(int(truth.series_key[i]), int(start[i]))].append(i)
    out: dict[tuple[str, int], Expected] = {}
    keys = {s: series_key_of(truth, s) for s in {g[0] for g in groups}}
    for (series, window), idx in groups.items():
        ids = np.array(idx)
        values = truth.value[ids]
        out[(keys[series], window)] = Expected(
            len(ids),
            float(np.sum(contribution[ids])),
            float(values.min()),
            float(values.max()),
            np.sort(values),
        )
    return out


def rollups_by_window(outputs: OutputSummary) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["series_key"], r["window_start"]): r for r in outputs.rollups.values()}
