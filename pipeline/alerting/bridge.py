"""The alert bridge: a consumer-group member that keeps Alertmanager in step with the anomaly
topic (schemas/anomaly.schema.json).

Loop: consume a batch → decode → firing events join the active episodes, resolved ones leave
them → send the batch's alerts (the last state per label set) → dead letters acknowledged →
commit. Every `resend_interval` the active episodes' alerts are sent again with endsAt = now +
TTL, as Prometheus does, so an Alertmanager that restarted learns them again and a bridge that
died lets them resolve by themselves.

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
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from pipeline.alerting.client import AlertmanagerClient, AlertmanagerUnavailable
from pipeline.alerting.episodes import EpisodeBook, TopicPartitionKey
from pipeline.alerting.event import InvalidEvent, decode_event
from pipeline.alerting.mapping import Alert, AlertMapper
from pipeline.alerting.metrics import BridgeMetrics
from pipeline.alerting.settings import AlertBridgeSettings
from pipeline.core.reasons import Reason
from pipeline.kafka.admin import TopicSpec, ensure_present
from pipeline.kafka.clients import OutputProducer, consumer_config, producer_config
from pipeline.kafka.commits import commit, commit_lag
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
        self._resend_every = settings.seconds("resend_interval")
        self._backoff = Backoff(settings.seconds("retry_initial"), settings.seconds("retry_max"))
        self._outbox = Outbox()
        self._processed: dict[TopicPartitionKey, int] = {}
        self._assigned: set[TopicPartitionKey] = set()
        self._retry_at: float | None = None  # set while the outbox waits for Alertmanager
        self._resend_at = time.monotonic() + self._resend_every
        self._down = False

    # -- set-up and rebalance ------------------------------------------------------------------

    def _prepare_topics(self) -> None:
        s = self.settings
        specs = [
            TopicSpec(topic, s.topic_partitions) for topic in (s.deadletter_topic, s.anomaly_topic)
        ]
        ensure_present(s.client_config(), specs, s.create_topics)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)
        # librdkafka keeps a partition's pause flag across an eager revoke/assign: set it anew.
        if self._retry_at is not None:
            consumer.pause(partitions)
        else:
            consumer.resume(partitions)
        self._assigned |= {(tp.topic, tp.partition) for tp in partitions}
        self.metrics.assigned.set(len(self._assigned))
        self.health.set_ready(True)
        log.info("assigned", partitions=sorted(self._assigned))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._outbox.drop_partitions(gone)
        dropped = self.episodes.drop_partitions(gone)
        for tp in gone:
            self._processed.pop(tp, None)
            self.totals.committed.pop(tp, None)
        self._assigned -= gone
        self.metrics.assigned.set(len(self._assigned))
        self.metrics.active_episodes.set(len(self.episodes))
        log.info("revoked", partitions=sorted(gone), episodes_handed_over=dropped)

    # -- main loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume, send and commit until `stop` is set."""
        s = self.settings
        self._prepare_topics()
        self.client = AlertmanagerClient(s)
        self.producer = OutputProducer(producer_config(s.client_config()))
        consumer = Consumer(consumer_config(s.client_config(), s.group_id, s.session_timeout_ms))
        consumer.subscribe(
            [s.anomaly_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        log.info("started", group=s.group_id, topic=s.anomaly_topic, url=s.alertmanager_url)
        try:
            while not stop.is_set():
                self.health.beat()
                if self._retry_at is not None:
                    wait = self._retry_at - time.monotonic()
                    if not self._outbox:  # a rebalance took every pending event away
                        self._end_retries(consumer)
                    elif wait > 0:
                        self._poll_paused(consumer, min(wait, 0.2))
                    else:
                        self._flush(consumer)
                    continue
                self._add(consumer.consume(s.batch_records, timeout=0.1))
                self.producer.poll()
                if self._outbox:
                    self._flush(consumer)
                if self._retry_at is None and time.monotonic() >= self._resend_at:
                    self._resend()
            if self._outbox and self._retry_at is None:
                self._flush(consumer)
        finally:
            consumer.close()
            self.producer.close()
            self.client.close()
            log.info("stopped", sent=self.totals.sent, active=len(self.episodes))

    def _poll_paused(self, consumer: Consumer, timeout: float) -> None:
        """Serve heartbeats and rebalances while paused. A record can still slip through (one
        fetched for a partition assigned a moment ago): rewind to it so it is read again."""
        msg = consumer.poll(timeout)
        if msg is not None and msg.error() is None:
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if topic is not None and partition is not None and offset is not None:
                consumer.seek(TopicPartition(topic, partition, offset))
                consumer.pause([TopicPartition(topic, partition)])

    def _add(self, messages: list[Message]) -> None:
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error", error=str(err))
                continue
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

    def _flush(self, consumer: Consumer) -> None:
        outbox = self._outbox
        outgoing = list(outbox.alerts.values())
        refused = self._send([o.alert for o in outgoing]) if outgoing else {}
        if refused is None:
            if self._retry_at is None:
                consumer.pause(consumer.assignment())
                self.metrics.paused.set(1)
            delay = self._backoff.next_delay()
            self._retry_at = time.monotonic() + delay
            return
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
        self._commit(consumer)
        self._end_retries(consumer)

    def _end_retries(self, consumer: Consumer) -> None:
        self._backoff.reset()
        if self._retry_at is not None:
            self._retry_at = None
            consumer.resume(consumer.assignment())
            self.metrics.paused.set(0)

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

    def _commit(self, consumer: Consumer) -> None:
        pinned = self.episodes.pinned_offsets()
        offsets = []
        for tp in self._assigned:
            done = self._processed.get(tp)
            if done is None:
                continue
            target = min(done, pinned.get(tp, done))
            if self.totals.committed.get(tp) != target:
                offsets.append(TopicPartition(tp[0], tp[1], target))
        # A failed commit re-sends its events after a restart, which Alertmanager absorbs.
        if commit(consumer, offsets, self.totals.committed):
            committed = self.totals.committed
            self.metrics.commit_lag.set(commit_lag(consumer, committed, list(committed)))
