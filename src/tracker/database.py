"""Opening the database: URL handling, SQLite pragmas, error translation, schema checks.

SQLite is the embedded default; PostgreSQL (through psycopg 3) is for several daemons sharing
one database. Everything dialect-specific about connecting lives here.
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError

from tracker.errors import SchemaError, StorageError, UsageError
from tracker.schema import SCHEMA_REVISION

# How long a writer waits for another process's write lock before giving up. Appends are short,
# so waiting this long means something is stuck, not busy.
SQLITE_BUSY_TIMEOUT_S = 30
# A pooled PostgreSQL connection idle this long is pinged before it is used again (one round
# trip); one used again sooner is taken as alive.
PING_AFTER_IDLE_S = 2.0
# Execution option that makes a SQLite transaction take the write lock when it begins.
WRITE = {"tracker_write": True}


def parse_database_url(url: str) -> URL:
    """Parse and normalise a database URL; refuse what tracker cannot use."""
    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018 -- make_url defers parsing the port; a bad one fails here
    except (ArgumentError, ValueError):
        raise UsageError(
            f"database URL {url!r} is not a URL (expected e.g. sqlite:///tracker.db "
            "or postgresql://user@host/dbname)"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.drivername != "sqlite":
            raise UsageError(f"database URL {url!r}: use the plain sqlite:/// driver")
        if parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory":
            # Everything recorded would vanish when the command exits.
            raise UsageError(
                f"database URL {url!r} names no file: use sqlite:///FILE, e.g. sqlite:///tracker.db"
            )
        return parsed
    if backend in ("postgresql", "postgres"):
        if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
            if importlib.util.find_spec("psycopg") is None:
                raise UsageError(
                    "PostgreSQL support needs psycopg 3: install tracker with its postgres extra "
                    "(pip install '.[postgres]' in a checkout) or pip install 'psycopg[binary]'"
                )
            return parsed.set(drivername="postgresql+psycopg")
        raise UsageError(f"database URL {url!r}: only the psycopg (3) driver is supported")
    raise UsageError(
        f"database URL {url!r}: unsupported database {backend!r} (use sqlite or postgresql)"
    )


def describe(url: URL) -> str:
    """How error messages name a database: the file for SQLite, the URL sans password else."""
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


def create_engine(url: str) -> Engine:
    parsed = parse_database_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    # READ COMMITTED whatever the server's default: an append must see the newest committed
    # event once it holds the table lock, which a REPEATABLE READ snapshot would hide.
    engine = sa.create_engine(parsed, isolation_level="READ COMMITTED")

    @event.listens_for(engine, "connect")
    def _no_jit(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # Our statements each read a few rows, but on a log or view the server has not
        # analysed yet its estimates run to millions of rows, past jit_above_cost: compiling
        # them took 50 ms where running them took 2 (a poll round's look-up of the feeds'
        # definitions at 1M events). Committed, so the pool's rollbacks keep it.
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET jit = off")
        dbapi_connection.commit()

    # Instead of pool_pre_ping, which pings at every checkout: a poll takes a connection for
    # each feed it records, and that ping was one of its six round trips (12% of an append's
    # time at 1M events). A connection idle for a while (a daemon's quiet minutes, across which
    # the server may have restarted) is still pinged; one returned a moment ago is not, and if
    # the server went away in that moment the statement fails and the pool starts afresh.
    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection, record):  # type: ignore[no-untyped-def]
        record.info["idle_from"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy):  # type: ignore[no-untyped-def]
        idle_from = record.info.get("idle_from")
        if idle_from is None or time.monotonic() - idle_from < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            if engine.dialect.is_disconnect(error, dbapi_connection, None):
                raise DisconnectionError(str(error)) from error  # the pool connects afresh
            raise

    return engine


def _sqlite_engine(url: URL) -> Engine:
    if url.database and not url.query.get("uri"):
        folder = Path(url.database).parent
        if not folder.is_dir():
            raise UsageError(f"{url.database}: folder {str(folder)!r} does not exist")
    # pysqlite's timeout is SQLite's busy timeout: how long to wait for another writer.
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # pysqlite's own transaction handling defers BEGIN and commits around DDL behind our
        # back; with isolation_level None we issue BEGIN ourselves (see _begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            _use_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):  # type: ignore[no-untyped-def]
        # A writer takes the write lock up front (IMMEDIATE), so it waits out the busy timeout
        # instead of failing when a read transaction would have to be upgraded to a write.
        immediate = connection.get_execution_options().get("tracker_write", False)
        statement = "BEGIN IMMEDIATE" if immediate else "BEGIN"
        # On the driver's cursor: through SQLAlchemy, this one statement cost a poll's append
        # as much as all its other statements. Its errors are wrapped as SQLAlchemy would.
        cursor = connection.connection.cursor()
        try:
            cursor.execute(statement)
        except sqlite3.Error as error:
            raise DBAPIError.instance(statement, (), error, sqlite3.Error) from error
        finally:
            cursor.close()

    return engine


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL, which lets readers run while one process writes; it persists in
    the file, so this is a no-op on every connection after the first."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "readonly" in str(error):
                return  # a read-only copy of a log stays readable without WAL
            # Switching rewrites the file's header under a read lock it already holds, so SQLite
            # answers "locked" at once rather than wait out the busy timeout when another
            # process is writing (several processes starting together on a new file: one is
            # switching it, or creating the tables). Wait as the busy timeout would.
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK_KEY = 0x7472_6163_6B65_72  # "tracker"
_UNDEFINED_TABLE = "42P01"  # PostgreSQL's SQLSTATE, whatever language the server speaks


@contextmanager
def migration_connection(engine: Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that no other process migrating the database can share.

    On SQLite the write transaction (BEGIN IMMEDIATE) already serialises; PostgreSQL needs a
    lock so that two daemons starting on an empty database do not both create the tables.
    """
    with storage_errors(engine), engine.connect() as connection:
        connection = connection.execution_options(**WRITE)
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")
            yield connection


