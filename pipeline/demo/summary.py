"""Read the output topics back and summarize them for people: counts, conservation, percentiles."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Message
from rich.console import Console
from rich.table import Table

from pipeline.kafka.admin import UnknownTopicError, partition_count
from pipeline.kafka.clients import Connection
from pipeline.kafka.reader import read_to_end


@dataclass
class OutputSummary:
    rollups: dict[str, dict[str, Any]] = field(default_factory=dict)
    deadletters: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicate_rollups: int = 0
    conflicting_duplicates: int = 0

    @property
    def samples_in_rollups(self) -> int:
        return sum(r["count"] for r in self.rollups.values())

    def deadletter_samples(self, stage: str | None = None) -> Counter[str]:
        """Dead-lettered samples by reason (of one stage's records, if given)."""
        counts: Counter[str] = Counter()
        for record in self.deadletters.values():
            if stage is None or record.get("stage") == stage:
                counts[record["reason"]] += record["samples"]
        return counts

    @property
    def samples_accounted(self) -> int:
        return self.samples_in_rollups + sum(self.deadletter_samples("worker").values())


def read_outputs(
    bootstrap_servers: Connection, rollup_topic: str, deadletter_topic: str
) -> OutputSummary:
    """Rollups and dead letters keyed like a compacted topic would keep them.

    A topic that does not exist (yet) reads as empty.
    """
    summary = OutputSummary()
    raw_rollups: dict[str, bytes] = {}
    for msg in _read_all(bootstrap_servers, rollup_topic):
        key = (msg.key() or b"").decode()
        value = msg.value() or b""
        if key in raw_rollups:
            summary.duplicate_rollups += 1
            summary.conflicting_duplicates += raw_rollups[key] != value
        raw_rollups[key] = value
    summary.rollups = {k: orjson.loads(v) for k, v in raw_rollups.items()}
    for msg in _read_all(bootstrap_servers, deadletter_topic):
        summary.deadletters[(msg.key() or b"").decode()] = orjson.loads(msg.value() or b"{}")
    return summary


def _read_all(bootstrap_servers: Connection, topic: str) -> Iterator[Message]:
    try:
        partitions = partition_count(bootstrap_servers, topic)
    except UnknownTopicError:
        return iter(())
    return read_to_end(bootstrap_servers, topic, range(partitions))


def print_summary(
    console: Console, summary: OutputSummary, samples_sent: int | None, examples: int = 8
) -> None:
    rollups = list(summary.rollups.values())
    series = {r["series_key"] for r in rollups}
    windows = {(r["resolution"], r["window_start"]) for r in rollups}
    overview = Table(title="Rollups", show_header=False)
    overview.add_row("series", f"{len(series):,}")
    overview.add_row("windows", f"{len(windows):,}")
    overview.add_row("rollups", f"{len(rollups):,}")
    overview.add_row("samples in rollups", f"{summary.samples_in_rollups:,}")
    overview.add_row(
        "re-emitted duplicates",
        f"{summary.duplicate_rollups:,} ({summary.conflicting_duplicates} with different content)",
    )
    console.print(overview)

    dead = summary.deadletter_samples("worker")
    if dead:
        table = Table(title="Dead letters by reason")
        table.add_column("reason")
        table.add_column("samples", justify="right")
        for reason, count in sorted(dead.items()):
            table.add_row(reason, f"{count:,}")
        console.print(table)

    busiest: dict[str, dict[str, Any]] = {}
    for r in rollups:
        if r["series"]["type"] == "timer":
            best = busiest.get(r["series_key"])
            if best is None or (r["count"], r["window_start"]) > (
                best["count"],
                best["window_start"],
            ):
                busiest[r["series_key"]] = r
    timers = sorted(busiest.values(), key=lambda r: (-r["percentiles"]["p99"], r["series_key"]))
    if timers:
        table = Table(title=f"Timers: busiest window of the {examples} series with the highest p99")
        for column in ("series", "window (UTC)", "count", "p50", "p99", "p99.9"):
            table.add_column(column, justify="left" if column == "series" else "right")
        for r in timers[:examples]:
            s = r["series"]
            unit = s.get("unit", "")
            start = datetime.fromtimestamp(r["window_start"] / 1000, tz=UTC)
            p = r["percentiles"]
            table.add_row(
                f"{s['service']}/{s['region']}/{s['name']}",
                f"{start:%H:%M:%S}+{r['resolution']}",
                str(r["count"]),
                *(f"{p[name]:.2f}{unit}" if name in p else "-" for name in ("p50", "p99", "p99.9")),
            )
        console.print(table)

    accounted = summary.samples_accounted
    late = dead.get("late", 0)
    invalid = sum(dead.values()) - late
    line = (
        f"conservation: {summary.samples_in_rollups:,} in rollups + {invalid:,} dead-lettered "
        f"+ {late:,} late = {accounted:,}"
    )
    if samples_sent is not None:
        verdict = "[green]OK[/green]" if accounted == samples_sent else "[red]MISMATCH[/red]"
        line += f" of {samples_sent:,} sent  {verdict}"
    console.print(line)


def print_tiers(
    console: Console, tiers: dict[str, OutputSummary], base_samples: int, late: dict[str, int]
) -> bool:
    """One row per resolution: every tier must hold the samples of the base tier, minus any
    child rollups that arrived after their coarse window closed (dead-lettered as late)."""
    table = Table(title="Rollups per resolution (each tier merges the digests of the one below)")
    complete = True
    for column in ("resolution", "rollups", "series", "windows", "samples", "late children", ""):
        table.add_column(column, justify="right")
    for resolution, summary in tiers.items():
        rollups = summary.rollups.values()
        samples = summary.samples_in_rollups
        missing = base_samples - samples - late.get(resolution, 0)
        complete = complete and missing == 0
        table.add_row(
            resolution,
            f"{len(summary.rollups):,}",
            f"{len({r['series_key'] for r in rollups}):,}",
            f"{len({r['window_start'] for r in rollups}):,}",
            f"{samples:,}",
            f"{late.get(resolution, 0):,}",
            "[green]OK[/green]" if missing == 0 else f"[red]{missing:,} missing[/red]",
        )
    console.print(table)
    return complete
