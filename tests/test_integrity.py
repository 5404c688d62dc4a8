"""The log is append-only in the database itself, and tampering behind its back is evident."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa
from helpers import run_tracker
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy.exc import DBAPIError

from tracker.eventstore import EventStore
from tracker.integrity import GENESIS, ChainRow, chain_material
from tracker.records import NewEvent
from tracker.service import Tracker
from tracker.settings import Settings


def fill(store: EventStore, n: int = 5) -> None:
    for i in range(n):
        store.append(
            f"article-{i}",
            [NewEvent("article.published", {"title": f"Essequibo update {i}", "n": i})],
            0,
        )


def drop_guards(engine: sa.Engine) -> None:
    """What someone with direct database access would do before editing history."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("DROP TRIGGER events_append_only_row ON events")
        else:
            connection.exec_driver_sql("DROP TRIGGER events_append_only_update")
            connection.exec_driver_sql("DROP TRIGGER events_append_only_delete")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET payload = '{}' WHERE position = 2",
        "UPDATE events SET event_type = 'x'",
        "DELETE FROM events WHERE position = 3",
        "DELETE FROM events",
    ],
)
def test_update_and_delete_fail_in_the_database(store: EventStore, statement: str) -> None:
    fill(store)
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as connection:
        connection.exec_driver_sql(statement)
    assert [e.position for e in store.read_all()] == [1, 2, 3, 4, 5]
    assert [e.payload["n"] for e in store.read_all()] == [0, 1, 2, 3, 4]


@pytest.mark.postgres
def test_truncate_fails_on_postgres(postgres_url: str) -> None:
    with Tracker.open(Settings(postgres_url, Settings.resolve().config_path)) as tracker:
        fill(tracker.store, 2)
        with (
            pytest.raises(DBAPIError, match="append-only"),
            tracker.store.engine.begin() as connection,
        ):
            connection.exec_driver_sql("TRUNCATE events")
        assert tracker.head_position() == 2


def test_verify_passes_on_an_untouched_log(settings: Settings) -> None:
    with Tracker.open(settings) as tracker:
        fill(tracker.store, 25)
        report = tracker.verify()
    assert report.ok and report.checked == 25


def test_verify_passes_on_an_empty_log(settings: Settings) -> None:
    with Tracker.open(settings) as tracker:
        report = tracker.verify()
    assert report.ok and report.checked == 0


def a_moment_later(dialect: str) -> str:
    if dialect == "postgresql":
        return "recorded_at + interval '1 microsecond'"
    return "strftime('%Y-%m-%d %H:%M:%f', recorded_at, '+0.001 seconds') || '000'"


# One real change to every column the hash covers, then deletions and reorderings.
TAMPERING = {
    "payload": 'UPDATE events SET payload = \'{"n":2,"title":"forged"}\' WHERE position = 3',
    "metadata": 'UPDATE events SET metadata = \'{"poll":"forged"}\' WHERE position = 3',
    "event_type": "UPDATE events SET event_type = 'article.retracted' WHERE position = 3",
    "stream_id": "UPDATE events SET stream_id = 'article-x' WHERE position = 3",
    "stream_version": "UPDATE events SET stream_version = 7 WHERE position = 3",
    "schema_version": "UPDATE events SET schema_version = 2 WHERE position = 3",
    "event_id": "UPDATE events SET event_id = '{uuid}' WHERE position = 3",
    "recorded_at": "UPDATE events SET recorded_at = {later} WHERE position = 3",
    "hash": "UPDATE events SET hash = 'ff' || substr(hash, 3) WHERE position = 3",
    "deleted": "DELETE FROM events WHERE position = 3",
    "reordered": "UPDATE events SET position = 1000 + 6 - position WHERE position IN (3, 4)",
}


@pytest.mark.parametrize("what", TAMPERING)
def test_verify_finds_the_first_event_changed_behind_the_stores_back(
    settings: Settings, what: str
) -> None:
    with Tracker.open(settings) as tracker:
        fill(tracker.store, 5)
        engine = tracker.store.engine
        drop_guards(engine)
        new_id = uuid.uuid4().hex if engine.dialect.name == "sqlite" else str(uuid.uuid4())
        statement = (
            TAMPERING[what]
            .replace("{uuid}", new_id)
            .replace("{later}", a_moment_later(engine.dialect.name))
        )
        with engine.begin() as connection:
            assert connection.exec_driver_sql(statement).rowcount >= 1
        if what == "reordered":  # swap 3 and 4 by way of 1003 and 1002
            with engine.begin() as connection:
                connection.exec_driver_sql(
                    "UPDATE events SET position = position - 999 WHERE position > 1000"
                )
        report = tracker.verify()
    assert not report.ok
    assert report.first_bad_position == 3
    assert report.checked == 2


