"""Rebuilding views from the log (`tracker replay`): fresh tables, filled, then swapped in at once.

A replay first takes a lease on its projections' rows (one replay at a time; catch-ups leave
those projections alone meanwhile, renewed as it goes, so a crashed replay's lease runs out),
fills a new generation of tables from the whole log, and then, in one transaction, applies what
was appended meanwhile, points the projections and the SQL views at the new tables, and says
what changed. Only after that commits are the old tables dropped. Readers see the old views or
the new, never half-built ones; a replay that dies leaves the old views as they were, and the
next one drops what it left.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa

from tracker.errors import StorageError, TrackerError
from tracker.eventstore import EventStore
from tracker.owners import process_owner
from tracker.projection import (
    ANALYSE_AFTER,
    Analyser,
    Progress,
    Projector,
    Views,
    analyse,
    apply_batch,
    check_versions,
    create_tables,
    decoded,
    drop_generation,
    ensure_rows,
    generations_present,
    handled,
    limit_lock_wait,
    lock_rows,
    now,
    point_sql_views,
    rebuilding,
    tables_of,
    writing,
)
from tracker.records import RecordedEvent
from tracker.schema import projections

# Events per transaction while filling tables nobody reads yet: bigger steps than catch-up.
REPLAY_BATCH = 5_000
# A replay renews its lease with every batch; one that stops renewing (it died) loses it then.
LEASE = timedelta(minutes=2)


class ReplayBusy(TrackerError):
    """Another replay is rebuilding these projections right now."""


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
    analyse_after: int = ANALYSE_AFTER,
) -> ReplayReport:
    """Rebuild the projections from the whole log into fresh tables, then swap them in. On
    PostgreSQL the tables are analysed as they fill (after `analyse_after` events, then each
    time they have doubled) and once full."""
    engine = store.engine
    started = time.monotonic()
    owner = process_owner()
    names = [projector.name for projector in projectors]
    generations = _lease(store, projectors, owner)
    try:
        with writing(engine) as connection:
            for projector in projectors:
                create_tables(connection, projector, generations[projector.name])
        analyser = Analyser(engine, analyse_after)
        position = _fill(store, projectors, generations, owner, progress, batch_size, analyser)
        analyse(store.engine, projectors, generations)
        head, changes = _swap(store, projectors, generations, owner, position, progress)
    except BaseException:
        _discard(store, projectors, generations, owner)
        raise
    for projector in projectors:
        # The generation replaced, and any that a replay which died before us left behind.
        with engine.connect() as connection:
            stale = generations_present(connection, projector) - {generations[projector.name]}
        for generation in sorted(stale):
            drop_generation(engine, projector, generation)
    return ReplayReport(head, head, time.monotonic() - started, tuple(names), tuple(changes))


def _lease(store: EventStore, projectors: Sequence[Projector], owner: str) -> dict[str, int]:
    """Take the projections for this replay and give each a new generation number."""
    names = [projector.name for projector in projectors]
    with writing(store.engine) as connection:
        ensure_rows(connection, names)
        rows = lock_rows(connection, names)
        check_versions(rows, projectors)
        moment = now()
        busy = [row for row in rows.values() if rebuilding(row, moment)]
        if busy:
            raise ReplayBusy(
                f"the {busy[0].name} views are being rebuilt by another replay "
                f"({busy[0].rebuilding_by}); try again when it is done"
            )
        generations = {name: row.next_generation for name, row in rows.items()}
        for name, generation in generations.items():
            connection.execute(
                sa.update(projections)
                .where(projections.c.name == name)
                .values(
                    next_generation=generation + 1,
                    rebuilding_by=owner,
                    rebuilding_until=moment + LEASE,
                )
            )
    return generations


def _renew(connection: sa.Connection, names: Sequence[str], owner: str) -> None:
    renewed = connection.execute(
        sa.update(projections)
        .where(projections.c.name.in_(names), projections.c.rebuilding_by == owner)
        .values(rebuilding_until=now() + LEASE)
    ).rowcount
    if renewed != len(names):
        raise StorageError(
            "this replay stalled so long that its lease ran out (another replay may have "
            "taken over); nothing was swapped in: run it again"
        )


def _fill(
    store: EventStore,
    projectors: Sequence[Projector],
    generations: Mapping[str, int],
    owner: str,
    progress: Progress | None,
    batch_size: int,
    analyser: Analyser,
) -> int:
    """Apply the log as it stands now to the new tables, a batch per transaction."""
    head = store.head_position()
    names = [projector.name for projector in projectors]
    after = dict.fromkeys(names, 0)
    position = 0
    events = store.read_all(
        0, until_position=head, event_types=handled(projectors), batch_size=batch_size
    )
    for chunk in _chunks(events, batch_size):
        with writing(store.engine) as connection:
            _renew(connection, names, owner)
            views = {
                p.name: Views(connection, tables_of(p, generations[p.name])) for p in projectors
            }
            apply_batch(projectors, views, decoded(chunk), after)
        done = chunk[-1].position
        analyser.applied(done, projectors, generations)
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
    owner: str,
    position: int,
    progress: Progress | None,
) -> tuple[int, list[str]]:
    """In one transaction: apply what was appended meanwhile, point readers at the new tables,
    and say what changed."""
    names = [projector.name for projector in projectors]
    with writing(store.engine) as connection:
        limit_lock_wait(connection)
        rows = lock_rows(connection, names)
        check_versions(rows, projectors)  # a newer tracker may have rebuilt meanwhile
        _renew(connection, names, owner)
        head = store.head_in(connection)
        types = handled(projectors)
        new = {p.name: Views(connection, tables_of(p, generations[p.name])) for p in projectors}
        while position < head:
            events, upto = store.read_batch(connection, position, head, REPLAY_BATCH, types)
            apply_batch(projectors, new, decoded(events), dict.fromkeys(names, position))
            if progress is not None:
                progress(upto - position)
            position = upto
        changes: list[str] = []
        moment = now()
        for projector in projectors:
            row = rows[projector.name]
            if row.generation and row.version == projector.version:
                old = Views(connection, tables_of(projector, row.generation))
                changes += projector.changes(old, new[projector.name])
            point_sql_views(connection, projector, generations[projector.name])
            connection.execute(
                sa.update(projections)
                .where(projections.c.name == projector.name)
                .values(
                    generation=generations[projector.name],
                    position=head,
                    version=projector.version,
                    built_at=moment,
                    updated_at=moment,
                    rebuilding_by=None,
                    rebuilding_until=None,
                )
            )
    return head, changes


def _discard(
    store: EventStore, projectors: Sequence[Projector], generations: Mapping[str, int], owner: str
) -> None:
    """Give the lease back and drop this replay's half-built tables, as far as the database
    still lets us (a dead connection leaves them to the next replay)."""
    try:
        with writing(store.engine) as connection:
            connection.execute(
                sa.update(projections)
                .where(projections.c.rebuilding_by == owner)
                .values(rebuilding_by=None, rebuilding_until=None)
            )
    except StorageError:
        pass  # the lease runs out by itself; the tables wait for the next replay
    for projector in projectors:
        with contextlib.suppress(StorageError):
            drop_generation(store.engine, projector, generations[projector.name])


def _chunks(events: Iterator[RecordedEvent], size: int) -> Iterator[list[RecordedEvent]]:
    chunk: list[RecordedEvent] = []
    for event in events:
        chunk.append(event)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
