"""SQLite as the embedded default: WAL, a busy timeout, foreign keys (issue #2, point 8)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from helpers import run_tracker

from tracker.database import SQLITE_BUSY_TIMEOUT_S, create_engine, ensure_schema


def test_connections_use_wal_a_busy_timeout_and_foreign_keys(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    ensure_schema(engine)
    with engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_S * 1000
        assert pragma("PRAGMA foreign_keys").scalar() == 1
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
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "nowhere" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