def test_cutting_off_the_newest_events_is_what_the_plain_chain_cannot_see(
    settings: Settings,
) -> None:
    with Tracker.open(settings) as tracker:
        fill(tracker.store, 5)
        drop_guards(tracker.store.engine)
        with tracker.store.engine.begin() as connection:
            connection.exec_driver_sql("DELETE FROM events WHERE position = 5")
        report = tracker.verify()
    # Documented in integrity.py and the README; checkpoints catch it (test_checkpoints.py).
    assert report.ok and report.checked == 4


@pytest.mark.parametrize(
    "tampering",
    [
        "UPDATE events SET event_id = upper(event_id) WHERE position = 3",
        "UPDATE events SET event_id = 'not-a-uuid' WHERE position = 3",
        "UPDATE events SET recorded_at = 20261124 WHERE position = 3",
        "UPDATE events SET recorded_at = '2026-11-24T10:00:00+00:00' WHERE position = 3",
        "UPDATE events SET payload = x'00ff' WHERE position = 3",
        "UPDATE events SET stream_version = 'three' WHERE position = 3",
    ],
)
def test_sqlite_values_of_the_wrong_shape_are_caught_not_crashed_on(
    sqlite_url: str, tampering: str
) -> None:
    with Tracker.open(Settings(sqlite_url, Settings.resolve().config_path)) as tracker:
        fill(tracker.store, 5)
        drop_guards(tracker.store.engine)
        with tracker.store.engine.begin() as connection:
            connection.exec_driver_sql(tampering)
        report = tracker.verify()
    assert report.first_bad_position == 3
    result = run_tracker("events", "--database-url", sqlite_url)
    if result.returncode:
        (line,) = result.stderr.splitlines()
        assert line.startswith("error: event at position 3 cannot be read")


def test_verify_catches_a_rewritten_hash_at_the_next_event(settings: Settings) -> None:
    with Tracker.open(settings) as tracker:
        fill(tracker.store, 5)
        drop_guards(tracker.store.engine)
        with tracker.store.engine.begin() as connection:
            connection.exec_driver_sql(
                "UPDATE events SET hash = 'ab' || substr(hash, 3) WHERE position = 2"
            )
        report = tracker.verify()
    assert report.first_bad_position == 2


def test_verify_command_names_the_first_bad_position_and_exits_1(settings: Settings) -> None:
    with Tracker.open(settings) as tracker:
        fill(tracker.store, 6)
        drop_guards(tracker.store.engine)
        with tracker.store.engine.begin() as connection:
            connection.exec_driver_sql("UPDATE events SET event_type = 'x' WHERE position = 4")
    env = {"TRACKER_DATABASE_URL": settings.database_url}
    result = run_tracker("verify", env=env)
    assert result.returncode == 1, result.stderr
    assert "position 4" in result.stdout
    assert "3 events before it verified" in result.stdout
    as_json = run_tracker("verify", "--json", env=env)
    assert as_json.returncode == 1
    assert '"first_bad_position": 4' in as_json.stdout


def test_verify_command_counts_what_it_checked(settings: Settings) -> None:
    with Tracker.open(settings) as tracker:
        fill(tracker.store, 12)
    result = run_tracker("verify", "--database-url", settings.database_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "verified 12 events: the hash chain is intact"


# Any text, lone surrogates and control characters included (the store refuses surrogates, but
# verify hashes whatever was edited in).
_any_text = st.text(st.characters(blacklist_categories=()), max_size=60)


@given(
    texts=st.lists(_any_text, min_size=7, max_size=7),
    numbers=st.lists(st.integers(-(2**70), 2**70), min_size=3, max_size=3),
)
# The characters the two JSON escapers could treat apart: DEL, controls, quotes, non-ASCII.
@example(["a\x7fb", '"\\', "\x00\x1f\n", "Nicolás", "\ud800", "\u2028", "é"], [0, 1, 2])
def test_the_hash_covers_exactly_the_json_array_of_the_fields(
    texts: list[str], numbers: list[int]
) -> None:
    # The chain's material is built by hand for speed; it must stay byte for byte the JSON
    # that logs written before were hashed over, or they would no longer verify.
    row = ChainRow(
        numbers[0],
        texts[0],
        texts[1],
        numbers[1],
        texts[2],
        numbers[2],
        texts[3],
        texts[4],
        texts[5],
        "",
    )
    expected = json.dumps(
        [texts[6], *row[:9]], ensure_ascii=False, separators=(",", ":"), default=repr
    )
    assert chain_material(texts[6], row) == expected


def test_a_value_of_another_type_edited_in_is_hashed_not_crashed_on() -> None:
    row = ChainRow(1.5, "id", "s", True, "t", 1, b"payload", "{}", "2026-01-01", "")  # type: ignore[arg-type]
    assert chain_material(GENESIS, row) == json.dumps(
        [GENESIS, 1.5, "id", "s", True, "t", 1, "b'payload'", "{}", "2026-01-01"],
        ensure_ascii=False,
        separators=(",", ":"),
    )
