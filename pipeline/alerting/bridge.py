"""The alert bridge: a consumer-group member that keeps Alertmanager in step with the anomaly
topic (schemas/anomaly.schema.json).

Loop (driven by pipeline/kafka/consumer.py:GroupConsumer): consume a batch → decode → firing
events join the active episodes, resolved ones leave them → send the batch's alerts (the last
state per label set) → dead letters acknowledged → commit. Every `resend_interval` the active
episodes' alerts are sent again with endsAt = now + TTL, as Prometheus does, so an Alertmanager
that restarted learns them again and a bridge that died lets them resolve by themselves.

Guarantees (those of the stages, see docs/architecture.md): a partition's offset is committed only
up to the firing event of its oldest active episode and never past an unsent event, so a restarted
bridge (or a partition's next owner) replays from there and rebuilds its active episodes; sending an
alert twice is harmless (Alertmanager de-duplicates by labels). While Alertmanager is down the batch
is kept, consumption paused and retried with back-off: memory stays one batch.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import structlog
from confluent_kafka import Message

from pipeline.alerting.client import AlertmanagerClient, AlertmanagerUnavailable
from pipeline.alerting.episodes import EpisodeBook, TopicPartitionKey
from pipeline.alerting.event import InvalidEvent, decode_event
from pipeline.alerting.mapping import Alert, AlertMapper
from pipeline.alerting.metrics import BridgeMetrics
from pipeline.alerting.settings import AlertBridgeSettings
from pipeline.core.reasons import Reason
from pipeline.kafka.clients import OutputProducer, producer_config
from pipeline.kafka.consumer import Done, GroupConsumer, RetryAfter
from pipeline.kafka.deadletter import sink_record
from pipeline.observability import Health
from pipeline.sinks.backoff import Backoff

log = structlog.get_logger("alert-bridge")
STAGE = "alert-bridge"


@dataclass(frozen=True, slots=True)
class Source:
    """The event an outgoing alert stands for (to dead-letter it if Alertmanager refuses it)."""

    partition: TopicPartitionKey
    offset: int
    raw: bytes
    episode_id: str
    state: str


@dataclass(slots=True)
class Outgoing:
    alert: Alert
    sources: list[Source]


@dataclass(slots=True)
class Outbox:
    """The alerts of the consumed batch not yet acknowledged, one per label set (the latest
    wins: within a partition events are in time order), and where the batch ends."""

    alerts: dict[frozenset[tuple[str, str]], Outgoing] = field(default_factory=dict)
    next_offsets: dict[TopicPartitionKey, int] = field(default_factory=dict)

    def add(self, alert: Alert, source: Source) -> None:
        known = self.alerts.get(alert.identity)
        sources = [*known.sources, source] if known is not None else [source]
        self.alerts[alert.identity] = Outgoing(alert, sources)

    def drop_partitions(self, gone: set[TopicPartitionKey]) -> None:
        self.alerts = {k: o for k, o in self.alerts.items() if o.sources[-1].partition not in gone}
        for tp in gone:
            self.next_offsets.pop(tp, None)

    def __bool__(self) -> bool:
        return bool(self.alerts or self.next_offsets)


@dataclass(slots=True)
class BridgeTotals:
    """Plain running counts of this process (the Prometheus metrics say the same)."""

    consumed: int = 0
    sent: int = 0
    resent: int = 0
    failed_sends: int = 0
    deadlettered: int = 0
    committed: dict[TopicPartitionKey, int] = field(default_factory=dict)


class AlertBridge:
    """The batch handler of the alert-bridge process: `GroupConsumer`
    (pipeline/kafka/consumer.py) owns the consumer; this turns events into alerts, sends them and
    says how far each partition may be committed."""

    def __init__(
        self,
        settings: AlertBridgeSettings,
        metrics: BridgeMetrics | None = None,
        health: Health | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or BridgeMetrics()
        self.health = health or Health()
        self.totals = BridgeTotals()
        self.episodes = EpisodeBook(settings.resolved_memory)
        self.mapper = AlertMapper(
            settings.alertname, settings.extra_labels, settings.dashboard_url_template
        )
        self._ttl_ms = settings.ttl_ms()
        self._resend_every = settings.resend_interval / 1000
        # One back-off for failed flushes and failed re-sends: both wait for the same Alertmanager.
        self._backoff = Backoff(settings.retry_initial / 1000, settings.retry_max / 1000)
        self._outbox = Outbox()
        self._processed: dict[TopicPartitionKey, int] = {}
        self._resend_at = time.monotonic() + self._resend_every
        self._down = False
        self.group = GroupConsumer(
            settings,
            [settings.anomaly_topic],
            self,
            outputs=[settings.deadletter_topic],
            metrics=self.metrics,
            backoff=self._backoff,
            health=self.health,
            committed=self.totals.committed,
            name="alert-bridge",
        )

    def run(self, stop: threading.Event) -> None:
        """Consume, send and commit until `stop` is set."""
        s = self.settings
        self.client = AlertmanagerClient(s)
        self.producer = OutputProducer(producer_config(s.client_config()))
        log.info("started", group=s.group_id, url=s.alertmanager_url)
        try:
            self.group.run(stop)
        finally:
            self.producer.close()
            self.client.close()
            log.info("stopped", sent=self.totals.sent, active=len(self.episodes))

    # -- the batch handler (pipeline/kafka/consumer.py:BatchHandler) --------------------------

    def room(self) -> int:
        return self.settings.batch_records

    def pending(self) -> bool:
        return bool(self._outbox)

    def due(self) -> bool:
        return bool(self._outbox)

    def tick(self) -> None:
        self.producer.poll()
        if time.monotonic() >= self._resend_at:
            self._resend()

    def drop(self, partitions: set[TopicPartitionKey]) -> None:
        self._outbox.drop_partitions(partitions)
        handed_over = self.episodes.drop_partitions(partitions)
        for tp in partitions:
            self._processed.pop(tp, None)
        self.metrics.active_episodes.set(len(self.episodes))
        if handed_over:
            log.info("active episodes handed over", episodes=handed_over)

    def add(self, messages: list[Message]) -> None:
        for msg in messages:
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if topic is None or partition is None or offset is None:
                continue
            tp = (topic, partition)
            self._outbox.next_offsets[tp] = offset + 1
            self.totals.consumed += 1
            raw = msg.value() or b""
            try:
                event = decode_event(raw, msg.key())
            except InvalidEvent as exc:
                self._deadletter(tp, offset, exc.reason, exc.detail, raw)
                continue
            self.metrics.events_in.labels(event.state).inc()
            errors_before = self.mapper.template_errors
            alert = self.mapper.alert(event)
            if self.mapper.template_errors != errors_before:
                self.metrics.template_errors.inc()
                log.warning("dashboard link not rendered", episode=event.episode_id)
            if event.state == "firing":
                if not self.episodes.fire(event.episode_id, tp, offset, alert):
                    self.metrics.duplicates.inc()
                    continue
            else:
                self.episodes.resolve(event.episode_id)
            self._outbox.add(alert, Source(tp, offset, raw, event.episode_id, event.state))
        self.metrics.active_episodes.set(len(self.episodes))

    def _deadletter(
        self, tp: TopicPartitionKey, offset: int, reason: Reason, detail: str, raw: bytes
    ) -> None:
        key, value = sink_record(tp[0], tp[1], offset, reason, detail, raw, STAGE)
        self.producer.produce(self.settings.deadletter_topic, value, key)
        self.metrics.deadletter.labels(reason.value).inc()
        self.totals.deadlettered += 1

    # -- sending and committing -----------------------------------------------------------------

    def _send(self, alerts: list[Alert]) -> dict[int, str] | None:
        """Send; the refused ones by index, or None when Alertmanager is unavailable."""
        now_ms = int(time.time() * 1000)
        started = time.perf_counter()
        try:
            refused = self.client.send([a.payload(now_ms, self._ttl_ms) for a in alerts])
        except AlertmanagerUnavailable as exc:
            self.metrics.send_duration.observe(time.perf_counter() - started)
            self.metrics.send_failures.inc()
            self.metrics.alertmanager_up.set(0)
            self.totals.failed_sends += 1
            if not self._down:
                log.warning("alertmanager unavailable", error=str(exc))
            self._down = True
            return None
        self.metrics.send_duration.observe(time.perf_counter() - started)
        self.metrics.alertmanager_up.set(1)
        if self._down:
            # It may have restarted and forgotten every alert: re-send the active ones now.
            log.info("alertmanager available again")
            self._down = False
            self._resend_at = time.monotonic()
        return refused

    def flush(self) -> Done | RetryAfter:
        """Send the batch's alerts and dead-letter the refused ones; Done once both are
        acknowledged, with offsets that keep every active episode's firing event uncommitted."""
        outbox = self._outbox
        outgoing = list(outbox.alerts.values())
        refused = self._send([o.alert for o in outgoing]) if outgoing else {}
        if refused is None:
            return RetryAfter()
        for index, message in refused.items():
            for source in outgoing[index].sources:
                if source.state == "firing":
                    self.episodes.forget(source.episode_id)
                self._deadletter(
                    source.partition, source.offset, Reason.ALERT_REJECTED, message, source.raw
                )
            log.warning("alert refused", error=message, labels=outgoing[index].alert.labels)
        self.producer.flush()  # dead letters are acknowledged before the commit passes them
        for o in (o for i, o in enumerate(outgoing) if i not in refused):
            for source in o.sources:
                self.metrics.alerts_sent.labels(source.state).inc()
            self.totals.sent += 1
        self._processed.update(outbox.next_offsets)
        self._outbox = Outbox()
        self.metrics.active_episodes.set(len(self.episodes))
        # A failed commit re-sends its events after a restart, which Alertmanager absorbs.
        pinned = self.episodes.pinned_offsets()
        return Done({tp: min(done, pinned.get(tp, done)) for tp, done in self._processed.items()})

    def _resend(self) -> None:
        alerts = self.episodes.firing_alerts()
        if not alerts:
            self._resend_at = time.monotonic() + self._resend_every
            return
        refused = self._send(alerts)
        if refused is None:  # try again soon, not a whole interval later
            self._resend_at = time.monotonic() + self._backoff.next_delay()
            return
        if refused:  # accepted once, refused now: nothing we can fix by re-sending
            log.warning(
                "re-sent alerts refused", count=len(refused), first=next(iter(refused.values()))
            )
        self.metrics.resends.inc(len(alerts) - len(refused))
        self.totals.resent += len(alerts) - len(refused)
        self._resend_at = time.monotonic() + self._resend_every
