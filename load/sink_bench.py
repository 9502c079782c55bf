"""Remote-write sink throughput: samples/s into a real Prometheus and a real VictoriaMetrics.

    python -m load.sink_bench [--rollups 20000] [--series 2000] [--tsdb prometheus|
                              victoria-metrics|both] [--concurrency 4] [--batch-records 5000]
                              [--naming aggregation|flat] [--split]
                              [--bootstrap-servers HOST:PORT] [--runs 1] [--default-gc]

Per TSDB and run: N timer rollups (5 percentiles, so 9 remote-write samples each with the
default naming, 10 with `flat`; windows of 10 s ending in the last hour) are pre-loaded into a
fresh 8-partition topic (not timed); a fresh server is started in a temporary directory; the sink
runner with RemoteWriteSink consumes the topic, and the time from its first consumed record to
its last acknowledged write is measured, with this process's CPU time over it (the sink: runner,
encoder, HTTP client; the broker and the TSDB are other processes). Then the samples stored are
counted through the TSDB's query API and must equal N × samples per rollup.
--split also measures the runner alone and the encoder alone (load/sink_split.py), to show
which part bounds the end-to-end figure.
The garbage collector is tuned as the sink process tunes it (pipeline/runtime.py) unless
--default-gc is given.
An embedded Tansu broker is started unless --bootstrap-servers is given. Exit status 1 if a
verification failed.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from load.procfs import cpu_seconds
from load.sink_split import cpu_by_role, encoder_cpu, runner_cpu, thread_cpu
from load.tsdb import PrometheusServer, TsdbServer, VictoriaMetricsServer
from pipeline.kafka.admin import TopicSpec, ensure_topics, high_watermarks
from pipeline.kafka.broker import EmbeddedBroker
from pipeline.loadgen.produce import produce
from pipeline.loadgen.spec import Message
from pipeline.observability import configure_logging
from pipeline.runtime import tune_garbage_collector
from pipeline.sinks.remote_write import RemoteWriteSettings, RemoteWriteSink
from pipeline.sinks.remote_write.naming import Scheme, outputs
from pipeline.sinks.remote_write.rollup_encoder import RollupEncoder
from pipeline.sinks.runner import SinkRunner
from pipeline.sinks.settings import SinkSettings

PARTITIONS = 8
RESOLUTION_MS = 10_000
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p99.9": 0.999}


def samples_per_rollup(naming: Scheme = "aggregation") -> int:
    return len(outputs("bench.duration", "timer", "ms", "10s", tuple(PERCENTILES), naming))


SERVERS: dict[str, type[TsdbServer]] = {
    "prometheus": PrometheusServer,
    "victoria-metrics": VictoriaMetricsServer,
}


@dataclass
class SinkBenchResult:
    tsdb: str
    rollups: int
    samples: int
    seconds: float
    samples_per_s: float
    rollups_per_s: float
    stored_samples: int
    verified: bool
    sink_cpu_seconds: float  # this process (runner + sink threads) while the sink ran
    tsdb_cpu_seconds: float  # the server's process over the same interval
    naming: str = "aggregation"
    samples_per_sink_cpu_s: float = 0.0
    #: --split: CPU seconds of the runner alone and of the encoder alone, from a cold start and
    #: warm (every series' plan cached, as in a long run); None without --split
    runner_cpu_seconds: float | None = None
    encoder_cpu_seconds: float | None = None
    warm_encoder_cpu_seconds: float | None = None
    max_samples_per_request: int = 20_000
    gc_seconds: float = 0.0  # of sink_cpu_seconds, in cyclic garbage collections
    #: how many collections of each generation (0, 1, 2) ran while the sink ran
    gc_collections: list[int] = field(default_factory=list)
    #: sink_cpu_seconds by thread role (load/sink_split.py: cpu_by_role), 10 ms ticks
    cpu_by_thread: dict[str, float] = field(default_factory=dict)


def rollup_messages(rollups: int, series: int, now_ms: int) -> Iterator[Message]:
    """Timer rollups shaped like the worker's, windows in time order per series."""
    windows = -(-rollups // series)
    first_end = (now_ms - 120_000) // RESOLUTION_MS * RESOLUTION_MS - windows * RESOLUTION_MS
    emitted = 0
    for w in range(windows):
        end = first_end + (w + 1) * RESOLUTION_MS
        for s in range(series):
            if emitted == rollups:
                return
            service, region = f"svc-{s % 50:02d}", f"region-{s // 50 % 4}"
            name = f"bench.duration.{s // 200}"
            key = f"{service}|{region}|{name}|timer|ms|"
            base = 1.0 + (s * 7 + w * 13) % 97
            body = {
                "series": {
                    "service": service,
                    "region": region,
                    "name": name,
                    "type": "timer",
                    "unit": "ms",
                    "labels": {},
                },
                "series_key": key,
                "resolution": "10s",
                "resolution_ms": RESOLUTION_MS,
                "window_start": end - RESOLUTION_MS,
                "window_end": end,
                "count": 100,
                "sum": base * 100,
                "min": base / 2,
                "max": base * 3,
                "mean": base,
                "rate": 10.0,
                "percentiles": {k: base * (1 + q) for k, q in PERCENTILES.items()},
                "digest": None,
            }
            emitted += 1
            routing = f"{service}|{region}".encode()
            yield Message(routing, orjson.dumps(body), end)


def run_once(
    bootstrap: str,
    kind: str,
    rollups: int,
    series: int,
    concurrency: int,
    batch_records: int,
    naming: Scheme = "aggregation",
    split: bool = False,
    max_samples_per_request: int = 20_000,
) -> SinkBenchResult:
    name = f"sink-bench-{uuid.uuid4().hex[:8]}"
    topic = f"rollups-{name}"
    ensure_topics(bootstrap, [TopicSpec(topic, PARTITIONS)])
    # Produced from a generator, not a list kept alive: 50,000 records held by this process
    # would be traversed by the sink's full garbage collections (a real sink process holds
    # only its batch). --split regenerates the same records afterwards.
    now_ms = int(time.time() * 1000)
    produce(bootstrap, topic, rollup_messages(rollups, series, now_ms))
    ends = {(topic, p): e for p, e in high_watermarks(bootstrap, topic).items() if e > 0}
    with tempfile.TemporaryDirectory(prefix="sink-bench-") as tmp:
        server = SERVERS[kind](Path(tmp))
        server.start()
        try:
            settings = RemoteWriteSettings(
                bootstrap_servers=bootstrap,
                url=server.write_url,
                topics=[topic],
                group_id=name,
                deadletter_topic=f"deadletter-{name}",
                batch_records=batch_records,
                concurrency=concurrency,
                session_timeout_ms=6000,
                http_port=0,
                naming=naming,
                max_samples_per_request=max_samples_per_request,
                create_topics=True,
            )
            sink = RemoteWriteSink(settings)
            runner = SinkRunner(settings, sink)
            stop = threading.Event()
            thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
            assert server.process is not None
            cpu_before = (time.process_time(), cpu_seconds(server.process.pid))
            gc_timer = GcTimer()
            threads_before = thread_cpu()
            thread.start()
            try:
                deadline = time.monotonic() + 600
                while any(runner.totals.committed.get(tp, 0) < end for tp, end in ends.items()):
                    if time.monotonic() > deadline or not thread.is_alive():
                        raise RuntimeError(f"sink did not finish: {runner.totals.counts()}")
                    time.sleep(0.05)
                sink_cpu = time.process_time() - cpu_before[0]
                gc_seconds = gc_timer.stop()
                roles = cpu_by_role(threads_before, thread_cpu())
                tsdb_cpu = cpu_seconds(server.process.pid) - cpu_before[1]
            finally:
                stop.set()
                thread.join(60)
                sink.close()
            seconds = (
                runner.metrics.last_stored_time._value.get()
                - runner.metrics.first_input_time._value.get()
            )
            stored = server.sample_count('{__name__=~"bench_.+"}', lookback="3h")
        finally:
            server.stop()
    runner_only = encoder_only = warm_encoder = None
    if split:
        runner_only = runner_cpu(_discarding(settings, name), ends)
        raws = [m.value for m in rollup_messages(rollups, series, now_ms)]
        encoder = RollupEncoder(naming)
        encoder_only, _ = encoder_cpu(raws, naming, batch_records, max_samples_per_request, encoder)
        warm_encoder, _ = encoder_cpu(raws, naming, batch_records, max_samples_per_request, encoder)
    expected = rollups * samples_per_rollup(naming)
    return SinkBenchResult(
        tsdb=kind,
        rollups=rollups,
        samples=sink.samples_sent,
        seconds=round(seconds, 3),
        samples_per_s=round(sink.samples_sent / seconds),
        rollups_per_s=round(rollups / seconds),
        stored_samples=stored,
        verified=stored == expected == sink.samples_sent and runner.totals.rejected == 0,
        sink_cpu_seconds=round(sink_cpu, 2),
        tsdb_cpu_seconds=round(tsdb_cpu, 2),
        naming=naming,
        samples_per_sink_cpu_s=round(sink.samples_sent / max(sink_cpu, 1e-9)),
        runner_cpu_seconds=None if runner_only is None else round(runner_only, 2),
        encoder_cpu_seconds=None if encoder_only is None else round(encoder_only, 2),
        warm_encoder_cpu_seconds=None if warm_encoder is None else round(warm_encoder, 2),
        max_samples_per_request=max_samples_per_request,
        gc_seconds=round(gc_seconds, 2),
        gc_collections=gc_timer.collections,
        cpu_by_thread=roles,
    )


class GcTimer:
    """CPU time this process spends in cyclic garbage collections (in whichever thread runs
    them) from construction to `stop()`."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
            self.collections[info["generation"]] += 1
        else:
            self.seconds += time.thread_time() - self._started

    def stop(self) -> float:
        gc.callbacks.remove(self._callback)
        return self.seconds


def split_line(r: SinkBenchResult) -> str:
    assert r.runner_cpu_seconds is not None and r.encoder_cpu_seconds is not None
    assert r.warm_encoder_cpu_seconds is not None
    rest = r.sink_cpu_seconds - r.runner_cpu_seconds - r.encoder_cpu_seconds
    cold = r.samples / max(r.encoder_cpu_seconds, 1e-9)
    warm = r.samples / max(r.warm_encoder_cpu_seconds, 1e-9)
    return (
        f"{'':17} sink CPU split: runner alone {r.runner_cpu_seconds:.2f} s"
        f" ({r.samples / max(r.runner_cpu_seconds, 1e-9):,.0f} samples/CPU-s),"
        f" encoder alone {r.encoder_cpu_seconds:.2f} s cold ({cold:,.0f} samples/CPU-s),"
        f" {r.warm_encoder_cpu_seconds:.2f} s warm ({warm:,.0f}); rest (HTTP, threads) {rest:.2f} s"
    )


def _discarding(settings: RemoteWriteSettings, name: str) -> SinkSettings:
    values = settings.model_dump(include=set(SinkSettings.model_fields))
    return SinkSettings(**{**values, "group_id": f"{name}-runner-only"})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m load.sink_bench", description=__doc__.split("\n")[0]
    )
    p.add_argument("--rollups", type=int, default=20_000)
    p.add_argument("--series", type=int, default=2_000)
    p.add_argument("--tsdb", choices=[*SERVERS, "both"], default="both")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--batch-records", type=int, default=5_000)
    p.add_argument("--runs", type=int, default=1, help="runs per TSDB (the median is reported)")
    p.add_argument("--naming", choices=["aggregation", "flat"], default="aggregation")
    p.add_argument("--split", action="store_true", help="also measure runner and encoder alone")
    p.add_argument(
        "--max-samples-per-request",
        type=int,
        default=RemoteWriteSettings.model_fields["max_samples_per_request"].default,
        help="the sink's setting (default: the sink's default)",
    )
    p.add_argument("--bootstrap-servers", help="use this broker instead of an embedded one")
    p.add_argument("--json", type=Path, help="also write the results to this file")
    p.add_argument(
        "--default-gc",
        action="store_true",
        help="keep Python's default garbage collector thresholds (the sink process tunes them)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging("warning")
    if not args.default_gc:
        tune_garbage_collector()  # as `metrics-pipeline sink` runs (runtime.serve)
    kinds = list(SERVERS) if args.tsdb == "both" else [args.tsdb]
    results: list[SinkBenchResult] = []
    with ExitStack() as stack:
        bootstrap = (
            args.bootstrap_servers or stack.enter_context(EmbeddedBroker()).bootstrap_servers
        )
        for kind in kinds:
            runs = [
                run_once(
                    bootstrap,
                    kind,
                    args.rollups,
                    args.series,
                    args.concurrency,
                    args.batch_records,
                    args.naming,
                    args.split,
                    args.max_samples_per_request,
                )
                for _ in range(args.runs)
            ]
            median = statistics.median(r.samples_per_s for r in runs)
            for r in runs:
                print(
                    f"{kind:17} {r.rollups:,} rollups = {r.samples:,} samples in {r.seconds:.2f} s:"
                    f" {r.samples_per_s:,.0f} samples/s ({r.rollups_per_s:,.0f} rollups/s),"
                    f" stored {r.stored_samples:,} {'OK' if r.verified else 'MISMATCH'};"
                    f" CPU s: sink {r.sink_cpu_seconds:.2f}, {kind} {r.tsdb_cpu_seconds:.2f};"
                    f" {r.samples_per_sink_cpu_s:,.0f} samples per sink CPU-second"
                    f" (GC {r.gc_seconds:.2f} s in {r.gc_collections} collections of"
                    f" generations 0/1/2; by thread {r.cpu_by_thread})"
                )
                if r.runner_cpu_seconds is not None and r.encoder_cpu_seconds is not None:
                    print(split_line(r))
            print(f"{kind:17} median {median:,.0f} samples/s over {len(runs)} run(s)")
            results.extend(runs)
    if args.json is not None:
        args.json.write_text(orjson.dumps([asdict(r) for r in results]).decode() + "\n")
    return 0 if all(r.verified for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
