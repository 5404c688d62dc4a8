"""Reading the views: now, in one consistent snapshot, or as they stood at a past position.

`read_views` runs a reader's queries in one read-only transaction (REPEATABLE READ on
PostgreSQL; one WAL snapshot on SQLite), so the pointer to the current generation and the
tables it names are read as of one moment: a replay swapping tables meanwhile is seen entirely
or not at all. `read_past` builds the views of a prefix of the log with the same projectors in
a private database, for time travel.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa

from tracker.database import describe, storage_errors, undefined_table
from tracker.errors import SchemaError, StorageError
from tracker.eventstore import EventStore
from tracker.projection import (
    Projector,
    Views,
    apply_batch,
    create_tables,
    decoded,
    handled,
    tables_of,
)
from tracker.rebuild import REPLAY_BATCH
from tracker.records import RecordedEvent
from tracker.schema import projections

T = TypeVar("T")
# How often a reader starts again when a replay dropped the old tables under it: PostgreSQL
# resolves table names outside the reader's snapshot.
_READ_ATTEMPTS = 4


@dataclass(frozen=True)
class Snapshot:
    """Every view table a reader asked for, as of one moment, with where each view stands."""

    views: Views
    positions: Mapping[str, int]
    head: int
    # The generation of each view read: none for the views of the past, built in private.
    generations: Mapping[str, int] = field(default_factory=dict)

    @property
    def position(self) -> int:
        """The log position every view read has reached: the lowest of their checkpoints."""
        return min(self.positions.values(), default=self.head)


class NotBuilt(StorageError):
    """The views have never been built in this database."""


def read_views(
    store: EventStore, projectors: Sequence[Projector], read: Callable[[Snapshot], T]
) -> T:
    """Run `read` on the current views in one consistent snapshot, starting again if a replay
    swaps the tables meanwhile."""
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
            if attempt + 1 < _READ_ATTEMPTS and missing_table(error):
                continue
            raise
    raise AssertionError("unreachable")


def missing_table(error: StorageError) -> bool:
    """Whether the error is a view table that is not there (dropped by a replay's swap)."""
    return undefined_table(getattr(error.__cause__, "orig", None))


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
    generations: dict[str, int] = {}
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
        tables.update(tables_of(projector, row.generation))
        positions[projector.name] = row.position
        generations[projector.name] = row.generation
    return Snapshot(Views(connection, tables), positions, store.head_in(connection), generations)


def read_past(
    store: EventStore,
    projectors: Sequence[Projector],
    read: Callable[[Snapshot], T],
    until_position: int,
    later: Sequence[Projector] = (),
    streams_for_later: Callable[[Snapshot], set[str]] | None = None,
) -> T:
    """Run `read` on the views as they stood at `until_position` of the log, built from the
    log by the same projectors into a private, temporary SQLite file (time travel).

    `later` projectors are then run over just the streams that `streams_for_later` picks from
    the first ones' views (a storyline's member articles): all a reader of one storyline needs,
    for a fraction of the work. A file rather than memory, so a long log costs disk, not RAM.
    """
    with tempfile.TemporaryDirectory(prefix="tracker-as-of-") as folder:
        engine = sa.create_engine(f"sqlite:///{Path(folder) / 'views.db'}")
        try:
            return _read_past(
                store, engine, projectors, read, until_position, later, streams_for_later
            )
        finally:
            engine.dispose()


def _read_past(
    store: EventStore,
    engine: sa.Engine,
    projectors: Sequence[Projector],
    read: Callable[[Snapshot], T],
    until_position: int,
    later: Sequence[Projector],
    streams_for_later: Callable[[Snapshot], set[str]] | None,
) -> T:
    everything = (*projectors, *later)
    tables = {p.name: tables_of(p, 0) for p in everything}
    with engine.begin() as connection:
        for projector in everything:
            create_tables(connection, projector, 0)

    def run(chosen: Sequence[Projector], events: Sequence[RecordedEvent]) -> None:
        with engine.begin() as connection:
            views = {p.name: Views(connection, tables[p.name]) for p in chosen}
            apply_batch(chosen, views, decoded(events), dict.fromkeys(tables, 0))

    def snapshot(connection: sa.Connection, chosen: Sequence[Projector]) -> Snapshot:
        merged: dict[str, sa.Table] = {}
        for projector in chosen:
            merged.update(tables[projector.name])
        positions = {p.name: until_position for p in chosen}
        return Snapshot(Views(connection, merged), positions, until_position)

    chunk: list[RecordedEvent] = []
    for event in store.read_all(0, until_position=until_position, event_types=handled(projectors)):
        chunk.append(event)
        if len(chunk) >= REPLAY_BATCH:
            run(projectors, chunk)
            chunk = []
    if chunk:
        run(projectors, chunk)
    if later:
        with engine.connect() as connection:
            streams = (
                streams_for_later(snapshot(connection, projectors)) if streams_for_later else set()
            )
        wanted = [
            e
            for e in store.read_streams(sorted(streams), until_position)
            if e.event_type in set(handled(later))
        ]
        for start in range(0, len(wanted), REPLAY_BATCH):
            run(later, wanted[start : start + REPLAY_BATCH])
    with engine.begin() as connection:
        return read(snapshot(connection, everything))