@contextmanager
def storage_errors(engine: Engine) -> Iterator[None]:
    """Turn a driver error into a one-line StorageError that names the database: one that
    SQLAlchemy wrapped, or one from the driver's cursor that the append path uses directly."""
    try:
        yield
    except DBAPIError as error:
        _forget_read_only(engine, error.orig)
        raise StorageError(f"{describe(engine.url)}: {_reason(engine, error.orig)}") from error
    except engine.dialect.loaded_dbapi.Error as error:
        _forget_read_only(engine, error)
        raise StorageError(f"{describe(engine.url)}: {_reason(engine, error)}") from error


def _forget_read_only(engine: Engine, error: BaseException | None) -> None:
    # SQLite opens a file it may not write read-only, and a pooled connection stays so after
    # the file is writable again: drop the pool, so the next try opens the file afresh.
    if engine.dialect.name == "sqlite" and "attempt to write a readonly database" in str(error):
        engine.dispose()


def _reason(engine: Engine, error: BaseException | None) -> str:
    lines = str(error).strip().splitlines()
    reason = lines[0] if lines else type(error).__name__
    if engine.dialect.name == "sqlite":
        hint = None
        if reason in _SQLITE_CANNOT_WRITE:
            hint = _why_not_writable(engine.url.database)
        elif reason in _SQLITE_IO:
            hint = _why_io(engine.url.database)
        if hint:
            reason = f"{reason} ({hint})"
    return reason


# SQLite's words when the file cannot be written, or (in WAL mode, which needs its -shm file)
# cannot even be opened, with no word of why.
_SQLITE_CANNOT_WRITE = {"unable to open database file", "attempt to write a readonly database"}


# What SQLite says when a write fails for want of space: "full" when the database file cannot
# grow, "disk I/O error" when its journal or shared-memory file cannot.
_SQLITE_IO = {"disk I/O error", "database or disk is full"}
_LITTLE_SPACE = 4 * 1024 * 1024


def _why_io(database: str | None) -> str | None:
    if not database or database == ":memory:":
        return None
    folder = Path(database).parent
    try:
        found = os.statvfs(folder)
    except OSError:
        return None
    if found.f_bavail * found.f_frsize < _LITTLE_SPACE:
        return f"no space left on the file system of {folder}"
    return None


def _why_not_writable(database: str | None) -> str | None:
    if not database or database == ":memory:":
        return None
    path = Path(database)
    folder = path.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"{folder} is on a read-only file system"
    except OSError:
        return f"{folder} cannot be read"
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is read-only"
    if not os.access(folder, os.W_OK):
        return f"{folder} is read-only"
    return None


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at, or None for a database never migrated."""
    with storage_errors(engine), engine.connect() as connection:
        # Asked, not looked up in the catalogue first: every command starts here, and on
        # PostgreSQL the inspector's look-up took 5 ms, more than the rest of the check.
        try:
            return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        except DBAPIError as error:
            if undefined_table(error.orig):
                return None
            raise


def undefined_table(error: BaseException | None) -> bool:
    """Whether a driver's error says that a table the statement names is not there."""
    if getattr(error, "sqlstate", None) == _UNDEFINED_TABLE:
        return True
    return "no such table" in str(error)


def _table_names(engine: Engine) -> list[str]:
    with storage_errors(engine), engine.connect() as connection:
        return sa.inspect(connection).get_table_names()


def ensure_schema(engine: Engine) -> None:
    """Migrate an empty database to head; refuse one at another revision.

    Only `tracker db upgrade` moves an existing database between revisions: upgrading a shared
    database is a decision, not a side effect of running a command.
    """
    revision = current_revision(engine)
    if revision is None:
        tables = set(_table_names(engine))
        if "alembic_version" in tables:
            # Another process may have migrated the database between our two looks.
            revision = current_revision(engine)
    if revision is None:
        others = tables - {"alembic_version"}  # an empty alembic_version: migrated to base
        if others:
            # Someone else's database, or a mistyped URL: never add tables to it by accident.
            raise SchemaError(
                f"{describe(engine.url)}: not a tracker database (it has tables "
                f"{', '.join(sorted(others)[:5])}); use an empty database, or run "
                "`tracker db upgrade` to add tracker's tables to it deliberately"
            )
        from tracker.migrate import upgrade  # Alembic is imported only when needed.

        upgrade(engine)  # serialised: a process that loses the race finds it done
        return
    if revision == SCHEMA_REVISION:
        return
    raise SchemaError(
        f"{describe(engine.url)}: database schema is at revision {revision!r}, this tracker "
        f"expects {SCHEMA_REVISION!r}; run `tracker db upgrade` (or upgrade tracker if the "
        "database was written by a newer one)"
    )


def upsert(
    connection: sa.Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
) -> None:
    """Insert rows, or update the ones whose `keys` are taken: one statement on both databases."""
    if not rows:
        return
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    columns = {c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys}
    if not columns:
        connection.execute(statement.on_conflict_do_nothing(index_elements=list(keys)), rows)
        return
    connection.execute(
        statement.on_conflict_do_update(index_elements=list(keys), set_=columns), list(rows)
    )


def insert_missing(
    connection: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]
) -> None:
    """Insert the rows whose primary key is not taken yet; leave the others as they are."""
    if rows:
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        connection.execute(dialect.insert(table).on_conflict_do_nothing(), list(rows))
