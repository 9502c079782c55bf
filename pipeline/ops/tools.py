"""The tools around the pipeline: the embedded `broker`, the `load` generator, the `demo`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from pipeline.errors import PipelineError
from pipeline.options import BootstrapOpt, ConfigOpt, fail


def broker(
    port: Annotated[int, typer.Option(help="Loopback port to listen on.")] = 9092,
    host: Annotated[str, typer.Option(help="Loopback address.")] = "127.0.0.1",
    storage: Annotated[
        str,
        typer.Option(
            help="memory://tansu/ (lost on exit) or s3://BUCKET/ on an S3-compatible store "
            "(AWS_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, "
            "AWS_ALLOW_HTTP from the environment): kept across restarts."
        ),
    ] = "memory://tansu/",
) -> None:
    """Run the embedded Kafka-compatible broker (Tansu) until Ctrl-C."""
    from pipeline.kafka.broker_command import run_embedded_broker

    try:
        run_embedded_broker(port=port, host=host, storage=storage)
    except PipelineError as exc:
        raise fail(exc) from exc


def load(
    config: ConfigOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    topic: Annotated[
        str | None,
        typer.Option(help="Raw topic (default: input_topic from --config or env, metrics.raw)."),
    ] = None,
    samples: Annotated[int, typer.Option(help="Valid samples to send.")] = 300_000,
    services: Annotated[int, typer.Option()] = 10,
    regions: Annotated[int, typer.Option()] = 4,
    duration: Annotated[float, typer.Option(help="Seconds of event time.")] = 300.0,
    encoding: Annotated[str, typer.Option(help="single | array | columnar")] = "single",
    batch_size: Annotated[int, typer.Option(help="Samples per batch message.")] = 100,
    late_fraction: Annotated[float, typer.Option(help="Share of samples sent late.")] = 0.0,
    malformed_each: Annotated[int, typer.Option(help="Bad messages of every kind.")] = 0,
    mismatched_key_fraction: Annotated[float, typer.Option()] = 0.0,
    seed: Annotated[int, typer.Option()] = 7,
    partitions: Annotated[
        int | None,
        typer.Option(help="Used when the topic must be created (default: topic_partitions, 8)."),
    ] = None,
    partitioner: Annotated[
        str,
        typer.Option(
            help="Imitate a producer: consistent_random (librdkafka's default: Python, Go, "
            ".NET, C), murmur2_random (Java, kafkajs: no forwarding), random, fnv1a (sarama), "
            "null-key (no key at all)."
        ),
    ] = "consistent_random",
    key_format: Annotated[
        str,
        typer.Option(
            help="Record keys: service-region (the contract), instance (the reporting "
            "process), constant (one key)."
        ),
    ] = "service-region",
    manifest: Annotated[
        Path | None,
        typer.Option(help="Also write the manifest (exact counts) to this JSON file."),
    ] = None,
    start: Annotated[
        datetime | None,
        typer.Option(help="First event time (UTC); default: --duration before now."),
    ] = None,
) -> None:
    """Generate a deterministic workload, produce it, print the manifest (JSON) of what was sent."""
    # Settings as the worker reads them (flags > env > --config): bootstrap servers, kafka_config
    # (librdkafka settings for the producer, e.g. SASL) and input_topic / topic_partitions as
    # the defaults of --topic / --partitions, so one file serves both.
    import orjson

    from pipeline.common_settings import load_settings
    from pipeline.errors import ConfigError
    from pipeline.kafka.admin import TopicSpec, ensure_topics
    from pipeline.loadgen.anchor import event_start_ms
    from pipeline.loadgen.build import generate
    from pipeline.loadgen.partitioning import KEY_FORMATS, partitioner_choice, rekeyed
    from pipeline.loadgen.produce import produce
    from pipeline.loadgen.spec import MalformedCounts, WorkloadSpec
    from pipeline.settings import WorkerSettings

    try:
        settings = load_settings(
            WorkerSettings,
            config,
            bootstrap_servers=bootstrap_servers,
            input_topic=topic,
            topic_partitions=partitions,
        )
        choice = partitioner_choice(partitioner)
        if key_format not in KEY_FORMATS:
            raise ConfigError(f"--key-format must be one of {', '.join(KEY_FORMATS)}")
        if "partitioner" in settings.kafka_config:  # the manifest must name what was used
            raise ConfigError("set the partitioner with --partitioner, not in kafka_config")
        spec = WorkloadSpec(
            seed=seed,
            services=services,
            regions=regions,
            duration_s=duration,
            start_ms=event_start_ms(duration, start),
            samples=samples,
            encoding=encoding,  # type: ignore[arg-type]  # validated by WorkloadSpec
            batch_size=batch_size,
            late_fraction=late_fraction,
            mismatched_key_fraction=mismatched_key_fraction,
            malformed=MalformedCounts.each(malformed_each),
        )
        servers = settings.client_config()
        # A load generator feeds test clusters: it creates the raw topic if it is missing.
        ensure_topics(
            servers, [TopicSpec(settings.input_topic, settings.topic_partitions)], exact=False
        )
        workload = generate(spec)
        stats = produce(
            servers,
            settings.input_topic,
            rekeyed(workload.messages(), key_format),
            partitioner=choice,
        )
    except PipelineError as exc:
        raise fail(exc) from exc
    body = workload.manifest.to_dict()
    body["partitioner"] = choice.name
    body["librdkafka_partitioner"] = choice.librdkafka
    body["key_format"] = key_format if choice.keyed else "none"
    body["produce_seconds"] = round(stats.seconds, 3)
    text = orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
    if manifest is not None:
        manifest.write_text(text + "\n")
    typer.echo(text)


def demo(
    bootstrap_servers: Annotated[
        str | None,
        typer.Option(help="Use this cluster instead of starting the embedded broker."),
    ] = None,
    samples: Annotated[int, typer.Option(help="Valid samples to send.")] = 300_000,
    store_path: Annotated[
        Path, typer.Option("--path", help="Local store the demo fills (query it afterwards).")
    ] = Path("metrics-store"),
    plot: Annotated[Path, typer.Option(help="PNG of the busiest timer.")] = Path(
        "metrics-demo.png"
    ),
    remote_write_url: Annotated[
        str | None,
        typer.Option(
            help="Also remote-write every tier here, e.g. http://127.0.0.1:9090/api/v1/write."
        ),
    ] = None,
    alertmanager_url: Annotated[
        str | None,
        typer.Option(help="Send the demo's anomaly episodes to this Alertmanager."),
    ] = None,
    start: Annotated[
        datetime | None,
        typer.Option(help="First event time (UTC); default: five minutes before now."),
    ] = None,
) -> None:
    """Embedded broker + load + worker + tiers + sinks + detector (one injected incident) +
    summary + plot, all in one process; stops what it started."""
    from pipeline.demo import run_demo
    from pipeline.loadgen.anchor import event_start_ms
    from pipeline.observability import configure_logging

    configure_logging("warning")
    try:
        ok = run_demo(
            bootstrap_servers,
            samples=samples,
            store_path=store_path,
            plot_path=plot,
            remote_write_url=remote_write_url,
            alertmanager_url=alertmanager_url,
            start_ms=None if start is None else event_start_ms(0, start),
        )
    except PipelineError as exc:
        raise fail(exc) from exc
    raise typer.Exit(0 if ok else 1)
