"""`make bench`: throughput, CPU, memory, emission delay and accuracy of the rollup worker.

    python -m load.bench [--samples N] [--encoding single|array|columnar|all] [--runs 3]
                         [--bootstrap-servers HOST:PORT] [--memory-series 100000]
                         [--hot-samples 300000] [--results-dir load/results]

Order of work (an embedded Tansu broker is started unless --bootstrap-servers is given):

1. warm-up and accuracy: the "hot" scenario (20 series, 2,500 samples per window, so percentiles
   come from t-digests) is pre-loaded and run once through the limit consumer and the worker
   (subprocess, end to end); its timings are discarded, its p50/p99/p99.9 are compared to numpy;
2. per encoding: the standard workload is pre-loaded (generation and producing are not timed),
   then each run measures the limit (bare consumer + orjson), the worker (one process) and, for
   the encodings in --multi-process (single by default), `worker --processes auto` (one group
   member per usable CPU) on the same topic, and verifies every rollup each worker emitted
   against the ground truth. Two ratios per run, both independent of the machine's speed:
   worker wall throughput ÷ the limit's, and worker CPU per sample ÷ the limit's;
3. live emission delay (load/live.py): the worker started first, samples sent at a steady rate
   with event time = now, well-partitioned (murmur2) and with librdkafka's default partitioner,
   beside the broker's own produce → consume latency in the same run;
4. memory per open series-window at the core level (subprocess, see load/memory.py).

Exit status 1 if any verification failed or a run did not complete (a fast wrong answer fails);
a missed target is reported as MISS but does not change the exit status.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from load import report
from load.limit import LIMIT_BATCH, LIMIT_SETTINGS, measure_limit
from load.live import LIVE_PARTITIONERS, TRANSPORT_LINGERS_MS, measure_live, measure_transport
from load.memory import measure_memory
from load.scenarios import (
    EXTRA_SCENARIOS,
    SCENARIOS,
    STANDARD_SAMPLES,
    Loaded,
    Scenario,
    hot_scenario,
    preload,
)
from load.scenarios import standard_scenario as standard
from load.verify import Expected, Verification, accuracy, expected_windows, verify
from load.worker_run import WorkerResult, run_worker
from pipeline.demo.summary import OutputSummary, read_outputs
from pipeline.kafka.broker import EmbeddedBroker
from pipeline.supervise import process_count

PARTITIONS = 8
DEFAULT_RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m load.bench", description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=STANDARD_SAMPLES, help="standard workload size")
    p.add_argument("--encoding", choices=[*SCENARIOS, *EXTRA_SCENARIOS, "all"], default="all")
    p.add_argument("--runs", type=int, default=3, help="measured runs per encoding (median)")
    p.add_argument("--bootstrap-servers", help="use this broker instead of an embedded one")
    p.add_argument("--memory-series", type=int, default=100_000, help="0 skips the scenario")
    p.add_argument("--memory-per-series", type=int, default=10)
    p.add_argument("--hot-samples", type=int, default=300_000, help="0 skips warm-up/accuracy")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per limit/worker run")
    p.add_argument(
        "--live-seconds", type=float, default=25.0, help="measured live interval; 0 skips it"
    )
    p.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    p.add_argument(
        "--multi-process",
        default="single",
        help="encodings also run with --processes auto (comma-separated; 'none': no encoding)",
    )
    args = p.parse_args(argv)
    if args.samples < 1_000 or args.runs < 1:
        p.error("--samples must be >= 1000 and --runs >= 1")
    return args


class Bench:
    def __init__(self, bootstrap: str, args: argparse.Namespace, progress: Progress) -> None:
        self.bootstrap = bootstrap
        self.args = args
        self.progress = progress
        self.token = uuid.uuid4().hex[:8]
        self.say = progress.console.print

    def load(self, scenario: Scenario) -> Loaded:
        task = self.progress.add_task(f"pre-load {scenario.name}", total=None)

        def update(n: int) -> None:
            self.progress.update(task, completed=n, total=None)

        topic = f"bench-{self.token}-{scenario.name}"
        loaded = preload(self.bootstrap, scenario, topic, PARTITIONS, update)
        m = loaded.workload.manifest
        self.progress.remove_task(task)
        self.say(
            f"[bold]{scenario.name}[/bold]: {m.samples_total:,} samples in {m.messages:,} "
            f"messages, {m.series:,} series, lateness {scenario.lateness_ms / 1000:g} s; "
            f"pre-loaded at {loaded.produce_stats.messages_per_s:,.0f} messages/s"
        )
        return loaded

    def run(
        self, loaded: Loaded, expected: Expected, label: str, multi_process: bool = False
    ) -> dict[str, Any]:
        """One limit measurement, then one worker run (and one with --processes auto if asked),
        then verification of each worker's output."""
        out: dict[str, Any] = {}
        try:
            task = self.progress.add_task(f"{label} limit", total=None)
            limit = measure_limit(
                self.bootstrap, loaded.topic, PARTITIONS, loaded.messages, self.args.timeout
            )
            self.progress.remove_task(task)
            out["limit"] = limit.to_dict()
            out["limit"]["settings"] = LIMIT_SETTINGS
            out["limit"]["batch"] = LIMIT_BATCH
            self.say(
                f"  {label}: limit {limit.samples_per_s:,.0f} samples/s, "
                f"{limit.samples_per_cpu_s:,.0f} per CPU-s"
            )
            for key, processes in [("worker", 1)] + (
                [("worker_auto", process_count("auto"))] if multi_process else []
            ):
                worker, checked, summary = self.run_worker(loaded, expected, label, processes)
                out[key] = worker.to_dict()
                out[f"verification{key.removeprefix('worker')}"] = checked.to_dict()
                if key == "worker":
                    out["_summary"] = summary
                self.say(
                    f"  {label}: worker, {processes} process{'es' if processes > 1 else ''}: "
                    f"{worker.samples_per_s:,.0f} samples/s "
                    f"({worker.samples_per_s / limit.samples_per_s:.0%} of the limit), "
                    f"{worker.samples_per_cpu_s:,.0f} per CPU-s (CPU per sample "
                    f"{limit.samples_per_cpu_s / worker.samples_per_cpu_s:.2f}× the limit's), "
                    f"peak RSS {worker.peak_rss_kb / 1024:,.0f} MiB, "
                    f"p99 delay {worker.delay_p99_s * 1000:.0f} ms · verified "
                    + (
                        "[green]OK[/green]"
                        if checked.ok
                        else f"[red]FAILED[/red] {checked.problems}"
                    )
                )
        except Exception as exc:  # one failed run must not hide the others' results
            out["error"] = f"{type(exc).__name__}: {exc}"
            self.say(f"  [red]{label} failed[/red]: …{out['error'][-1500:]}")
        return out

    def run_worker(
        self, loaded: Loaded, expected: Expected, label: str, processes: int
    ) -> tuple[WorkerResult, Verification, OutputSummary]:
        task = self.progress.add_task(f"{label} worker ×{processes} (rollups)", total=len(expected))
        worker = run_worker(
            self.bootstrap,
            loaded.topic,
            loaded.scenario.lateness_ms,
            loaded.samples,
            len(expected),
            self.args.timeout,
            lambda delivered, _: self.progress.update(task, completed=delivered),
            processes,
        )
        self.progress.remove_task(task)
        summary = read_outputs(self.bootstrap, worker.rollup_topic, worker.deadletter_topic)
        checked = verify(summary, expected, loaded.workload.truth, loaded.samples)
        return worker, checked, summary

    def hot(self) -> tuple[dict[str, Any], bool]:
        loaded = self.load(hot_scenario(self.args.hot_samples))
        expected = expected_windows(loaded.workload.truth)
        result = self.run(loaded, expected, "warm-up (hot)")
        summary = result.pop("_summary", None)
        ok = summary is not None and result["verification"]["ok"]
        if summary is None:
            return {"error": result.get("error")}, False
        acc = accuracy(summary, expected, loaded.workload.truth)
        acc["verification"] = result["verification"]
        acc["level"] = "worker (end to end, single-sample JSON)"
        med = acc["p99_median_error"]
        self.say(
            f"  accuracy over {acc['windows']} windows of ≥ 1,000 samples: p99 median relative "
            f"error {'n/a' if med is None else f'{med:.3%}'}"
        )
        return acc, ok

    def live(self) -> dict[str, Any]:
        task = self.progress.add_task("live: broker alone", total=None)
        out: dict[str, Any] = {"runs": {}}
        out["transport"] = {}
        for linger in TRANSPORT_LINGERS_MS:
            transport = measure_transport(self.bootstrap, linger_ms=linger)
            out["transport"][str(linger)] = transport.to_dict()
            self.say(
                f"[bold]live[/bold]: broker alone, linger {linger} ms, produce → consume p50 "
                f"{transport.p50_s * 1000:.0f} ms, p99 {transport.p99_s * 1000:.0f} ms"
            )
        for partitioner in LIVE_PARTITIONERS:
            self.progress.update(task, description=f"live: {partitioner}")
            try:
                r = measure_live(self.bootstrap, partitioner, measured_s=self.args.live_seconds)
            except Exception as exc:  # one failed run must not hide the others' results
                out["runs"][partitioner] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            out["runs"][partitioner] = r.to_dict()
            self.say(
                f"  live {partitioner}: {r.windows} windows · worker p99 "
                f"{'> ' if r.worker_p99_above else ''}{r.worker_p99_s * 1000:.0f} ms · window "
                f"end + lateness → rollup sent p50 {r.end_to_end_p50_s * 1000:.0f} ms, p99 "
                f"{r.end_to_end_p99_s * 1000:.0f} ms"
            )
        self.progress.remove_task(task)
        return out

    def encoding(self, name: str) -> dict[str, Any]:
        scenario = standard(name, self.args.samples)
        loaded = self.load(scenario)
        expected = expected_windows(loaded.workload.truth)
        runs = []
        multi = name in self.args.multi_process.split(",")
        for i in range(self.args.runs):
            result = self.run(loaded, expected, f"{name} run {i + 1}/{self.args.runs}", multi)
            result.pop("_summary", None)
            runs.append(result)
        verified = all(
            r.get(key, {}).get("ok", False)
            for r in runs
            for key in ("verification", "verification_auto")
            if key == "verification" or multi
        )
        spec = scenario.spec
        return {
            "workload": {
                "samples": loaded.samples,
                "messages": loaded.workload.manifest.messages,
                "series": loaded.workload.manifest.series,
                "expected_rollups": len(expected),
                "batch_size": spec.batch_size if spec.encoding != "single" else 1,
                "flush_interval_ms": spec.flush_interval_ms if spec.encoding != "single" else None,
                "allowed_lateness_ms": scenario.lateness_ms,
                "tick_ts_ms": scenario.tick_ts_ms,
            },
            "preload_messages_per_s": loaded.produce_stats.messages_per_s,
            "runs": runs,
            "median": report.medians(runs),
            "verified": verified,
        }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:  # piped or captured: room for the tables
        console = Console(width=160)
    started = time.perf_counter()
    encodings = list(SCENARIOS) if args.encoding == "all" else [args.encoding]
    results: dict[str, Any] = {
        "machine": report.machine_info(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "limit_consumer": {"settings": LIMIT_SETTINGS, "consume_batch": LIMIT_BATCH},
        "encodings": {},
    }
    ok = True
    with ExitStack() as stack:
        bootstrap = args.bootstrap_servers
        if bootstrap is None:
            bootstrap = stack.enter_context(EmbeddedBroker()).bootstrap_servers
            console.print(f"[bold]broker[/bold] embedded Tansu on {bootstrap}")
        results["broker"] = "embedded Tansu" if args.bootstrap_servers is None else bootstrap
        progress = stack.enter_context(
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
        )
        bench = Bench(bootstrap, args, progress)
        if args.hot_samples:
            results["accuracy"], hot_ok = bench.hot()
            ok &= hot_ok
        for name in encodings:
            results["encodings"][name] = bench.encoding(name)
            ok &= results["encodings"][name]["verified"]
        if args.live_seconds > 0:
            results["live"] = bench.live()
        if args.memory_series:
            task = progress.add_task(f"memory, {args.memory_series:,} series (core)", total=None)
            results["memory"] = measure_memory(args.memory_series, args.memory_per_series)
            progress.remove_task(task)
    results["targets"] = [
        {"name": t.name, "measured": t.measured, "verdict": t.verdict, "passed": t.passed}
        for t in report.targets(results)
    ]
    results["verified"] = ok
    results["wall_seconds"] = time.perf_counter() - started
    report.print_report(console, results)
    path = report.write_json(results, args.results_dir)
    console.print(f"results: {path}  ·  total {results['wall_seconds']:.0f} s")
    console.print("\nMarkdown for the README:\n")
    console.print(report.markdown(results), markup=False, highlight=False, soft_wrap=True)
    if not ok:
        console.print("[red bold]VERIFICATION FAILED[/red bold]: the numbers above are not valid")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
