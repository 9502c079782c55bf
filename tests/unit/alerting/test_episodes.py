"""Active episodes and the offsets they pin."""

from __future__ import annotations

from pipeline.alerting.episodes import EpisodeBook
from pipeline.alerting.mapping import Alert

A = Alert({"alertname": "A"}, {}, 0, None)
P0, P1 = ("t", 0), ("t", 1)


def test_the_oldest_active_firing_event_pins_its_partition() -> None:
    book = EpisodeBook()
    assert book.fire("e1", P0, 10, A) and book.fire("e2", P0, 14, A) and book.fire("e3", P1, 3, A)
    assert book.pinned_offsets() == {P0: 10, P1: 3}
    book.resolve("e1")
    assert book.pinned_offsets() == {P0: 14, P1: 3}
    book.resolve("e3")
    assert book.pinned_offsets() == {P0: 14}
    assert len(book) == 1


def test_re_emissions_change_nothing() -> None:
    book = EpisodeBook()
    assert book.fire("e1", P0, 10, A)
    assert not book.fire("e1", P0, 12, A)  # already active: keeps its first offset
    assert book.pinned_offsets() == {P0: 10}
    book.resolve("e1")
    assert not book.fire("e1", P0, 20, A)  # lately resolved: a detector's replay
    assert book.pinned_offsets() == {}


def test_resolved_memory_is_bounded() -> None:
    book = EpisodeBook(resolved_memory=2)
    for name in ("a", "b", "c"):
        book.resolve(name)
    assert book.fire("a", P0, 1, A)  # forgotten: the oldest went first
    assert not book.fire("c", P0, 2, A)


def test_revoked_partitions_hand_their_episodes_over() -> None:
    book = EpisodeBook()
    book.fire("e1", P0, 1, A)
    book.fire("e2", P1, 1, A)
    assert book.drop_partitions({P1}) == 1
    assert list(book.active) == ["e1"]
