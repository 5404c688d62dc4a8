"""Streaming reads of the whole log and of one stream (issue #2, point 7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import sqlalchemy as sa

from tracker.eventstore import EventStore
from tracker.records import NewEvent


class SteppingClock:
    """A clock at the process edge: each reading is one minute after the last."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


START = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def history(engine: sa.Engine, streams: int = 4, per_stream: int = 5) -> EventStore:
    store = EventStore(engine, clock=SteppingClock(START))
    for version in range(per_stream):
        for stream in range(streams):
            kind = "article.published" if version == 0 else "article.revised"
            store.append(f"article-{stream}", [NewEvent(kind, {"rev": version})], version)
    return store


def test_read_all_streams_in_position_order_across_batches(engine: sa.Engine) -> None:
    store = history(engine)
    everything = list(store.read_all(batch_size=3))
    assert [e.position for e in everything] == list(range(1, 21))
    assert everything == list(store.read_all())
    assert everything == list(store.read_all(batch_size=20))


def test_read_all_is_lazy_and_sees_events_appended_while_reading(engine: sa.Engine) -> None:
    store = history(engine, streams=2, per_stream=2)
    reader = store.read_all(batch_size=2)
    first = next(reader)
    store.append("late", [NewEvent("article.published", {})], 0)
    assert [first.position] + [e.position for e in reader] == [1, 2, 3, 4, 5]


def test_read_all_from_a_position(engine: sa.Engine) -> None:
    store = history(engine)
    assert [e.position for e in store.read_all(17)] == [18, 19, 20]
    assert list(store.read_all(20)) == []


def test_read_all_up_to_a_position(engine: sa.Engine) -> None:
    store = history(engine)
    assert [e.position for e in store.read_all(5, until_position=8, batch_size=2)] == [
        6,
        7,
        8,
    ]


def test_read_all_up_to_a_recorded_time(engine: sa.Engine) -> None:
    store = history(engine)
    cutoff = START + timedelta(minutes=7)
    assert [e.position for e in store.read_all(until_time=cutoff)] == list(range(1, 8))
    # A time with another offset means the same instant.
    in_caracas = cutoff.astimezone(timezone(timedelta(hours=-4)))
    assert [e.position for e in store.read_all(until_time=in_caracas)] == list(range(1, 8))
    assert list(store.read_all(until_time=START)) == []


def test_read_all_filters_and_limits(engine: sa.Engine) -> None:
    store = history(engine)
    revised = list(store.read_all(event_type="article.revised", limit=5, batch_size=2))
    assert [e.position for e in revised] == [5, 6, 7, 8, 9]
    one_stream = list(store.read_all(stream_id="article-2", batch_size=2))
    assert [e.stream_version for e in one_stream] == [1, 2, 3, 4, 5]


def test_read_stream_from_a_version(engine: sa.Engine) -> None:
    store = history(engine)
    assert [e.payload["rev"] for e in store.read_stream("article-1", 3, batch_size=2)] == [
        2,
        3,
        4,
    ]
    assert [e.stream_version for e in store.read_stream("article-1")] == [1, 2, 3, 4, 5]
    assert list(store.read_stream("no-such-stream")) == []


def test_head_position(engine: sa.Engine) -> None:
    store = EventStore(engine)
    assert store.head_position() == 0
    history(engine, 2, 2)
    assert store.head_position() == 4


def test_stream_ids_by_prefix_and_last_event(engine: sa.Engine) -> None:
    store = history(engine, streams=3, per_stream=2)
    store.append("storyline-essequibo", [NewEvent("storyline.defined", {"v": 1})], 0)
    store.append("storyline-sky-group", [NewEvent("storyline.defined", {"v": 1})], 0)
    store.append("storyline-essequibo", [NewEvent("storyline.defined", {"v": 2})], 1)
    store.append("storylines", [NewEvent("other", {})], 0)
    # Neighbours of the prefix in every order a database might use, and LIKE's wildcards.
    for neighbour in ("Storyline-x", "storyline.", "storyline", "storyline_x", "storyline%x"):
        store.append(neighbour, [NewEvent("other", {})], 0)
    store.append("storyline-ñandú-\U0001f600", [NewEvent("storyline.defined", {})], 0)
    assert store.stream_ids("storyline-") == [
        "storyline-essequibo",
        "storyline-sky-group",
        "storyline-ñandú-\U0001f600",
    ]
    assert store.stream_ids("storyline_") == ["storyline_x"]
    assert store.stream_ids("storyline%") == ["storyline%x"]
    assert store.stream_ids("article-") == ["article-0", "article-1", "article-2"]
    last = store.last_event("storyline-essequibo")
    assert last is not None and last.payload == {"v": 2} and last.stream_version == 2
    assert store.last_event("nothing") is None
