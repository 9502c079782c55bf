"""Summaries of a benchmark: medians, targets (PASS/MISS), rich tables, Markdown and JSON."""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from load.live import CLIENT_LINGER_MS

KIB = 1024
MEMORY_TARGET_SERIES = 100_000


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    passed: bool | None  # None: not applicable to this run (e.g. a reduced memory scenario)

    @property
    def verdict(self) -> str:
        return "n/a" if self.passed is None else ("PASS" if self.passed else "MISS")


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": platform.machine(),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs that completed (limit and worker both measured)."""
    done = [r for r in runs if "worker" in r and "limit" in r]
    if not done:
        return {}

    def med(path: tuple[str, str]) -> float:
        return float(statistics.median(r[path[0]][path[1]] for r in done))

    def per_run(f: Any, among: list[dict[str, Any]] = done) -> float:
        return float(statistics.median(f(r) for r in among))

    auto: dict[str, Any] = {}
    with_auto = [r for r in done if "worker_auto" in r]
    if with_auto:
        auto = {
            "auto_runs": len(with_auto),
            "auto_processes": with_auto[0]["worker_auto"]["processes"],
            "auto_samples_per_s": per_run(lambda r: r["worker_auto"]["samples_per_s"], with_auto),
            "auto_samples_per_cpu_s": per_run(
                lambda r: r["worker_auto"]["samples_per_cpu_s"], with_auto
            ),
            # both ratios within one run (the host is shared: runs differ, ratios less)
            "auto_speedup": per_run(
                lambda r: r["worker_auto"]["samples_per_s"] / r["worker"]["samples_per_s"],
                with_auto,
            ),
            "auto_ratio": per_run(
                lambda r: r["worker_auto"]["samples_per_s"] / r["limit"]["samples_per_s"],
                with_auto,
            ),
            "auto_delay_p99_s": per_run(lambda r: r["worker_auto"]["delay_p99_s"], with_auto),
        }
    return {
        "runs": len(done),
        "limit_samples_per_s": med(("limit", "samples_per_s")),
        "limit_samples_per_cpu_s": med(("limit", "samples_per_cpu_s")),
        "worker_samples_per_s": med(("worker", "samples_per_s")),
        "worker_samples_per_cpu_s": med(("worker", "samples_per_cpu_s")),
        "worker_samples_per_process_cpu_s": med(("worker", "samples_per_process_cpu_s")),
        "worker_seconds": med(("worker", "seconds")),
        "ratio": float(
            statistics.median(
                r["worker"]["samples_per_s"] / r["limit"]["samples_per_s"] for r in done
            )
        ),
        # worker CPU per sample ÷ the limit's (1 = as cheap as a bare consumer + parse)
        "cpu_ratio": per_run(
            lambda r: r["limit"]["samples_per_cpu_s"] / r["worker"]["samples_per_cpu_s"]
        ),
        "peak_rss_kb": med(("worker", "peak_rss_kb")),
        "limit_peak_rss_kb": med(("limit", "peak_rss_kb")),
        "delay_p99_s": med(("worker", "delay_p99_s")),
        "delay_p99_above": any(r["worker"]["delay_p99_above"] for r in done),
        **auto,
    }


