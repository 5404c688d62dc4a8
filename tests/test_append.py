"""Appending to the log: versions, batches, concurrency errors and idempotent retries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracker.database import create_engine, ensure_schema
from tracker.errors import ConcurrencyError, DuplicateEventError, StorageError
from tracker.eventstore import EventStore
from tracker.integrity import verify_chain
from tracker.records import NewEvent
from tracker.schema import events


def article(title: str, **extra: object) -> NewEvent:
    return NewEvent("article.published", {"title": title, **extra})


def count(store: EventStore) -> int:
    with store.engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()


def test_append_assigns_positions_and_stream_versions(store: EventStore) -> None:
    first = store.append("article-1", [article("US raises reward for Maduro to $25 million")], 0)
    second = store.append("article-2", [article("Guyana takes Essequibo case to the ICJ")], 0)
    third = store.append(
        "article-1",
        [NewEvent("article.revised", {"title": "US raises Maduro reward to $50 million"})],
        1,
    )
    assert (first.positions, first.stream_version) == ((1,), 1)
    assert (second.positions, second.stream_version) == ((2,), 1)
    assert (third.positions, third.stream_version) == ((3,), 2)
    assert [e.stream_version for e in store.read_stream("article-1")] == [1, 2]
    assert store.stream_version("article-1") == 2
    assert store.stream_version("never-written") == 0


def test_append_records_every_envelope_field(store: EventStore) -> None:
    new = NewEvent(
        "article.published",
        {"title": "Sky Group USA: 600 investors", "amount": 1.5, "tags": ["miami", "ponzi"]},
        schema_version=3,
        metadata={"correlation_id": "poll-7", "causation_id": "cmd-1", "feed": "upi-top"},
    )
    store.append("article-9", [new], 0)
    (recorded,) = store.read_all()
    assert recorded.event_id == new.event_id
    assert recorded.stream_id == "article-9"
    assert recorded.stream_version == 1
    assert recorded.event_type == "article.published"
    assert recorded.schema_version == 3
    assert recorded.payload == new.payload
    assert recorded.metadata == new.metadata
    assert recorded.recorded_at.utcoffset() is not None
    assert recorded.recorded_at.utcoffset().total_seconds() == 0


def test_wrong_expected_version_names_stream_and_versions_and_writes_nothing(
    store: EventStore,
) -> None:
    store.append("article-1", [article("one"), article("two")], 0)
    with pytest.raises(ConcurrencyError) as caught:
        store.append("article-1", [article("three")], 1)
    assert caught.value.stream_id == "article-1"
    assert (caught.value.expected, caught.value.actual) == (1, 2)
    assert "'article-1'" in str(caught.value)
    assert "expected version 1" in str(caught.value)
    assert "at version 2" in str(caught.value)
    assert count(store) == 2


def test_expected_version_zero_refuses_an_existing_stream(store: EventStore) -> None:
    store.append("feed-upi", [NewEvent("feed.added", {"url": "https://rss.upi.com/"})], 0)
    with pytest.raises(ConcurrencyError):
        store.append("feed-upi", [NewEvent("feed.added", {"url": "https://rss.upi.com/"})], 0)
    assert count(store) == 1


def test_expected_version_none_appends_at_the_end(store: EventStore) -> None:
    store.append("s", [article("a")], None)
    result = store.append("s", [article("b")], None)
    assert result.stream_version == 2


def poison_inserts(engine: sa.Engine) -> None:
    """A trigger that makes the database itself fail an insert whose payload says "poison"."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF position('poison' in NEW.payload) > 0 THEN "
                "RAISE EXCEPTION 'poisoned row'; END IF; RETURN NEW; END $$"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER poison BEFORE INSERT ON events "
                "FOR EACH ROW EXECUTE FUNCTION poison()"
            )
        else:
            connection.exec_driver_sql(
                "CREATE TRIGGER poison BEFORE INSERT ON events "
                "WHEN NEW.payload LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
            )


def test_a_batch_is_all_or_nothing_when_the_database_fails_mid_batch(store: EventStore) -> None:
    store.append("article-1", [article("kept")], 0)
    poison_inserts(store.engine)
    batch = [article("first of batch"), article("poison"), article("third")]
    with pytest.raises(StorageError, match="poisoned row"):
        store.append("article-2", batch, 0)
    assert count(store) == 1
    assert store.stream_version("article-2") == 0
    # The log carries on normally afterwards, without a gap in positions.
    assert store.append("article-2", [article("retry")], 0).positions == (2,)


