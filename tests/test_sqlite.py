"""SQLite as the embedded default: WAL, a busy timeout, foreign keys (issue #2, point 8)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import run_tracker

from tracker.database import SQLITE_BUSY_TIMEOUT_S, create_engine, ensure_schema
from tracker.eventstore import EventStore
from tracker.records import NewEvent


def test_connections_use_wal_a_busy_timeout_and_foreign_keys(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    ensure_schema(engine)
    with engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_S * 1000
        assert pragma("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_a_process_starting_while_another_writes_the_new_file_waits_for_it(
    tmp_path: Path,
) -> None:
    # Several trackers started at once on a new file: while one writes it (switching it to WAL,
    # creating the tables), SQLite refuses the others' switch to WAL at once, not after the busy
    # timeout. Seen in CI as "database is locked" from one of six `tracker events`.
    path = tmp_path / "tracker.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE elsewhere (x)")
    released = threading.Timer(0.5, other.execute, ("ROLLBACK",))
    released.start()
    engine = create_engine(f"sqlite:///{path}")
    try:
        started = time.monotonic()
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert time.monotonic() - started >= 0.4  # it waited for the writer, as told to
    finally:
        released.join()
        other.close()
        engine.dispose()


def test_a_command_creates_the_database_file_where_it_is_run(tmp_path: Path) -> None:
    result = run_tracker("events", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tracker.db").is_file()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'tracker.db'}")
    with engine.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
    engine.dispose()
    assert {"events", "alembic_version"} <= tables


def test_a_file_that_is_not_a_database_gets_one_clear_line(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_bytes(b"Essequibo notes, not a database\n" * 200)
    result = run_tracker("events", "--database-url", f"sqlite:///{bogus}")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {bogus}: file is not a database"
    assert bogus.read_bytes().startswith(b"Essequibo notes")


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nowhere' / 'tracker.db'}"
    result = run_tracker("events", "--database-url", url)
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "nowhere" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_read_only_copy_of_a_log_can_still_be_read_and_verified(tmp_path: Path) -> None:
    path = tmp_path / "archive.db"
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    ensure_schema(engine)
    EventStore(engine).append("article-1", [NewEvent("article.published", {"t": "Essequibo"})])
    engine.dispose()
    # An archived copy: not in WAL mode, opened read-only (as from a read-only disk).
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA journal_mode=DELETE")
    raw.close()
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    events = run_tracker("events", "--json", "--database-url", read_only)
    assert events.returncode == 0, events.stderr
    assert '"t": "Essequibo"' in events.stdout
    verify = run_tracker("verify", "--database-url", read_only)
    assert verify.returncode == 0, verify.stderr
    assert "verified 1 events" in verify.stdout


def test_corrupt_rows_are_reported_in_one_line_not_a_traceback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    engine = create_engine(url)
    ensure_schema(engine)
    store = EventStore(engine)
    for i in range(5):
        store.append(f"article-{i}", [NewEvent("article.published", {"n": i})])
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER events_append_only_update")
        connection.exec_driver_sql("UPDATE events SET recorded_at = 'garbage' WHERE position = 2")
        connection.exec_driver_sql("UPDATE events SET payload = 'not json' WHERE position = 4")
    engine.dispose()
    verify = run_tracker("verify", "--database-url", url)
    assert verify.returncode == 1
    assert "chain broken at position 2" in verify.stdout
    events = run_tracker("events", "--database-url", url)
    assert events.returncode == 1
    (line,) = events.stderr.splitlines()
    assert line.startswith("error: event at position 2 cannot be read")
    assert "tracker verify" in line


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:///:memory:"])
def test_an_in_memory_database_is_refused_since_nothing_would_be_kept(url: str) -> None:
    result = run_tracker("events", "--database-url", url)
    assert result.returncode == 2
    assert "names no file" in result.stderr
