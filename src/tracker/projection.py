"""The projector framework: views built from the log, exactly once, rebuilt and swapped atomically.

A projector consumes events in position order and writes its own view tables. The framework
runs it in batches, each one transaction that writes the view rows and advances the checkpoint
(`projections.position`) together, so a crash anywhere loses a whole batch or nothing, and
never applies an event twice (issue #4, point 3). Catch-up locks the projections' rows first,
so several daemons sharing one PostgreSQL never apply the same batch twice either.

The view tables of a projection belong to a *generation*: `feeds__g3`, `articles__g3`, ...
`replay` fills a new generation beside the one readers use, then in one transaction points the
projection at it (and the plain SQL views `feeds`, `articles`, ... that other tools read), and
only then drops the old tables. A reader reads the pointer and the tables in one snapshot, so it
sees the old views or the new ones, never a half-built one; a replay that dies leaves the old
views as they were, and its half-built tables are dropped by the next replay that succeeds.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool

from tracker.database import WRITE, describe, insert_missing, storage_errors
from tracker.encoding import stored_time
from tracker.errors import SchemaError, StorageError
from tracker.eventstore import EventStore
from tracker.records import RecordedEvent
from tracker.schema import projections

log = logging.getLogger(__name__)

# Events per transaction. Catch-up keeps each transaction short, so polls are not held up;
# a replay fills tables nobody reads yet, so it takes bigger steps.
CATCH_UP_BATCH = 2_000
REPLAY_BATCH = 5_000
# How often a reader starts again when a replay dropped the old tables under it (PostgreSQL
# resolves table names outside the reader's snapshot).
_READ_ATTEMPTS = 4

T = TypeVar("T")
Batch = Sequence[tuple[RecordedEvent, Any]]  # each event with its typed (decoded) form
Progress = Callable[[int], None]  # called with the number of events applied since last call


# -- view tables -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewTable:
    """One table of a view, independent of its generation: made afresh for each one."""

    name: str
    columns: Callable[[], list[sa.Column[Any]]]
    primary_key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()

    def build(self, metadata: sa.MetaData, generation: int) -> sa.Table:
        physical = physical_name(self.name, generation)
        return sa.Table(
            physical,
            metadata,
            *self.columns(),
            sa.PrimaryKeyConstraint(*self.primary_key, name=f"pk_{physical}"),
            *(sa.Index(f"ix_{physical}_{'_'.join(cols)}", *cols) for cols in self.indexes),
        )


def physical_name(name: str, generation: int) -> str:
    return f"{name}__g{generation}"


_PHYSICAL = re.compile(r"^(?P<name>[a-z_]+?)__g(?P<generation>\d+)$")


class Views:
    """The physical tables a projector or a reader works on, by their logical names."""

    def __init__(self, connection: sa.Connection, tables: Mapping[str, sa.Table]) -> None:
        self.connection = connection
        self._tables = dict(tables)

    def __getitem__(self, name: str) -> sa.Table:
        return self._tables[name]

    def __contains__(self, name: str) -> bool:
        return name in self._tables


class Projector:
    """Turns events into view rows. Subclasses set the class attributes and `apply`.

    Bump `version` whenever the tables or what is written to them change: views built by an
    older version are then rebuilt from the log by the next catch-up.
    """

    name: ClassVar[str]
    version: ClassVar[int]
    tables: ClassVar[tuple[ViewTable, ...]]
    handles: ClassVar[frozenset[str]]

    def apply(self, views: Views, batch: Batch) -> None:
        """Apply events (only of the `handles` types, in position order) to the tables."""
        raise NotImplementedError(f"{type(self).__name__} does not apply events")

    def changes(self, old: Views, new: Views) -> list[str]:
        """What a user should hear about the difference between two builds (replay's report)."""
        return []


# Keeps `IN (...)` lists well under every database's bound-parameter limit.
_IN_CHUNK = 500


def rows_by(
    connection: sa.Connection, table: sa.Table, column: str, keys: Iterable[Any]
) -> list[dict[str, Any]]:
    """The rows whose `column` is one of `keys`, as dicts a projector can change."""
    wanted = sorted(set(keys))
    found: list[dict[str, Any]] = []
    for start in range(0, len(wanted), _IN_CHUNK):
        query = sa.select(table).where(table.c[column].in_(wanted[start : start + _IN_CHUNK]))
        found.extend(dict(row._mapping) for row in connection.execute(query))
    return found


def delete_where_in(
    connection: sa.Connection, table: sa.Table, column: str, keys: Iterable[Any]
) -> None:
    wanted = sorted(set(keys))
    for start in range(0, len(wanted), _IN_CHUNK):
        connection.execute(
            sa.delete(table).where(table.c[column].in_(wanted[start : start + _IN_CHUNK]))
        )


def utc(moment: datetime | str | None) -> datetime | None:
    """A time for a view column: aware UTC (SQLite keeps it as naive UTC text)."""
    if moment is None:
        return None
    return stored_time(moment)


# -- checkpoints -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    name: str
    generation: int
    position: int
    version: int
    built_at: datetime | None
    updated_at: datetime | None


def _checkpoint(row: sa.Row[Any]) -> Checkpoint:
    return Checkpoint(
        row.name,
        row.generation,
        row.position,
        row.version,
        stored_time(row.built_at) if row.built_at is not None else None,
        stored_time(row.updated_at) if row.updated_at is not None else None,
    )


def _ensure_rows(connection: sa.Connection, names: Iterable[str]) -> None:
    rows = [
        {"name": name, "generation": 0, "position": 0, "version": 0, "next_generation": 1}
        for name in names
    ]
    insert_missing(connection, projections, rows)


def _lock(connection: sa.Connection, names: Sequence[str]) -> dict[str, sa.Row[Any]]:
    """The projections' rows, locked until the transaction ends. Always in name order, so two
    processes locking overlapping sets cannot deadlock."""
    query = (
        sa.select(projections)
        .where(projections.c.name.in_(sorted(names)))
        .order_by(projections.c.name)
    )
    if connection.dialect.name == "postgresql":
        query = query.with_for_update()
    return {row.name: row for row in connection.execute(query)}


def read_checkpoints(engine: Engine) -> dict[str, Checkpoint]:
    with storage_errors(engine), engine.connect() as connection:
        return {row.name: _checkpoint(row) for row in connection.execute(sa.select(projections))}


@contextmanager
def _write(engine: Engine) -> Iterator[sa.Connection]:
    with storage_errors(engine), engine.connect() as connection:
        connection = connection.execution_options(**WRITE)
        with connection.begin():
            yield connection


# -- applying --------------------------------------------------------------------------------


def _decoded(events: Iterable[RecordedEvent]) -> list[tuple[RecordedEvent, Any]]:
    from tracker.events import decode

    return [(event, decode(event)) for event in events]


def _handled(projectors: Iterable[Projector]) -> list[str]:
    return sorted({kind for projector in projectors for kind in projector.handles})


def _apply(
    projectors: Sequence[Projector],
    views: Mapping[str, Views],
    batch: Batch,
    after: Mapping[str, int],
) -> None:
    """Each projector gets the events it handles that come after its own checkpoint."""
    for projector in projectors:
        start = after[projector.name]
        mine = [
            item
            for item in batch
            if item[0].position > start and item[0].event_type in projector.handles
        ]
        if mine:
            projector.apply(views[projector.name], mine)


def _tables(projector: Projector, generation: int) -> dict[str, sa.Table]:
    metadata = sa.MetaData()
    return {table.name: table.build(metadata, generation) for table in projector.tables}


def _create(connection: sa.Connection, projector: Projector, generation: int) -> None:
    for table in _tables(projector, generation).values():
        table.create(connection)


def _point_sql_views(connection: sa.Connection, projector: Projector, generation: int) -> None:
    """Plain SQL views with the tables' logical names, for other tools to query."""
    quote = connection.dialect.identifier_preparer.quote
    for table in projector.tables:
        connection.exec_driver_sql(f"DROP VIEW IF EXISTS {quote(table.name)}")
        connection.exec_driver_sql(
            f"CREATE VIEW {quote(table.name)} AS SELECT * FROM "
            f"{quote(physical_name(table.name, generation))}"
        )


def _generations(connection: sa.Connection, projector: Projector) -> set[int]:
    """Every generation of this projector's tables present in the database."""
    names = {table.name for table in projector.tables}
    found = set()
    for table in sa.inspect(connection).get_table_names():
        matched = _PHYSICAL.match(table)
        if matched and matched["name"] in names:
            found.add(int(matched["generation"]))
    return found


def _drop_generations(engine: Engine, projector: Projector, keep: int) -> None:
    """Drop the tables of every other generation: each table in its own short transaction,
    which on PostgreSQL waits for readers still using it."""
    with storage_errors(engine), engine.connect() as connection:
        stale = sorted(_generations(connection, projector) - {keep})
        connection.rollback()
    for generation in stale:
        for table in _tables(projector, generation).values():
            with _write(engine) as connection:
                table.drop(connection, checkfirst=True)


def _now() -> datetime:
    return datetime.now(UTC)


# -- catch-up --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatchUpReport:
    applied: int  # events read and applied (or passed over) across all batches
    head: int
    rebuilt: tuple[str, ...] = ()


def catch_up(
    store: EventStore,
    projectors: Sequence[Projector],
    progress: Progress | None = None,
    batch_size: int = CATCH_UP_BATCH,
) -> CatchUpReport:
    """Bring every projection up to the end of the log, a batch per transaction.

    A projection never built gets its first generation here; one built by an older version of
    its projector is rebuilt (replayed) first.
    """
    engine = store.engine
    names = [projector.name for projector in projectors]
    with _write(engine) as connection:
        _ensure_rows(connection, names)
    outdated = _outdated(engine, projectors)
    if outdated:
        replay(store, outdated)
    applied = 0
    handled = _handled(projectors)
    while True:
        with _write(engine) as connection:
            rows = _lock(connection, names)
            rows = _first_generations(connection, projectors, rows)
            head = store.head_in(connection)
            after = {name: row.position for name, row in rows.items()}
            low = min(after.values())
            if low >= head:
                return CatchUpReport(applied, head, tuple(p.name for p in outdated))
            events = store.read_batch(connection, low, head, batch_size, handled)
            upto = events[-1].position if len(events) == batch_size else head
            views = {
                p.name: Views(connection, _tables(p, rows[p.name].generation)) for p in projectors
            }
            _apply(projectors, views, _decoded(events), after)
            now = _now()
            for name, position in after.items():
                if position < upto:
                    connection.execute(
                        sa.update(projections)
                        .where(projections.c.name == name)
                        .values(position=upto, updated_at=now)
                    )
        applied += upto - low
        if progress is not None:
            progress(upto - low)


def _outdated(engine: Engine, projectors: Sequence[Projector]) -> list[Projector]:
    checkpoints = read_checkpoints(engine)
    outdated = []
    for projector in projectors:
        checkpoint = checkpoints[projector.name]
        if checkpoint.generation == 0:
            continue
        if checkpoint.version > projector.version:
            raise SchemaError(
                f"{projector.name} views were built by a newer tracker (projection version "
                f"{checkpoint.version}, this one has {projector.version}): upgrade tracker"
            )
        if checkpoint.version < projector.version:
            outdated.append(projector)
    return outdated


def _first_generations(
    connection: sa.Connection, projectors: Sequence[Projector], rows: dict[str, sa.Row[Any]]
) -> dict[str, sa.Row[Any]]:
    """Create the first generation of tables for projections that have none, in this
    transaction (the DDL commits with the checkpoint on both databases)."""
    fresh = [p for p in projectors if rows[p.name].generation == 0]
    if not fresh:
        return rows
    for projector in fresh:
        generation = rows[projector.name].next_generation
        _create(connection, projector, generation)
        _point_sql_views(connection, projector, generation)
        connection.execute(
            sa.update(projections)
            .where(projections.c.name == projector.name)
            .values(
                generation=generation,
                position=0,
                version=projector.version,
                next_generation=generation + 1,
                built_at=_now(),
            )
        )
    return _lock(connection, list(rows))


# -- replay ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayReport:
    events: int  # events read from the log
    head: int
    seconds: float
    projections: tuple[str, ...]
    changes: tuple[str, ...] = ()  # what differs from the views replaced, one line each

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def replay(
    store: EventStore,
    projectors: Sequence[Projector],
    progress: Progress | None = None,
    batch_size: int = REPLAY_BATCH,
) -> ReplayReport:
    """Rebuild the projections from the whole log into fresh tables, then swap them in.

    Readers see the old views until the swap commits, and the new ones after; a crash before
    the swap leaves the old views untouched (its tables are cleared by a later replay).
    """
    engine = store.engine
    started = time.monotonic()
    names = [projector.name for projector in projectors]
    with _write(engine) as connection:
        _ensure_rows(connection, names)
        rows = _lock(connection, names)
        generations = {name: row.next_generation for name, row in rows.items()}
        for name, generation in generations.items():
            connection.execute(
                sa.update(projections)
                .where(projections.c.name == name)
                .values(next_generation=generation + 1)
            )
    with _write(engine) as connection:
        for projector in projectors:
            _create(connection, projector, generations[projector.name])
    try:
        position = _fill(store, projectors, generations, progress, batch_size)
        head, changes = _swap(store, projectors, generations, position, progress)
    except BaseException:
        _discard(engine, projectors, generations)
        raise
    for projector in projectors:
        _drop_generations(engine, projector, keep=generations[projector.name])
    return ReplayReport(head, head, time.monotonic() - started, tuple(names), tuple(changes))


def _fill(
    store: EventStore,
    projectors: Sequence[Projector],
    generations: Mapping[str, int],
    progress: Progress | None,
    batch_size: int,
) -> int:
    """Apply the log as it stands now to the new tables, a batch per transaction."""
    engine = store.engine
    head = store.head_position()
    after = {projector.name: 0 for projector in projectors}
    position = 0
    events = store.read_all(
        0, until_position=head, event_types=_handled(projectors), batch_size=batch_size
    )
    for chunk in _chunks(events, batch_size):
        with _write(engine) as connection:
            views = {p.name: Views(connection, _tables(p, generations[p.name])) for p in projectors}
            _apply(projectors, views, _decoded(chunk), after)
        done = chunk[-1].position
        if progress is not None:
            progress(done - position)
        position = done
    if progress is not None and head > position:
        progress(head - position)  # events no projector handles, passed over at the end
    return head


def _swap(
    store: EventStore,
    projectors: Sequence[Projector],
    generations: Mapping[str, int],
    position: int,
    progress: Progress | None,
) -> tuple[int, list[str]]:
    """In one transaction: apply what was appended meanwhile, point readers at the new tables,
    and say what changed."""
    names = [projector.name for projector in projectors]
    with _write(store.engine) as connection:
        rows = _lock(connection, names)
        head = store.head_in(connection)
        handled = _handled(projectors)
        new = {p.name: Views(connection, _tables(p, generations[p.name])) for p in projectors}
        after = {name: position for name in names}
        while position < head:
            events = store.read_batch(connection, position, head, REPLAY_BATCH, handled)
            upto = events[-1].position if len(events) == REPLAY_BATCH else head
            _apply(projectors, new, _decoded(events), after)
            if progress is not None:
                progress(upto - position)
            position = upto
            after = {name: upto for name in names}
        changes: list[str] = []
        existing = set(sa.inspect(connection).get_table_names())
        now = _now()
        for projector in projectors:
            row = rows[projector.name]
            old_tables = _tables(projector, row.generation)
            if row.generation and all(t.name in existing for t in old_tables.values()):
                changes += projector.changes(Views(connection, old_tables), new[projector.name])
            _point_sql_views(connection, projector, generations[projector.name])
            connection.execute(
                sa.update(projections)
                .where(projections.c.name == projector.name)
                .values(
                    generation=generations[projector.name],
                    position=head,
                    version=projector.version,
                    built_at=now,
                    updated_at=now,
                )
            )
    return head, changes


def _discard(
    engine: Engine, projectors: Sequence[Projector], generations: Mapping[str, int]
) -> None:
    """Drop a replay's own half-built tables, as far as the database still lets us."""
    for projector in projectors:
        try:
            with _write(engine) as connection:
                for table in _tables(projector, generations[projector.name]).values():
                    table.drop(connection, checkfirst=True)
        except (StorageError, DBAPIError) as error:
            log.warning("could not drop the unfinished %s tables: %s", projector.name, error)


def _chunks(events: Iterator[RecordedEvent], size: int) -> Iterator[list[RecordedEvent]]:
    chunk: list[RecordedEvent] = []
    for event in events:
        chunk.append(event)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# -- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Every view table a reader asked for, as of one moment, with where each view stands."""

    views: Views
    positions: Mapping[str, int]
    head: int


class NotBuilt(StorageError):
    """The views have never been built in this database."""


def read_views(
    store: EventStore, projectors: Sequence[Projector], read: Callable[[Snapshot], T]
) -> T:
    """Run `read` on the current views in one consistent snapshot (a read-only transaction,
    REPEATABLE READ on PostgreSQL), starting again if a replay swaps the tables meanwhile."""
    engine = store.engine
    for attempt in range(_READ_ATTEMPTS):
        try:
            with storage_errors(engine), engine.connect() as connection:
                if connection.dialect.name == "postgresql":
                    connection = connection.execution_options(
                        isolation_level="REPEATABLE READ", postgresql_readonly=True
                    )
                with connection.begin():
                    return read(_snapshot(connection, store, projectors))
        except StorageError as error:
            if attempt + 1 < _READ_ATTEMPTS and _missing_table(error):
                continue
            raise
    raise AssertionError("unreachable")


def _missing_table(error: StorageError) -> bool:
    text = str(error)
    return "no such table" in text or ("relation" in text and "does not exist" in text)


def _snapshot(
    connection: sa.Connection, store: EventStore, projectors: Sequence[Projector]
) -> Snapshot:
    found = {
        row.name: row
        for row in connection.execute(
            sa.select(projections).where(projections.c.name.in_([p.name for p in projectors]))
        )
    }
    tables: dict[str, sa.Table] = {}
    positions: dict[str, int] = {}
    for projector in projectors:
        row = found.get(projector.name)
        if row is None or row.generation == 0:
            raise NotBuilt(
                f"{describe(store.engine.url)}: the {projector.name} view has not been built "
                "yet: run `tracker replay` (or `tracker poll`, which builds the views as it goes)"
            )
        if row.version != projector.version:
            raise SchemaError(
                f"{describe(store.engine.url)}: the {projector.name} view was built by another "
                f"tracker version ({row.version}, this one reads {projector.version}): run "
                "`tracker replay`"
            )
        tables.update(_tables(projector, row.generation))
        positions[projector.name] = row.position
    return Snapshot(Views(connection, tables), positions, store.head_in(connection))


# -- the past --------------------------------------------------------------------------------


def read_past(
    store: EventStore,
    projectors: Sequence[Projector],
    read: Callable[[Snapshot], T],
    until_position: int,
    later: Sequence[Projector] = (),
    streams_for_later: Callable[[Snapshot], set[str]] | None = None,
) -> T:
    """Run `read` on the views as they stood at `until_position` of the log, built from the
    log by the same projectors into a private in-memory database (time travel: `--as-of`).

    `later` projectors are then run over just the events of the streams that
    `streams_for_later` picks from the first ones' views (a storyline's member articles): all a
    reader of one storyline needs, for a fraction of the work.
    """
    engine = sa.create_engine("sqlite://", poolclass=StaticPool)
    try:
        everything = (*projectors, *later)
        tables = {p.name: _tables(p, 0) for p in everything}
        with engine.connect() as connection, connection.begin():
            for projector in everything:
                _create(connection, projector, 0)

        def run(chosen: Sequence[Projector], keep: Callable[[RecordedEvent], bool]) -> None:
            events = store.read_all(0, until_position=until_position, event_types=_handled(chosen))
            for chunk in _chunks(events, REPLAY_BATCH):
                wanted = [event for event in chunk if keep(event)]
                with engine.connect() as connection, connection.begin():
                    views = {p.name: Views(connection, tables[p.name]) for p in chosen}
                    _apply(chosen, views, _decoded(wanted), {p.name: 0 for p in chosen})

        def snapshot(connection: sa.Connection, chosen: Sequence[Projector]) -> Snapshot:
            merged: dict[str, sa.Table] = {}
            for projector in chosen:
                merged.update(tables[projector.name])
            positions = {p.name: until_position for p in chosen}
            return Snapshot(Views(connection, merged), positions, until_position)

        run(projectors, lambda _event: True)
        if later:
            with engine.connect() as connection:
                streams = (
                    streams_for_later(snapshot(connection, projectors))
                    if streams_for_later is not None
                    else set()
                )
            run(later, lambda event: event.stream_id in streams)
        with engine.connect() as connection, connection.begin():
            return read(snapshot(connection, everything))
    finally:
        engine.dispose()