@pytest.mark.parametrize(
    ("stream_id", "new_event", "message"),
    [
        ("s" * 201, article("x"), "stream id has 1 to 200 characters"),
        ("", article("x"), "stream id has 1 to 200 characters"),
        ("s", NewEvent("t" * 101, {}), "event type has 1 to 100 characters"),
        ("article\x00-1", article("x"), "stream id holds a NUL"),
        ("s", NewEvent("article\x00published", {}), "event type holds a NUL"),
        ("s", NewEvent("x", {"reward": float("nan")}), "payload of x is not JSON"),
        ("s", NewEvent("x", {"t": object()}), "payload of x is not JSON"),
        ("s", NewEvent("x", {}, metadata={"ids": {1, 2}}), "metadata of x is not JSON"),
        ("s", NewEvent("x", {"t": "\ud800"}), "lone surrogate"),
        ("s\udfff", article("x"), "lone surrogate"),
    ],
)
def test_events_no_database_could_hold_are_refused_alike_everywhere(
    store: EventStore, stream_id: str, new_event: NewEvent, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        store.append(stream_id, [article("fine"), new_event])
    assert count(store) == 0


def test_retrying_an_appended_batch_is_a_no_op_reporting_existing_positions(
    store: EventStore,
) -> None:
    batch = [article("Maduro reward raised"), article("to $50 million")]
    store.append("article-0", [article("before")], 0)
    first = store.append("article-1", batch, 0)
    # A retry after a lost acknowledgement still carries the old expected version.
    retry = store.append("article-1", batch, 0)
    assert retry.already_recorded
    assert retry.positions == first.positions == (2, 3)
    assert retry.stream_version == 2
    assert count(store) == 3


def test_a_retry_reports_the_version_the_batch_reached_not_where_the_stream_is_now(
    store: EventStore,
) -> None:
    batch = [article("US reward for Maduro: $25 million"), article("now $50 million")]
    store.append("article-1", batch, 0)
    # Meanwhile another writer moves the stream on.
    store.append("article-1", [article("a third edit")], 2)
    retry = store.append("article-1", batch, 0)
    assert retry.already_recorded
    assert retry.stream_version == 2
    # So a writer that carries on from the retry's answer is told it is behind.
    with pytest.raises(ConcurrencyError):
        store.append("article-1", [article("stale writer")], retry.stream_version)


def test_resending_events_to_another_stream_is_refused_not_reported_as_done(
    store: EventStore,
) -> None:
    event = article("Essequibo referendum")
    store.append("article-1", [event], 0)
    with pytest.raises(DuplicateEventError, match="in stream 'article-1'"):
        store.append("article-elsewhere", [event], 0)
    assert store.stream_version("article-elsewhere") == 0
    assert count(store) == 1


def test_a_batch_mixing_recorded_and_new_events_is_refused(store: EventStore) -> None:
    old = article("old")
    store.append("article-1", [old], 0)
    with pytest.raises(DuplicateEventError) as caught:
        store.append("article-1", [old, article("new")], 1)
    assert str(old.event_id) in str(caught.value)
    assert count(store) == 1


def test_the_same_event_twice_in_one_batch_is_a_programming_error(store: EventStore) -> None:
    event = article("twice")
    with pytest.raises(ValueError):
        store.append("article-1", [event, event], 0)
    with pytest.raises(ValueError):
        store.append("article-1", [], 0)
    assert count(store) == 0


def test_event_ids_are_time_ordered_uuids() -> None:
    ids = [NewEvent("x", {}).event_id for _ in range(1000)]
    assert all(i.version == 7 for i in ids)
    assert len(set(ids)) == 1000
    # Milliseconds lead, so ids made later never sort before ids made earlier.
    millis = [i.int >> 80 for i in ids]
    assert millis == sorted(millis)


def test_recorded_times_never_go_backwards_even_when_the_clock_does(engine: sa.Engine) -> None:
    times = iter([datetime(2026, 11, 24, 12, tzinfo=UTC), datetime(2026, 11, 24, 11, tzinfo=UTC)])
    store = EventStore(engine, clock=lambda: next(times))
    store.append("a", [article("one")], 0)
    store.append("b", [article("two")], 0)
    first, second = store.read_all()
    assert first.recorded_at == second.recorded_at == datetime(2026, 11, 24, 12, tzinfo=UTC)


def test_a_clock_in_another_zone_is_recorded_as_the_same_instant(engine: sa.Engine) -> None:
    caracas = timezone(timedelta(hours=-4))
    store = EventStore(engine, clock=lambda: datetime(2026, 11, 24, 8, 30, 0, 123456, caracas))
    store.append("a", [article("one")], 0)
    (event,) = store.read_all()
    assert event.recorded_at == datetime(2026, 11, 24, 12, 30, 0, 123456, tzinfo=UTC)
    assert event.recorded_at.utcoffset() == timedelta(0)
    assert verify_chain(store.read_chain()).ok


def test_a_clock_without_a_zone_is_refused(engine: sa.Engine) -> None:
    store = EventStore(engine, clock=lambda: datetime(2026, 11, 24, 12))
    with pytest.raises(ValueError, match="without a time zone"):
        store.append("a", [article("one")], 0)
    assert count(store) == 0


# Unicode text, which excludes lone surrogates; names also exclude NUL, which the store refuses
# on every database (tested above).
unicode = st.characters(exclude_categories=["Cs"])
names = st.characters(exclude_characters="\x00", exclude_categories=["Cs"])
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(unicode),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(unicode, max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    payload=st.dictionaries(st.text(unicode, max_size=10), json_values, max_size=5),
    metadata=st.dictionaries(st.text(unicode, max_size=10), st.text(unicode), max_size=3),
    event_type=st.text(names, min_size=1, max_size=100),
    stream_id=st.text(names, min_size=1, max_size=200),
)
def test_every_event_survives_append_and_read(
    store: EventStore, payload: dict, metadata: dict, event_type: str, stream_id: str
) -> None:
    new = NewEvent(event_type, payload, metadata=metadata)
    result = store.append(stream_id, [new])
    (recorded,) = store.read_all(result.positions[0] - 1, limit=1)
    assert recorded.event_id == new.event_id
    assert recorded.stream_id == stream_id
    assert recorded.event_type == new.event_type
    assert recorded.payload == payload
    assert recorded.metadata == metadata


@pytest.mark.postgres
def test_an_append_stuck_behind_another_sessions_lock_gives_up_with_a_clear_error(
    postgres_url: str,
) -> None:
    engine = create_engine(postgres_url)
    ensure_schema(engine)
    store = EventStore(engine, lock_timeout_s=0.5)
    store.append("a", [article("before")], 0)
    with engine.connect() as blocker:
        # An idle transaction holding a conflicting lock, as a forgotten psql session might.
        blocker.exec_driver_sql("LOCK TABLE events IN ROW EXCLUSIVE MODE")
        with pytest.raises(StorageError, match="lock timeout"):
            store.append("a", [article("after")], 1)
        blocker.rollback()
    assert store.append("a", [article("after")], 1).positions == (2,)
    engine.dispose()


def test_a_session_commits_appends_to_several_streams_together_or_not_at_all(
    store: EventStore,
) -> None:
    with store.session() as session:
        session.append("article-1", [article("one")], 0)
        session.append("feed-upi", [NewEvent("feed.recovered", {"failures": 2})], 0)
    assert count(store) == 2
    with pytest.raises(RuntimeError), store.session() as session:
        session.append("article-2", [article("two")], 0)
        session.append("article-1", [article("one, edited")], 1)
        raise RuntimeError("the poll failed after deciding")
    assert count(store) == 2
    assert [e.position for e in store.read_all()] == [1, 2]
    assert verify_chain(store.read_chain()).ok


def test_a_sessions_appends_are_checked_together_and_refused_whole(store: EventStore) -> None:
    store.append("article-1", [article("one")], 0)
    again = article("two")
    store.append("article-2", [again], 0)
    # A version expected too high would leave a gap; too low would clash: both refused.
    for expected in (5, 0):
        refused = pytest.raises(ConcurrencyError, match="'article-1': expected version")
        with refused, store.session() as session:
            session.append("article-3", [article("three")], 0)
            session.append("article-1", [article("one, edited")], expected)
    # An event already in the log, sent again inside a session.
    with pytest.raises(DuplicateEventError, match=str(again.event_id)), store.session() as session:
        session.append("article-4", [article("four")], 0)
        session.append("article-2", [again], 1)
    assert count(store) == 2
    # Within one session, versions follow on from the session's own appends.
    with store.session() as session:
        session.append("article-1", [article("one, edited")], 1)
        result = session.append("article-1", [article("one, again")], 2)
        assert result.stream_version == 3 and result.positions == (4,)
        # Using the connection writes what is pending, so the caller's reads see it.
        seen = session.connection.execute(sa.select(sa.func.count()).select_from(events))
        assert seen.scalar() == 4
    assert [e.stream_version for e in store.read_stream("article-1")] == [1, 2, 3]
    assert verify_chain(store.read_chain()).ok
