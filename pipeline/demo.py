"""`metrics-pipeline demo`: broker, load, worker and a summary in one go, embedded default."""

from __future__ import annotations

import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.demo_alerts import (
    bridge_caught_up,
    detect_settings,
    detector_done,
    inject_incident,
    print_anomalies,
    start_bridge,
    start_detector,
    wait_until,
)
from pipeline.demo_sinks import (
    plot_busiest_timer,
    print_remote_write_query,
    print_store,
    start_sinks,
    stop_sinks,
    wait_stored,
)
from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.kafka.broker import EmbeddedBroker
from pipeline.kafka.stage import PartitionedStage
from pipeline.kafka.tier_worker import TierWorker
from pipeline.kafka.worker import RollupWorker
from pipeline.loadgen.anchor import event_start_ms
from pipeline.loadgen.build import generate
from pipeline.loadgen.produce import produce
from pipeline.loadgen.spec import MalformedCounts, WorkloadSpec
from pipeline.settings import TierSettings, WorkerSettings
from pipeline.store import DEFAULT_STORE_PATH
from pipeline.summary import print_summary, print_tiers, read_outputs

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
    spec = replace(
        DEMO_SPEC,
        samples=samples,
        start_ms=event_start_ms(DEMO_SPEC.duration_s) if start_ms is None else start_ms,
    )
    with ExitStack() as stack:
        if bootstrap_servers is None:
            broker = stack.enter_context(EmbeddedBroker())
            bootstrap_servers = broker.bootstrap_servers
            console.print(f"[bold]broker[/bold] embedded Tansu on {bootstrap_servers}")
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
                bootstrap_servers,
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

        worker = RollupWorker(settings)
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), name="worker", daemon=True)
        steps = _tier_settings(settings).steps()
        tiers = [TierWorker(step) for step in steps]
        detection = detect_settings(settings)
        detector, detect_thread = start_detector(detection, stop)
        bridge_thread = None
        if alertmanager_url:
            bridge, bridge_thread = start_bridge(detection, alertmanager_url, stop)
        sinks = start_sinks(
            settings,
            [settings.rollup_topic, *(step.rollup_topic for step in steps)],
            store_path,
            remote_write_url,
            stop,
        )
        stages: list[PartitionedStage[Any]] = [worker, *tiers]
        threads = [thread] + [
            threading.Thread(target=t.run, args=(stop,), name=f"tier-{t.settings.resolution}")
            for t in tiers
        ]
        started = time.perf_counter()
        thread.start()
        accounted = 0
        try:
            with _progress(console) as progress:
                task = progress.add_task("rolling up", total=manifest.samples_total)
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline and thread.is_alive():
                    done = worker.totals.accounted
                    progress.update(task, completed=min(done, manifest.samples_total))
                    if done >= manifest.samples_total and worker.owned and not worker.open_windows:
                        break
                    time.sleep(0.25)
                elapsed = time.perf_counter() - started
                # The tiers start on the finished 10 s topic, as a backfill would: at this speed
                # a live tier could close a minute before the worker's idle flush reached it.
                for t in threads[1:]:
                    t.start()
                task = progress.add_task("tiers 1m, 5m, 1h", total=len(tiers))
                while time.monotonic() < deadline and all(t.is_alive() for t in threads[1:]):
                    drained = sum(t.owned != {} and not t.open_windows for t in tiers)
                    progress.update(task, completed=drained)
                    if _tiers_caught_up(worker, tiers):
                        break
                    time.sleep(0.25)
                emitted = sum(s.emitted for s in stages)
                task = progress.add_task(
                    "sinks: local store" + (" + remote-write" if remote_write_url else ""), total=1
                )
                stored = wait_stored(sinks, emitted, deadline)
                progress.update(task, completed=1 if stored else 0)
                load_end = spec.start_ms + spec.duration_ms
                scored = partial(detector_done, detector, load_end)
                detected = wait_until(scored, deadline)
                if bridge_thread is not None:
                    wait_until(partial(bridge_caught_up, bridge, detector), deadline)
        finally:
            stop.set()
            for t in threads:
                if t.is_alive():
                    t.join(60)
            stop_sinks(sinks)
            extra: list[threading.Thread | None] = [detect_thread, bridge_thread]
            for thread_or_none in extra:
                if thread_or_none is not None and thread_or_none.is_alive():
                    thread_or_none.join(60)
        failed = [s.stage_name for s in [*stages, detector] if s.failed]
        forwarded = worker.totals.forwarded
        # Release the workers' Kafka clients now, not after the broker below has stopped (they
        # would log a failed reconnect).
        del worker, tiers, stages, detector
        console.print(
            f"[bold]worker[/bold] finished in {elapsed:.1f} s (incl. group join), "
            f"tiers {time.perf_counter() - started - elapsed:.1f} s later; {forwarded:,} samples "
            "took the detour to the partition owning their series"
            + (f" [red]failed: {failed}[/red]" if failed else "")
        )

        summary = read_outputs(bootstrap_servers, settings.rollup_topic, settings.deadletter_topic)
        print_summary(console, summary, manifest.samples_total)
        accounted = summary.samples_accounted
        tier_outputs = {settings.resolution: summary}
        late_children: dict[str, int] = {}
        read_by: dict[str, str] = {}
        for step in _tier_settings(settings).steps():
            tier_outputs[step.resolution] = read_outputs(
                bootstrap_servers, step.rollup_topic, "__none__"
            )
            read_by[step.source_topic] = step.resolution
        for record in summary.deadletters.values():
            if record["stage"] == "tier" and record["reason"] == "late":
                resolution = read_by[record["topic"]]
                late_children[resolution] = late_children.get(resolution, 0) + record["samples"]
        tiers_complete = print_tiers(
            console, tier_outputs, summary.samples_in_rollups, late_children
        )
        if not stored:
            console.print("[red]the sinks did not store every rollup in time[/red]")
        print_store(console, store_path)
        if remote_write_url:
            print_remote_write_query(console, remote_write_url, spec.start_ms + spec.duration_ms)
        plot_busiest_timer(console, store_path, plot_path, settings.resolution)
        found = print_anomalies(console, detection, incident)
        if bridge_thread is not None:
            # The demo's event time is in the past: resolved alerts end at once, so Alertmanager
            # notifies their resolution but no longer lists them as active.
            console.print(
                f"[bold]alerts[/bold] {bridge.totals.sent} alert updates acknowledged by "
                f"{alertmanager_url} (firing, then resolved with endsAt = the resolving window)"
            )
        if not (detected and found):
            console.print("[red]the injected incident was not detected[/red]")
    return accounted == manifest.samples_total and tiers_complete and stored and found > 0


def _tier_settings(worker: WorkerSettings) -> TierSettings:
    return TierSettings(
        bootstrap_servers=worker.bootstrap_servers,
        group_id=worker.group_id + "-tier",
        rollup_topic_prefix=worker.rollup_topic_prefix,
        deadletter_topic=worker.deadletter_topic,
        checkpoint_topic=worker.checkpoint_topic,
        chain=[worker.resolution, "1m", "5m", "1h"],
        # Doubled per step (3 s, 6 s, 12 s): each tier waits for the one below to flush.
        idle_timeout="3s",
        session_timeout_ms=worker.session_timeout_ms,
        http_port=0,
        topic_partitions=worker.topic_partitions,
        create_topics=True,
    )


def _tiers_caught_up(worker: RollupWorker, tiers: list[TierWorker]) -> bool:
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


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("      {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
