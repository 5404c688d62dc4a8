"""Streaming reads of the whole log and of one stream (issue #2, point 7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from helpers import assert_unanalysed, fill_unanalysed_log

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


def test_read_batch_covers_a_window_of_positions_and_says_where_it_ends(
    engine: sa.Engine,
) -> None:
    """Catch-up and replay read the log in windows of positions: a window may hold fewer events
    of the wanted types than the batch size (or none), and the next batch starts where the
    window ended, so nothing is missed or read twice."""
    store = history(engine)  # positions 1-4 published, 5-20 revised
    wanted = ["article.published"]
    with engine.connect() as connection:
        assert [
            ([e.position for e in events], end)
            for events, end in [
                store.read_batch(connection, 0, 20, 3, wanted),
                store.read_batch(connection, 3, 20, 3, wanted),
                store.read_batch(connection, 6, 20, 3, wanted),
                store.read_batch(connection, 18, 20, 3),
            ]
        ] == [([1, 2, 3], 3), ([4], 6), ([], 9), ([19, 20], 20)]
        covered, after = [], 0
        while after < 20:
            events, after = store.read_batch(connection, after, 20, 3, ["article.revised"])
            covered += [e.position for e in events]
    assert covered == list(range(5, 21))
    # The same through read_all up to a position, whose batches are windows too.
    revised = store.read_all(until_position=20, event_types=["article.revised"], batch_size=3)
    assert [e.position for e in revised] == list(range(5, 21))
    published = store.read_all(until_position=20, event_types=["article.published"], batch_size=3)
    assert [e.position for e in published] == [1, 2, 3, 4]
    assert [e.position for e in store.read_all(2, until_position=9, batch_size=3, limit=4)] == [
        3,
        4,
        5,
        6,
    ]
    # A bound beyond the head reads the log as it stood when the read began, whole: events
    # appended meanwhile are not read half (a window past the old head skipping some).
    reader = store.read_all(0, until_position=10**9, batch_size=10)
    first = next(reader)
    for n in range(12):
        store.append(f"late-{n}", [NewEvent("article.published", {})], 0)
    assert [first.position] + [e.position for e in reader] == list(range(1, 21))
    assert [e.position for e in store.read_all(18, until_position=10**9)] == list(range(19, 33))


def test_replay_and_catch_up_read_a_big_never_analysed_log_a_batch_at_a_time(
    postgres_url: str,
) -> None:
    """Without statistics on the log (autovacuum off, as on this machine's server, or not yet
    run), PostgreSQL reckons any range of positions holds a few thousand events, and planned
    each batch of a catch-up or replay as a scan of every position from the batch's start to
    the log's head and a sort of them all: at a million events, the whole rest of the log read
    again for every batch of 2,000. Each batch must read about its own events, however long
    the log."""
    from tracker.database import create_engine, ensure_schema

    engine = create_engine(postgres_url)
    statements: list[tuple[str, object]] = []

    def capture(
        _conn: object, _cursor: object, statement: str, parameters: object, *_: object
    ) -> None:
        if statement.lstrip().startswith("SELECT") and "ORDER BY events.position" in statement:
            statements.append((statement, parameters))

    try:
        ensure_schema(engine)
        fill_unanalysed_log(engine, 300000)
        store = EventStore(engine)
        wanted = ["article.published", "article.revised"]
        sa.event.listen(engine, "before_cursor_execute", capture)
        with engine.connect() as connection:
            events, end = store.read_batch(connection, 1000, 300000, 2000, wanted)
        replaying = store.read_all(0, until_position=300000, event_types=wanted, batch_size=5000)
        first_of_replay = next(replaying)
        replaying.close()
        sa.event.remove(engine, "before_cursor_execute", capture)
        with engine.connect() as connection:
            assert_unanalysed(connection)
            read = {}
            for name, (statement, parameters) in zip(
                ("a catch-up batch", "a replay batch"), statements, strict=True
            ):
                plan = connection.exec_driver_sql(
                    f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters
                ).scalar()
                read[name] = _rows_read_from_events(plan[0]["Plan"])
    finally:
        engine.dispose()
    assert ([e.position for e in events][:1], len(events), end) == ([1001], 2000, 3000)
    assert first_of_replay.position == 1
    # A batch reads no more rows than the events it may return, not the 300,000 after its
    # start.
    batch = {"a catch-up batch": 2000, "a replay batch": 5000}
    assert {name: rows for name, rows in read.items() if rows > batch[name]} == {}


def _rows_read_from_events(node: dict[str, Any]) -> int:
    """The rows every scan of the events table in a plan produced or filtered away."""
    rows = 0
    if node.get("Relation Name") == "events":
        rows += int(node["Actual Rows"]) * int(node.get("Actual Loops", 1))
        rows += int(node.get("Rows Removed by Filter", 0))
    return rows + sum(_rows_read_from_events(child) for child in node.get("Plans", []))


def test_reading_many_streams_finds_each_through_the_index_in_a_never_analysed_log(
    postgres_url: str,
) -> None:
    """Every poll round reads the streams of all its feeds' and storylines' definitions. With
    no statistics on the log PostgreSQL reckoned an `IN` list of 200 ids matches the whole log
    and scanned it (a quarter of a second at a million small events, each round), and its
    estimates were high enough to compile the statement first (JIT: 50 ms more). The streams
    must be read through the index, their events and no others, and nothing compiled."""
    from tracker.database import create_engine, ensure_schema

    engine = create_engine(postgres_url)
    statements: list[tuple[str, object]] = []

    def capture(
        _conn: object, _cursor: object, statement: str, parameters: object, *_: object
    ) -> None:
        if "FROM events" in statement:
            statements.append((statement, parameters))

    try:
        ensure_schema(engine)
        fill_unanalysed_log(engine, 300000)  # 100,000 articles of three events each
        store = EventStore(engine)
        wanted = [f"article-{n}" for n in range(5000, 5200)] + ["feed-never-defined"]
        sa.event.listen(engine, "before_cursor_execute", capture)
        found = store.read_streams(wanted)
        bounded = store.read_streams(wanted, until_position=15000)
        sa.event.remove(engine, "before_cursor_execute", capture)
        with engine.connect() as connection:
            assert_unanalysed(connection)
            statement, parameters = statements[0]
            plan = connection.exec_driver_sql(
                f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters
            ).scalar()[0]
    finally:
        engine.dispose()
    # Article n's events are positions 3n-2 to 3n.
    assert [e.position for e in found] == list(range(3 * 5000 - 2, 3 * 5199 + 1))
    assert {e.stream_id for e in found} == set(wanted[:-1])
    assert [e.position for e in bounded] == list(range(3 * 5000 - 2, 15001))
    # At most three rows for each id looked up (a plan gives rows per loop as an average, so
    # the 600 read count as 603), not the 300,000 of the log.
    assert _rows_read_from_events(plan["Plan"]) <= 3 * len(wanted)
    assert "JIT" not in plan
