"""`metrics-pipeline demo`, step by step: a broker, a load, the pipeline's processes on one
supervisor, waiting for each stage to drain, then the report."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.core.durations import format_duration
from pipeline.demo.alerts import (
    Incident,
    alert_bridge,
    bridge_caught_up,
    detect_settings,
    detector_done,
    inject_incident,
    print_anomalies,
    wait_until,
)
from pipeline.demo.sinks import (
    build_sinks,
    plot_busiest_timer,
    print_remote_write_query,
    print_store,
    start_sinks,
    wait_stored,
)
from pipeline.demo.summary import print_summary, print_tiers, read_outputs
from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.kafka.broker import EmbeddedBroker
from pipeline.kafka.detect_worker import DetectWorker
from pipeline.kafka.stage import PartitionedStage
from pipeline.kafka.tier_worker import TierWorker
from pipeline.kafka.worker import RollupWorker
from pipeline.loadgen.anchor import event_start_ms
from pipeline.loadgen.build import Workload, generate
from pipeline.loadgen.produce import produce
from pipeline.loadgen.spec import MalformedCounts, WorkloadSpec
from pipeline.runtime import ThreadSupervisor
from pipeline.settings import TierSettings, WorkerSettings
from pipeline.store import DEFAULT_STORE_PATH

DEMO_PARTITIONER = "consistent_random"
DEMO_SPEC = WorkloadSpec(
    seed=42,
    services=10,
    regions=4,
    duration_s=300.0,
    samples=300_000,
    late_fraction=0.002,
    mismatched_key_fraction=0.001,
    malformed=MalformedCounts.each(3),
)


@dataclass(frozen=True)
class DemoOptions:
    store_path: Path
    plot_path: Path
    remote_write_url: str | None
    alertmanager_url: str | None
    timeout_s: float


@dataclass
class Outcome:
    """What the run left to report, once its processes (and their Kafka clients) are gone."""

    worker_s: float
    tiers_s: float
    forwarded: int
    failed: list[str]
    stored: bool
    detected: bool
    alerts_sent: int | None


def run_demo(
    bootstrap_servers: str | None = None,
    samples: int = 300_000,
    partitions: int = 8,
    timeout_s: float = 300.0,
    console: Console | None = None,
    store_path: Path = DEFAULT_STORE_PATH,
    plot_path: Path = Path("metrics-demo.png"),
    remote_write_url: str | None = None,
    alertmanager_url: str | None = None,
    start_ms: int | None = None,
) -> bool:
    """Run the whole job; returns True when every sample sent is accounted for."""
    # A pipe or a CI log gets 80 columns by default: too narrow for the tables.
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    options = DemoOptions(store_path, plot_path, remote_write_url, alertmanager_url, timeout_s)
    spec = replace(
        DEMO_SPEC,
        samples=samples,
        start_ms=event_start_ms(DEMO_SPEC.duration_s) if start_ms is None else start_ms,
    )
    with ExitStack() as stack:
        if bootstrap_servers is None:
            bootstrap_servers = stack.enter_context(EmbeddedBroker()).bootstrap_servers
            console.print(f"[bold]broker[/bold] embedded Tansu on {bootstrap_servers}")
        settings = demo_settings(bootstrap_servers, partitions)
        workload, incident = produce_load(console, settings, spec)
        outcome = run_pipeline(console, settings, workload, options)
        return report(console, settings, workload, incident, outcome, options)


def demo_settings(bootstrap_servers: str, partitions: int) -> WorkerSettings:
    """A fresh consumer group, a quick idle flush, and topics the demo creates itself."""
    settings = WorkerSettings(
        bootstrap_servers=bootstrap_servers,
        group_id=f"demo-{int(time.time())}",
        idle_timeout="2s",
        session_timeout_ms=6000,
        http_port=0,
        topic_partitions=partitions,
        create_topics=True,  # the demo owns its (often embedded) broker
    )
    ensure_topics(bootstrap_servers, [TopicSpec(settings.input_topic, partitions)])
    return settings


def produce_load(
    console: Console, settings: WorkerSettings, spec: WorkloadSpec
) -> tuple[Workload, Incident]:
    """Generate the workload with one latency incident in it and produce it to the raw topic."""
    workload = generate(spec)
    incident = inject_incident(workload)
    manifest = workload.manifest
    console.print(
        f"[bold]load[/bold] {manifest.samples_total:,} samples in {manifest.messages:,} "
        f"messages, {manifest.series:,} series, {spec.duration_s:.0f} s of event time "
        f"({manifest.intended_late_samples:,} meant late, {manifest.malformed_samples:,} "
        f"malformed, {manifest.mismatched_key_samples:,} mis-keyed)"
    )
    with _progress(console) as progress:
        task = progress.add_task("producing", total=manifest.messages)
        stats = produce(
            settings.bootstrap_servers,
            settings.input_topic,
            workload.messages(),
            progress=lambda n: progress.update(task, completed=n),
            progress_every=10_000,
            # What an unconfigured librdkafka client (Python, Go, .NET, C) does: most
            # samples land on a partition that does not own their series and take a detour.
            partitioner=DEMO_PARTITIONER,
        )
        progress.update(task, completed=manifest.messages)
    console.print(
        f"      {stats.messages_per_s:,.0f} messages/s into {settings.input_topic} "
        f"(partitioner {DEMO_PARTITIONER}, librdkafka's default)"
    )
    return workload, incident


def run_pipeline(
    console: Console, settings: WorkerSettings, workload: Workload, options: DemoOptions
) -> Outcome:
    """Worker, tiers, sinks, detector (and the alert bridge) on one supervisor, each waited for
    in turn until every stage has drained; then all stopped."""
    steps = tier_settings(settings).steps()
    worker = RollupWorker(settings)
    tiers = [TierWorker(step) for step in steps]
    detector = DetectWorker(detect_settings(settings))
    bridge = (
        alert_bridge(detector.settings, options.alertmanager_url)
        if options.alertmanager_url
        else None
    )
    sinks = build_sinks(
        settings,
        [settings.output_topic, *(step.output_topic for step in steps)],
        options.store_path,
        options.remote_write_url,
    )
    stages: list[PartitionedStage[Any]] = [worker, *tiers]
    samples = workload.manifest.samples_total
    deadline = time.monotonic() + options.timeout_s
    with ThreadSupervisor() as supervisor, _progress(console) as progress:
        supervisor.start("detect", detector)
        if bridge is not None:
            supervisor.start("alert-bridge", bridge)
        start_sinks(supervisor, sinks)
        started = time.perf_counter()
        supervisor.start("worker", worker)

        def worker_drained() -> bool:
            done = worker.totals.accounted
            progress.update(rolling, completed=min(done, samples))
            return done >= samples and bool(worker.owned) and not worker.open_windows

        rolling = progress.add_task("rolling up", total=samples)
        _wait(deadline, worker_drained, alive=lambda: supervisor.running("worker"))
        worker_s = time.perf_counter() - started

        # The tiers start on the finished 10 s topic, as a backfill would: at this speed a
        # live tier could close a minute before the worker's idle flush reached it.
        for tier in tiers:
            supervisor.start(f"tier-{format_duration(tier.settings.resolution)}", tier)

        def tiers_drained() -> bool:
            drained = sum(t.owned != {} and not t.open_windows for t in tiers)
            progress.update(merging, completed=drained)
            return tiers_caught_up(worker, tiers)

        merging = progress.add_task("tiers 1m, 5m, 1h", total=len(tiers))
        tier_names = [f"tier-{format_duration(t.settings.resolution)}" for t in tiers]
        _wait(deadline, tiers_drained, alive=lambda: all(map(supervisor.running, tier_names)))

        storing = progress.add_task(
            "sinks: local store" + (" + remote-write" if options.remote_write_url else ""),
            total=1,
        )
        stored = wait_stored(supervisor, sinks, sum(s.emitted for s in stages), deadline)
        progress.update(storing, completed=1 if stored else 0)
        load_end = workload.spec.start_ms + workload.spec.duration_ms
        detected = wait_until(partial(detector_done, detector, load_end), deadline)
        if bridge is not None:
            wait_until(partial(bridge_caught_up, bridge, detector), deadline)
    return Outcome(
        worker_s=worker_s,
        tiers_s=time.perf_counter() - started - worker_s,
        forwarded=worker.totals.forwarded,
        failed=list(
            dict.fromkeys(
                [*supervisor.errors, *(s.stage_name for s in [*stages, detector] if s.failed)]
            )
        ),
        stored=stored,
        detected=detected,
        alerts_sent=None if bridge is None else bridge.totals.sent,
    )


def report(
    console: Console,
    settings: WorkerSettings,
    workload: Workload,
    incident: Incident,
    outcome: Outcome,
    options: DemoOptions,
) -> bool:
    """Print what each stage made of the load, from its output topics and the store; True when
    every sample is accounted for, every tier complete, every rollup stored and the incident
    detected."""
    console.print(
        f"[bold]worker[/bold] finished in {outcome.worker_s:.1f} s (incl. group join), "
        f"tiers {outcome.tiers_s:.1f} s later; {outcome.forwarded:,} samples "
        "took the detour to the partition owning their series"
        + (f" [red]failed: {outcome.failed}[/red]" if outcome.failed else "")
    )
    servers = settings.bootstrap_servers
    samples = workload.manifest.samples_total
    summary = read_outputs(servers, settings.output_topic, settings.deadletter_topic)
    print_summary(console, summary, samples)
    tier_outputs = {format_duration(settings.resolution): summary}
    late_children: dict[str, int] = {}
    read_by: dict[str, str] = {}
    for step in tier_settings(settings).steps():
        tier_outputs[format_duration(step.resolution)] = read_outputs(
            servers, step.output_topic, "__none__"
        )
        read_by[step.source_topic] = format_duration(step.resolution)
    for record in summary.deadletters.values():
        if record["stage"] == "tier" and record["reason"] == "late":
            resolution = read_by[record["topic"]]
            late_children[resolution] = late_children.get(resolution, 0) + record["samples"]
    tiers_complete = print_tiers(console, tier_outputs, summary.samples_in_rollups, late_children)
    if not outcome.stored:
        console.print("[red]the sinks did not store every rollup in time[/red]")
    print_store(console, options.store_path)
    load_end = workload.spec.start_ms + workload.spec.duration_ms
    if options.remote_write_url:
        print_remote_write_query(console, options.remote_write_url, load_end)
    plot_busiest_timer(
        console, options.store_path, options.plot_path, format_duration(settings.resolution)
    )
    found = print_anomalies(console, detect_settings(settings), incident)
    if outcome.alerts_sent is not None:
        # The demo's event time is in the past: resolved alerts end at once, so Alertmanager
        # notifies their resolution but no longer lists them as active.
        console.print(
            f"[bold]alerts[/bold] {outcome.alerts_sent} alert updates acknowledged by "
            f"{options.alertmanager_url} (firing, then resolved with endsAt = the resolving "
            "window)"
        )
    if not (outcome.detected and found):
        console.print("[red]the injected incident was not detected[/red]")
    return summary.samples_accounted == samples and tiers_complete and outcome.stored and found > 0


def tier_settings(worker: WorkerSettings) -> TierSettings:
    topics = worker.topic_names() | {
        "chain": [format_duration(worker.resolution), "1m", "5m", "1h"]
    }
    return TierSettings(
        bootstrap_servers=worker.bootstrap_servers,
        group_id=worker.group_id + "-tier",
        **topics,
        # Doubled per step (3 s, 6 s, 12 s): each tier waits for the one below to flush.
        idle_timeout="3s",
        session_timeout_ms=worker.session_timeout_ms,
        http_port=0,
        topic_partitions=worker.topic_partitions,
        create_topics=True,
    )


def tiers_caught_up(worker: RollupWorker, tiers: list[TierWorker]) -> bool:
    """Each tier holds every sample of the stage below (or dead-lettered it as late), has had
    its rollups acknowledged and keeps no open window."""
    below: PartitionedStage[Any] = worker
    for tier in tiers:
        if tier.samples_emitted + tier.late_samples != below.samples_emitted:
            return False
        if tier.delivered != tier.emitted or tier.open_windows:
            return False
        below = tier
    return worker.delivered == worker.emitted


def _wait(deadline: float, done: Callable[[], bool], alive: Callable[[], bool]) -> None:
    """Until done() (which may update a progress bar), the deadline, or a process died."""
    while time.monotonic() < deadline and alive():
        if done():
            return
        time.sleep(0.25)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("      {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