def targets(results: dict[str, Any]) -> list[Target]:
    enc = {k: v.get("median", {}) for k, v in results["encodings"].items()}
    out: list[Target] = []
    if enc.get("single"):
        single = enc["single"]
        ratio = single["ratio"]
        out.append(
            Target(
                "single JSON per message: worker ≥ 85% of the limit", f"{ratio:.0%}", ratio >= 0.85
            )
        )
        rate = single["worker_samples_per_cpu_s"]
        out.append(
            Target(
                "single JSON per message: ≥ 600k samples per worker CPU-s", _n(rate), rate >= 6e5
            )
        )
        if "cpu_ratio" in single:
            out.append(
                Target(
                    "single: worker CPU per sample ÷ the limit's (informative)",
                    f"{single['cpu_ratio']:.2f}×",
                    None,
                )
            )
        if "auto_speedup" in single:
            speedup = single["auto_speedup"]
            out.append(
                Target(
                    f"single, --processes auto ({single['auto_processes']}): ≥ 1.5× the "
                    "1-process wall throughput",
                    f"{speedup:.2f}× ({_n(single['auto_samples_per_s'])}/s, "
                    f"{single['auto_ratio']:.0%} of the limit)",
                    speedup >= 1.5,
                )
            )
    if enc.get("array"):
        rate = enc["array"]["worker_samples_per_cpu_s"]
        out.append(
            Target("JSON arrays of 100: ≥ 1.5M samples per worker CPU-s", _n(rate), rate >= 1.5e6)
        )
    if enc.get("columnar"):
        rate = enc["columnar"]["worker_samples_per_cpu_s"]
        out.append(
            Target("columnar 1,000 points: ≥ 8M samples per worker CPU-s", _n(rate), rate >= 8e6)
        )
    memory = results.get("memory")
    if memory:
        per = memory["bytes_per_window"]
        applies = memory["open_windows"] >= MEMORY_TARGET_SERIES
        out.append(
            Target(
                "memory: ≤ 3 KiB RSS per open series-window at 100k series (core)",
                f"{per:,.0f} B at {memory['open_windows']:,} windows",
                per <= 3 * KIB if applies else None,
            )
        )
    out += _live_targets(results.get("live") or {})
    delay_enc = "single" if enc.get("single") else next((k for k, v in enc.items() if v), None)
    if delay_enc is not None:
        delay = enc[delay_enc]
        shown = f"{'> ' if delay['delay_p99_above'] else ''}{delay['delay_p99_s'] * 1000:.0f} ms"
        out.append(
            Target(
                f"catch-up: emission delay p99 ≤ 250 ms ({delay_enc}, pre-loaded backlog)",
                shown,
                not delay["delay_p99_above"] and delay["delay_p99_s"] <= 0.25,
            )
        )
    acc = results.get("accuracy")
    if acc:
        err = acc["p99_median_error"]
        out.append(
            Target(
                "accuracy: p99 relative error ≤ 1% (median, windows ≥ 1,000 samples)",
                "no window ≥ 1,000 samples"
                if err is None
                else f"{err:.3%} ({acc['windows']} windows)",
                None if err is None else err <= 0.01,
            )
        )
    return out


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _live_targets(live: dict[str, Any]) -> list[Target]:
    """Live stream: the worker's own delay is the target; end to end is shown beside the
    broker's bare produce → consume latency of the same run, which bounds it from below."""
    out: list[Target] = []
    # The broker alone with the live runs' producer linger (older results: one dict).
    transports = live.get("transport") or {}
    transport = transports.get(str(CLIENT_LINGER_MS)) if "p99_s" not in transports else transports
    for partitioner, r in live.get("runs", {}).items():
        if "error" in r:
            out.append(Target(f"live ({partitioner})", r["error"][-200:], False))
            continue
        worker = f"{'> ' if r['worker_p99_above'] else ''}{_ms(r['worker_p99_s'])}"
        out.append(
            Target(
                f"live, {partitioner}: emission delay p99 ≤ 250 ms (worker)",
                f"{worker} ({r['windows']} windows at {_n(r['rate'])} samples/s)",
                not r["worker_p99_above"] and r["worker_p99_s"] <= 0.25,
            )
        )
        hop = f"; broker alone p99 {_ms(transport['p99_s'])}" if transport else ""
        out.append(
            Target(
                f"live, {partitioner}: window end + lateness → rollup sent (informative)",
                f"p50 {_ms(r['end_to_end_p50_s'])}, p99 {_ms(r['end_to_end_p99_s'])}{hop}",
                None,
            )
        )
    return out


def _n(x: float) -> str:
    """1234567 → '1.23M', 45600 → '45.6k'."""
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def _rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, data in results["encodings"].items():
        m = data.get("median")
        ok = "yes" if data["verified"] else "NO"
        if not m:
            rows.append([name, *["-"] * (len(_HEADERS) - 2), ok])
            continue
        auto = (
            f"{_n(m['auto_samples_per_s'])} ×{m['auto_processes']} "
            f"({m['auto_speedup']:.2f}× 1 process)"
            if "auto_speedup" in m
            else "-"
        )
        delay = f"{'>' if m['delay_p99_above'] else ''}{m['delay_p99_s'] * 1000:.0f} ms"
        rows.append(
            [
                name,
                f"{_n(m['limit_samples_per_s'])} ({_n(m['limit_samples_per_cpu_s'])}/CPU-s)",
                _n(m["worker_samples_per_s"]),
                f"{m['ratio']:.0%}",
                _n(m["worker_samples_per_cpu_s"]),
                f"{m['cpu_ratio']:.2f}×",
                auto,
                _n(m["worker_samples_per_process_cpu_s"]),
                f"{m['peak_rss_kb'] / KIB:,.0f} MiB ({m['limit_peak_rss_kb'] / KIB:,.0f} MiB)",
                delay,
                ok,
            ]
        )
    return rows


