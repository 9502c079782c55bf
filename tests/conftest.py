"""Shared fixtures: a Kafka broker for the session and unique names.

Broker choice, first that works:
1. ``KAFKA_BOOTSTRAP_SERVERS`` from the environment (nothing is started or stopped);
2. testcontainers' Kafka, if a Docker engine answers a ping within a couple of seconds;
3. the embedded Tansu broker on a free loopback port, stopped at session end.
The broker is started lazily: unit tests that do not ask for ``kafka_bootstrap`` never start one,
and only tests marked ``slow`` may ask for it, so ``pytest -m "not slow"`` needs no broker.
"""

from __future__ import annotations

import gc
import os
import re
import uuid
import warnings
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from pipeline.kafka.broker import EmbeddedBroker

# Processes verify their topics by default (production); tests create theirs on the fly, as
# the embedded broker starts empty. Tests of the verifying default pass create_topics=False.
os.environ.setdefault("METRICS_PIPELINE_CREATE_TOPICS", "true")


def _docker_answers() -> bool:
    """True if a Docker engine responds; silent and fast (~0.1 s) when there is none."""
    try:
        import docker  # testcontainers' dependency; absent means no containers anyway
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # DockerException, connection refused, missing socket, bad DOCKER_HOST ...
        return False


def _start_kafka_container(stack: ExitStack) -> str:
    try:  # testcontainers >= 4.x moved the module; the old path warns about deprecation
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:
        from testcontainers.kafka import KafkaContainer
    container = stack.enter_context(KafkaContainer())
    return str(container.get_bootstrap_server())


BROKER_FIXTURE = "kafka_bootstrap"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that needs the broker must be marked slow: `make test-fast` runs without one."""
    if BROKER_FIXTURE in getattr(item, "fixturenames", ()) and not item.get_closest_marker("slow"):
        pytest.fail(
            f"{item.nodeid} uses the broker ({BROKER_FIXTURE}) but is not marked "
            "@pytest.mark.slow: the fast set must run without a broker",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _no_embedded_broker_in_fast_tests(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same rule for a test that starts its own embedded broker."""
    if request.node.get_closest_marker("slow") is not None:
        return

    def refuse(broker: EmbeddedBroker) -> EmbeddedBroker:
        pytest.fail(
            f"{request.node.nodeid} starts a broker but is not marked @pytest.mark.slow",
            pytrace=False,
        )

    monkeypatch.setattr(EmbeddedBroker, "start", refuse)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``bootstrap.servers`` of the session's broker (see the module docstring for which)."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if configured:
        yield configured
        return
    with ExitStack() as stack:
        bootstrap = None
        if _docker_answers():
            try:
                bootstrap = _start_kafka_container(stack)
            except Exception as exc:  # e.g. the image cannot be pulled offline
                warnings.warn(
                    f"Docker answers but the Kafka container did not start ({exc}); "
                    "using the embedded Tansu broker",
                    stacklevel=1,
                )
        if bootstrap is None:
            bootstrap = stack.enter_context(EmbeddedBroker()).bootstrap_servers
        yield bootstrap
        # Clients that tests dropped but did not free yet would otherwise outlive the broker and
        # log failed reconnects after the test summary.
        gc.collect()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A short name unique to this test run, e.g. ``test-round-trip-3f9a1c2b``.

    Use it in topic names and group ids so tests never share state on a long-lived broker.
    Only ``[a-z0-9-]`` characters, so it is valid as a Kafka topic name.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:32].rstrip("-")
    return f"{slug or 'test'}-{uuid.uuid4().hex[:8]}"
