"""The episodes the bridge keeps firing, and the offset each one pins.

An episode is active from its firing event until its resolved event. Its firing event's offset
is the first record a restarted bridge must read again to know of it, so no offset past it is
committed (as every stage: commit only up to the first offset still needed).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.alerting.mapping import Alert

TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class ActiveEpisode:
    partition: TopicPartitionKey
    offset: int  # of its firing event
    alert: Alert


class EpisodeBook:
    """Active episodes by id, plus a bounded memory of recently resolved ones."""

    def __init__(self, resolved_memory: int = 100_000) -> None:
        self.active: dict[str, ActiveEpisode] = {}
        self._resolved: OrderedDict[str, None] = OrderedDict()
        self._resolved_memory = resolved_memory

    def __len__(self) -> int:
        return len(self.active)

    def fire(
        self, episode_id: str, partition: TopicPartitionKey, offset: int, alert: Alert
    ) -> bool:
        """Record a firing event; False when it changes nothing (the episode is already active,
        or it resolved lately and this is a detector's re-emission)."""
        if episode_id in self.active or episode_id in self._resolved:
            return False
        self.active[episode_id] = ActiveEpisode(partition, offset, alert)
        return True

    def resolve(self, episode_id: str) -> None:
        self.active.pop(episode_id, None)
        if self._resolved_memory:
            self._resolved[episode_id] = None
            self._resolved.move_to_end(episode_id)
            while len(self._resolved) > self._resolved_memory:
                self._resolved.popitem(last=False)

    def forget(self, episode_id: str) -> None:
        """Stop tracking an episode whose alert Alertmanager refused for good."""
        self.active.pop(episode_id, None)

    def drop_partitions(self, gone: Iterable[TopicPartitionKey]) -> int:
        """Forget the episodes of revoked partitions (their next owner rebuilds them)."""
        gone = set(gone)
        doomed = [e for e, a in self.active.items() if a.partition in gone]
        for episode_id in doomed:
            del self.active[episode_id]
        return len(doomed)

    def pinned_offsets(self) -> dict[TopicPartitionKey, int]:
        """Per partition, the offset of its oldest active episode's firing event."""
        pinned: dict[TopicPartitionKey, int] = {}
        for episode in self.active.values():
            known = pinned.get(episode.partition)
            if known is None or episode.offset < known:
                pinned[episode.partition] = episode.offset
        return pinned

    def firing_alerts(self) -> list[Alert]:
        return [episode.alert for episode in self.active.values()]
