"""The projector framework: views built from the log, exactly once, rebuilt and swapped atomically.

A projector consumes events in position order and writes its own view tables. The framework
runs it in batches, each one transaction that writes the view rows and advances the checkpoint
(`projections.position`) together, so a crash anywhere loses a whole batch or nothing, and
never applies an event twice (issue #4, point 3). Catch-up locks the projections' rows first,
so several daemons sharing one PostgreSQL never apply the same batch twice either.

The view tables of a projection belong to a *generation*: `feeds__g3`, `articles__g3`, ...;
plain SQL views with the logical names (`feeds`, `articles`) point at the current one for other
tools. Rebuilding fills a new generation and swaps it in (tracker.rebuild); readers read the
pointer and the tables in one snapshot (tracker.reading).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from tracker.database import WRITE, insert_missing, storage_errors
from tracker.encoding import stored_time
from tracker.errors import SchemaError, StorageError
from tracker.events import decode
from tracker.eventstore import EventStore
from tracker.owners import alive
from tracker.records import RecordedEvent
from tracker.schema import projections

log = logging.getLogger(__name__)

# Events per catch-up transaction: short, so that polls are not held up behind one.
CATCH_UP_BATCH = 2_000
# A replay or catch-up that applied this many events analyses the views (on PostgreSQL), and
# again each time it has applied twice as many as at its last analyse, then at its end.
ANALYSE_AFTER = 20_000
# How long a PostgreSQL swap or drop waits for another session's lock on a view table (a tool
# holding a transaction open) before it gives up, rather than stall every catch-up behind it.
VIEW_LOCK_TIMEOUT_MS = 30_000

Batch = Sequence[tuple[RecordedEvent, Any]]  # each event with its typed (decoded) form
Progress = Callable[[int], None]  # called with the number of events applied since last call


# -- view tables -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NamedIndex:
    """An index named for what it serves (the name of one made of many columns would pass
    PostgreSQL's 63 characters)."""

    name: str
    columns: tuple[str, ...]
    # Only the rows that meet this SQL condition on the table's own columns are indexed: small
    # where the rows a reader wants are few. A query uses it only when its WHERE states the
    # same condition, literally.
    where: str | None = None


@dataclass(frozen=True)
class ViewTable:
    """One table of a view, independent of its generation: made afresh for each one."""

    name: str
    columns: Callable[[], list[sa.Column[Any]]]
    primary_key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()
    named_indexes: tuple[NamedIndex, ...] = ()
    # Stored in primary-key order on SQLite (WITHOUT ROWID): one key's rows are found
    # together, with no second lookup into the table. For tables of small rows.
    clustered: bool = False

    def build(self, metadata: sa.MetaData, generation: int) -> sa.Table:
        physical = physical_name(self.name, generation)
        return sa.Table(
            physical,
            metadata,
            *self.columns(),
            sa.PrimaryKeyConstraint(*self.primary_key, name=f"pk_{physical}"),
            *(sa.Index(f"ix_{physical}_{'_'.join(cols)}", *cols) for cols in self.indexes),
            *(
                sa.Index(f"ix_{physical}_{index.name}", *index.columns, **_where(index.where))
                for index in self.named_indexes
            ),
            sqlite_with_rowid=not self.clustered,
        )


def _where(condition: str | None) -> dict[str, Any]:
    if condition is None:
        return {}
    return {"sqlite_where": sa.text(condition), "postgresql_where": sa.text(condition)}


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
    connection: sa.Connection,
    table: sa.Table,
    column: str,
    keys: Iterable[Any],
    columns: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The rows whose `column` is one of `keys`, as dicts a projector can change: every
    column, or only `columns`."""
    wanted = sorted(set(keys))
    chosen = [table.c[name] for name in columns] if columns else [table]
    found: list[dict[str, Any]] = []
    for start in range(0, len(wanted), _IN_CHUNK):
        query = sa.select(*chosen).where(table.c[column].in_(wanted[start : start + _IN_CHUNK]))
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
    if isinstance(moment, datetime) and moment.tzinfo is UTC:
        return moment  # a recorded time, already read as aware UTC: the common case
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
    rebuilding_by: str | None = None  # a replay under way, while its lease lasts

    @property
    def built(self) -> bool:
        return self.generation > 0


def checkpoint_of(row: sa.Row[Any]) -> Checkpoint:
    return Checkpoint(
        row.name,
        row.generation,
        row.position,
        row.version,
        stored_time(row.built_at) if row.built_at is not None else None,
        stored_time(row.updated_at) if row.updated_at is not None else None,
        row.rebuilding_by if rebuilding(row, now()) else None,
    )


def rebuilding(row: sa.Row[Any], moment: datetime) -> bool:
    """Whether a replay holds this projection now: its lease has not run out, and its process
    is not known to be dead (one of this machine's that was killed frees it at once)."""
    return (
        row.rebuilding_by is not None
        and row.rebuilding_until is not None
        and stored_time(row.rebuilding_until) > moment
        and alive(row.rebuilding_by) is not False
    )


def ensure_rows(connection: sa.Connection, names: Iterable[str]) -> None:
    rows = [
        {"name": name, "generation": 0, "position": 0, "version": 0, "next_generation": 1}
        for name in names
    ]
    insert_missing(connection, projections, rows)


def lock_rows(connection: sa.Connection, names: Sequence[str]) -> dict[str, sa.Row[Any]]:
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
        return {row.name: checkpoint_of(row) for row in connection.execute(sa.select(projections))}


@contextmanager
def writing(engine: Engine) -> Iterator[sa.Connection]:
    with storage_errors(engine), engine.connect() as connection:
        connection = connection.execution_options(**WRITE)
        with connection.begin():
            yield connection


# -- applying --------------------------------------------------------------------------------


def decoded(events: Iterable[RecordedEvent]) -> list[tuple[RecordedEvent, Any]]:
    return [(event, decode(event)) for event in events]


def handled(projectors: Iterable[Projector]) -> list[str]:
    return sorted({kind for projector in projectors for kind in projector.handles})


def apply_batch(
    projectors: Sequence[Projector],
    views: Mapping[str, Views],
    batch: Batch,
    after: Mapping[str, int],
) -> None:
    """Each projector gets the events it handles that come after its own checkpoint."""
    if not batch:
        return
    types = {event.event_type for event, _ in batch}
    for projector in projectors:
        start = after[projector.name]
        if start < batch[0][0].position and types <= projector.handles:
            mine = batch  # all of it: the common case in a replay, with no copy to make
        else:
            mine = [
                item
                for item in batch
                if item[0].position > start and item[0].event_type in projector.handles
            ]
        if mine:
            projector.apply(views[projector.name], mine)


def tables_of(projector: Projector, generation: int) -> dict[str, sa.Table]:
    metadata = sa.MetaData()
    return {table.name: table.build(metadata, generation) for table in projector.tables}


def analyse(
    engine: Engine, projectors: Sequence[Projector], generations: Mapping[str, int]
) -> None:
    """Give PostgreSQL's planner the tables' statistics: without them it guesses their sizes,
    and may scan a whole view for a few rows or sort a storyline's every member to find its
    newest (autovacuum analyses them only later, or never where it is off)."""
    if engine.dialect.name != "postgresql":
        return
    with writing(engine) as connection:
        quote = connection.dialect.identifier_preparer.quote
        for projector in projectors:
            for table in tables_of(projector, generations[projector.name]).values():
                connection.exec_driver_sql(f"ANALYZE {quote(table.name)}")


class Analyser:
    """Analyses the views while a long replay or catch-up fills them, as autovacuum would (it
    may be off, or behind): else every look-up and delete by a list of keys in their batches is
    planned as a scan of the whole table, which grows as they fill (at a million events, 40% of
    the time of a replay and of a catch-up went to such deletes)."""

    def __init__(self, engine: Engine, first: int = ANALYSE_AFTER) -> None:
        self._engine = engine
        self._first = self._next = max(first, 1)
        self._analysed_at = 0  # events applied at the last analyse

    def applied(
        self,
        events: int,
        projectors: Sequence[Projector],
        generations: Mapping[str, int],
        final: bool = False,
    ) -> None:
        """`events` applied so far; `final`: the fill is over, so analysed if it applied
        enough and grew since the last analyse."""
        ending = final and events >= self._first and events > self._analysed_at
        if events >= self._next or ending:
            analyse(self._engine, projectors, generations)
            self._analysed_at = events
            self._next = 2 * events


def create_tables(connection: sa.Connection, projector: Projector, generation: int) -> None:
    for table in tables_of(projector, generation).values():
        table.create(connection)


def point_sql_views(connection: sa.Connection, projector: Projector, generation: int) -> None:
    """Plain SQL views with the tables' logical names, for other tools to query.

    On PostgreSQL the view is replaced in place, so views of a user's own built on ours keep
    working; only when the columns changed (a new projector version) is it dropped first.
    """
    quote = connection.dialect.identifier_preparer.quote
    for table in projector.tables:
        name, physical = quote(table.name), quote(physical_name(table.name, generation))
        if connection.dialect.name == "postgresql":
            try:
                with connection.begin_nested():
                    connection.exec_driver_sql(
                        f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {physical}"
                    )
                continue
            except DBAPIError:
                pass  # its columns changed: drop it and make it anew below
        connection.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
        connection.exec_driver_sql(f"CREATE VIEW {name} AS SELECT * FROM {physical}")


def generations_present(connection: sa.Connection, projector: Projector) -> set[int]:
    """Every generation of this projector's tables present in the database."""
    names = {table.name for table in projector.tables}
    found = set()
    for table in sa.inspect(connection).get_table_names():
        matched = _PHYSICAL.match(table)
        if matched and matched["name"] in names:
            found.add(int(matched["generation"]))
    return found


def drop_generation(engine: Engine, projector: Projector, generation: int) -> bool:
    """Drop one generation's tables, each in its own short transaction (on PostgreSQL it waits
    for readers still using it, up to VIEW_LOCK_TIMEOUT_MS). False if one could not go yet."""
    for table in tables_of(projector, generation).values():
        try:
            with writing(engine) as connection:
                limit_lock_wait(connection)
                table.drop(connection, checkfirst=True)
        except StorageError as error:
            log.warning("%s: left for the next replay to drop: %s", table.name, error)
            return False
    return True


def limit_lock_wait(connection: sa.Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {VIEW_LOCK_TIMEOUT_MS}")


def now() -> datetime:
    return datetime.now(UTC)


def check_versions(rows: Mapping[str, sa.Row[Any]], projectors: Sequence[Projector]) -> None:
    """Refuse views built by a newer tracker: this one's code would write them wrong."""
    for projector in projectors:
        row = rows[projector.name]
        if row.generation and row.version > projector.version:
            raise SchemaError(
                f"the {projector.name} views were built by a newer tracker (projection version "
                f"{row.version}, this one has {projector.version}): upgrade tracker"
            )


# -- catch-up --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatchUpReport:
    applied: int  # events read and applied (or passed over) across all batches
    head: int
    rebuilt: tuple[str, ...] = ()  # projections replayed first: built by an older version
    skipped: tuple[str, ...] = ()  # projections a replay is rebuilding right now
    stopped: bool = False  # asked to stop first: `head` is where the views stopped


def catch_up(
    store: EventStore,
    projectors: Sequence[Projector],
    progress: Progress | None = None,
    batch_size: int = CATCH_UP_BATCH,
    stopping: Callable[[], bool] | None = None,
    analyse_after: int = ANALYSE_AFTER,
) -> CatchUpReport:
    """Bring every projection up to the end of the log, a batch per transaction.

    A projection never built gets its first generation here; one built by an older version of
    its projector is rebuilt (replayed) first; one a replay is rebuilding is left to it.
    `stopping` is asked after each batch: a stopping daemon must not chase a log that other
    daemons keep writing; every batch has committed, so the next catch-up goes on from there.
    Having applied `analyse_after` events, it analyses the views (PostgreSQL), again each time
    it has applied twice as many, and at its end.
    """
    from tracker.rebuild import ReplayBusy, replay  # rebuild builds on this module

    engine = store.engine
    names = [projector.name for projector in projectors]
    with writing(engine) as connection:
        ensure_rows(connection, names)
    applied = 0
    rebuilt: list[str] = []
    skipped: set[str] = set()
    handled_types = handled(projectors)
    analyser = Analyser(engine, analyse_after)
    while True:
        with writing(engine) as connection:
            rows = lock_rows(connection, names)
            check_versions(rows, projectors)
            moment = now()
            outdated = [
                p
                for p in projectors
                if rows[p.name].generation
                and rows[p.name].version < p.version
                and p.name not in skipped
                and not rebuilding(rows[p.name], moment)
            ]
            if not outdated:
                skipped |= {p.name for p in projectors if rebuilding(rows[p.name], moment)}
                active = [p for p in projectors if p.name not in skipped]
                rows = _first_generations(connection, active, rows)
                head = store.head_in(connection)
                after = {p.name: rows[p.name].position for p in active}
                low = min(after.values(), default=head)
                if low < head:
                    events, upto = store.read_batch(
                        connection, low, head, batch_size, handled_types
                    )
                    views = {
                        p.name: Views(connection, tables_of(p, rows[p.name].generation))
                        for p in active
                    }
                    apply_batch(active, views, decoded(events), after)
                    stamp = now()
                    for name, position in after.items():
                        if position < upto:
                            connection.execute(
                                sa.update(projections)
                                .where(projections.c.name == name)
                                .values(position=upto, updated_at=stamp)
                            )
        if outdated:
            try:
                replay(store, outdated)
                rebuilt += [p.name for p in outdated]
            except ReplayBusy:
                skipped |= {p.name for p in outdated}
            continue
        generations = {p.name: rows[p.name].generation for p in active}
        if low >= head:
            analyser.applied(applied, active, generations, final=True)
            return CatchUpReport(applied, head, tuple(rebuilt), tuple(sorted(skipped)))
        applied += upto - low
        analyser.applied(applied, active, generations)
        if progress is not None:
            progress(upto - low)
        if stopping is not None and stopping():
            return CatchUpReport(
                applied, upto, tuple(rebuilt), tuple(sorted(skipped)), stopped=True
            )


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
        create_tables(connection, projector, generation)
        point_sql_views(connection, projector, generation)
        connection.execute(
            sa.update(projections)
            .where(projections.c.name == projector.name)
            .values(
                generation=generation,
                position=0,
                version=projector.version,
                next_generation=generation + 1,
                built_at=now(),
            )
        )
    return lock_rows(connection, list(rows))
