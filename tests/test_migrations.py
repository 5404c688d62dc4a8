"""The schema comes from Alembic, on both databases, through tracker and through alembic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from helpers import REPO_ROOT, run_tracker

from tracker.database import create_engine, current_revision, ensure_schema
from tracker.errors import SchemaError
from tracker.migrate import downgrade, head_revision, upgrade
from tracker.schema import SCHEMA_REVISION, metadata


def tables(engine: sa.Engine) -> set[str]:
    with engine.connect() as connection:
        return set(sa.inspect(connection).get_table_names())


def test_the_code_expects_the_newest_migration() -> None:
    assert head_revision() == SCHEMA_REVISION


def test_upgrade_from_empty_to_head_then_downgrade_to_empty(database_url: str) -> None:
    engine = create_engine(database_url)
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == SCHEMA_REVISION
    assert "events" in tables(engine)
    upgrade(engine)  # a second upgrade is a no-op
    downgrade(engine, "base")
    assert "events" not in tables(engine)
    # Migrated down to nothing counts as empty: the next command sets it up again.
    ensure_schema(engine)
    assert current_revision(engine) == SCHEMA_REVISION
    engine.dispose()


def test_the_migrated_schema_matches_the_tables_the_code_uses(engine: sa.Engine) -> None:
    def on_this_database(
        item: object, name: str, kind: str, reflected: bool, other: object
    ) -> bool:
        # An index made on one database only (schema.stream_heads) is not missed on another.
        only_on = getattr(item, "info", {}).get("only_on")
        return only_on in (None, engine.dialect.name)

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": on_this_database})
        differences = compare_metadata(context, metadata)
    assert differences == []


def test_the_events_table_has_every_envelope_column(engine: sa.Engine) -> None:
    with engine.connect() as connection:
        inspector = sa.inspect(connection)
        columns = {c["name"]: c for c in inspector.get_columns("events")}
        unique = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("events")}
        primary = inspector.get_pk_constraint("events")["constrained_columns"]
    assert set(columns) == {
        "position",
        "event_id",
        "stream_id",
        "stream_version",
        "event_type",
        "schema_version",
        "payload",
        "metadata",
        "recorded_at",
        "hash",
    }
    assert not any(c["nullable"] for c in columns.values())
    assert primary == ["position"]
    assert {("event_id",), ("stream_id", "stream_version")} <= unique


def test_a_database_at_another_revision_is_refused_with_the_way_out(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0000_older'")
    with pytest.raises(SchemaError, match="run `tracker db upgrade`"):
        ensure_schema(engine)


def test_tracker_db_upgrade(database_url: str) -> None:
    env = {"TRACKER_DATABASE_URL": database_url}
    first = run_tracker("db", "upgrade", env=env)
    assert first.returncode == 0, first.stderr
    assert f"upgraded from empty to {SCHEMA_REVISION}" in first.stdout
    again = run_tracker("db", "upgrade", env=env)
    assert f"already at {SCHEMA_REVISION}" in again.stdout
    current = run_tracker("db", "current", "--json", env=env)
    assert f'"revision": "{SCHEMA_REVISION}"' in current.stdout


@pytest.mark.parametrize("how", ["environment", "x-argument"])
def test_alembic_upgrade_head_from_the_repository_root(database_url: str, how: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRACKER_DATABASE_URL"}
    args = [sys.executable, "-m", "alembic", "upgrade", "head"]
    if how == "environment":
        env["TRACKER_DATABASE_URL"] = database_url
    else:
        args[3:3] = ["-x", f"database_url={database_url}"]
    result = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    engine = create_engine(database_url)
    assert current_revision(engine) == SCHEMA_REVISION
    engine.dispose()


def test_alembic_uses_the_default_sqlite_file_in_the_working_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRACKER_DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(REPO_ROOT / "alembic.ini"), "upgrade", "head"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tracker.db").is_file()


def test_several_processes_starting_on_an_empty_database_all_succeed(database_url: str) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k != "TRACKER_DATABASE_URL"},
        "TRACKER_DATABASE_URL": database_url,
    }
    starts = [
        subprocess.Popen(
            [sys.executable, "-m", "tracker", "events"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    try:
        outcomes = [(p.communicate(timeout=120)[1], p.returncode) for p in starts]
    finally:
        for process in starts:
            process.kill()
            process.wait()
    for err, returncode in outcomes:
        assert (err.strip(), returncode) == ("no events", 0)
    engine = create_engine(database_url)
    assert current_revision(engine) == SCHEMA_REVISION
    engine.dispose()


def test_db_upgrade_on_a_newer_trackers_database_says_so_in_one_line(
    engine: sa.Engine, database_url: str
) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0099_future'")
    result = run_tracker("db", "upgrade", "--database-url", database_url)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "0099_future" in line and "newer tracker" in line


def test_commands_never_add_tables_to_another_applications_database(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE customers (id integer primary key)")
    result = run_tracker("events", "--database-url", database_url)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "not a tracker database" in line and "customers" in line
    assert tables(engine) == {"customers"}
    # Adding tracker's tables there is possible, but only as a deliberate step.
    assert run_tracker("db", "upgrade", "--database-url", database_url).returncode == 0
    assert {"customers", "events", "alembic_version"} <= tables(engine)
    assert run_tracker("events", "--database-url", database_url).returncode == 0
    engine.dispose()