_HEADERS = [
    "encoding",
    "limit samples/s",
    "worker samples/s",
    "worker / limit",
    "per worker CPU-s",
    "worker CPU per sample ÷ limit's",
    "--processes auto samples/s",
    "per process CPU-s",
    "peak RSS worker (limit)",
    "p99 emission delay",
    "verified",
]


NOTES = (
    "Limit: bare confluent-kafka consumer + orjson.loads of every message, same topic, own "
    "process, with the fastest consumer settings found for it (load/limit.py LIMIT_SETTINGS), "
    "not the worker's. single-default-partitioner: the single workload produced with "
    "librdkafka's default partitioner (consistent_random), so most samples are forwarded. "
    "Worker: `python -m pipeline.cli worker`, timed from its first "
    "consumed sample to its last delivered rollup. Per worker CPU-s: worker CPU over that "
    "interval (/proc/<pid>/stat); per process CPU-s: its whole life from wait4 (start-up, group "
    "join, shutdown). Peak RSS: VmHWM. p99 emission delay: from the worker's histogram, linearly "
    "interpolated inside the bucket holding the 99th percentile. --processes auto: the same "
    "worker as one group member per usable CPU under a supervisor (merged /metrics; CPU and "
    "RSS summed over the processes), run right after the 1-process worker on the same topic. "
    "Memory: core level "
    "(SeriesTable + Decoder + PartitionAggregator in a fresh process, one open window per "
    "series). Accuracy: 20 hot series × 2,500 samples per window through the worker, p99 vs "
    "numpy.quantile. Every run's rollups are verified against the ground truth."
)


def print_report(console: Console, results: dict[str, Any]) -> None:
    table = Table(title=f"metrics-pipeline benchmark — {_workload_line(results)}")
    for h in _HEADERS:
        table.add_column(h, justify="left" if h == "encoding" else "right")
    for row in _rows(results):
        table.add_row(*row)
    console.print(table)
    checks = Table(title="Targets")
    for h in ("target", "measured", "verdict"):
        checks.add_column(h)
    for t in results["targets"]:
        colour = {"PASS": "green", "MISS": "red"}.get(t["verdict"], "yellow")
        checks.add_row(t["name"], t["measured"], f"[{colour}]{t['verdict']}[/{colour}]")
    console.print(checks)
    console.print(NOTES, style="dim", highlight=False)
    console.print(_limit_line(results), style="dim", highlight=False)


def _limit_line(results: dict[str, Any]) -> str:
    limit = results.get("limit_consumer")
    if not limit:
        return ""
    shown = ", ".join(f"{k}={v}" for k, v in limit["settings"].items())
    return f"Limit consumer settings: {shown}, consume(num_messages={limit['consume_batch']})."


def _workload_line(results: dict[str, Any]) -> str:
    a = results["args"]
    return f"{a['samples']:,} samples, 1,000 series, medians of {a['runs']} run(s)"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Measured {m['date']} with `make bench` on {m['machine']}, {m['nproc']} CPUs "
        f"({m['cpu_model']}), Python {m['python']}, broker on the same machine; "
        f"{_workload_line(results)}. {NOTES} {_limit_line(results)}",
        "",
        "| " + " | ".join(_HEADERS) + " |",
        "|" + "---|" * len(_HEADERS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(results)]
    lines += ["", "| target | measured | |", "|---|---|---|"]
    lines += [f"| {t['name']} | {t['measured']} | {t['verdict']} |" for t in results["targets"]]
    return "\n".join(lines)


def write_json(results: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{results['machine']['date']}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    return path
