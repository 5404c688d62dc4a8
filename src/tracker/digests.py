"""Storyline digests: each storyline's figure changes and names, made once after the views
change, so that `tracker story` reads one row for them whatever the storyline's size (issue 5).

They sum every member's rows of the figures and entities views, so the storylines projector
cannot keep them: a projector reads only its own tables, and a replay may rebuild one view
alone. They are made after a catch-up or a replay instead, from views that stand at one
position, with the views' checkpoints locked so that no catch-up moves them meanwhile. A reader
uses a digest only while it holds (tracker.stories): the same generations of the figures and
entities views, and no change to the storyline's members or their articles since the position
it was made at (the storylines projector marks each change). Otherwise the reader sums the
members' rows itself, as it did before digests, and gets the same answer more slowly.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from tracker.eventstore import EventStore
from tracker.projection import Views, lock_rows, tables_of, writing
from tracker.reading import Snapshot
from tracker.stories import DIGESTED, entity_counts, figure_changes
from tracker.views import BY_NAME
from tracker.views.writes import upsert_rows


def refresh(store: EventStore) -> list[str]:
    """Make the digest of every storyline whose digest is missing or no longer holds; the
    storylines digested. Nothing when the views are not built, stand at different positions,
    or were built by another version of tracker: readers then sum the members themselves."""
    digested = []
    # A transaction per storyline: each holds the views' checkpoints (and on SQLite the write
    # lock) only as long as its own sums take.
    for storyline_id in _stale(store):
        with writing(store.engine) as connection:
            snapshot = _locked_views(connection, store)
            if snapshot is None:
                break
            if storyline_id not in _stale_in(snapshot):
                continue  # another process made it meanwhile
            _write(snapshot, storyline_id)
            digested.append(storyline_id)
    return digested


def _stale(store: EventStore) -> list[str]:
    with writing(store.engine) as connection:
        snapshot = _locked_views(connection, store)
        return [] if snapshot is None else _stale_in(snapshot)


def _locked_views(connection: sa.Connection, store: EventStore) -> Snapshot | None:
    rows = lock_rows(connection, DIGESTED)
    projectors = [BY_NAME[name] for name in DIGESTED]
    if any(
        p.name not in rows or not rows[p.name].generation or rows[p.name].version != p.version
        for p in projectors
    ):
        return None
    if len({rows[name].position for name in DIGESTED}) != 1:
        return None
    tables: dict[str, sa.Table] = {}
    for projector in projectors:
        tables.update(tables_of(projector, rows[projector.name].generation))
    return Snapshot(
        Views(connection, tables),
        {name: rows[name].position for name in DIGESTED},
        store.head_in(connection),
        {name: rows[name].generation for name in DIGESTED},
    )


def _stale_in(snapshot: Snapshot) -> list[str]:
    """The storylines shown whose digest is missing or does not hold (as stories._digest
    judges one)."""
    storylines = snapshot.views["storylines"]
    digests = snapshot.views["storyline_digests"]
    query = (
        sa.select(storylines.c.storyline_id)
        .outerjoin(digests, digests.c.storyline_id == storylines.c.storyline_id)
        .where(
            storylines.c.removed_at.is_(None),
            sa.or_(
                digests.c.storyline_id.is_(None),
                digests.c.position < storylines.c.changed_position,
                digests.c.entities_generation != snapshot.generations["entities"],
                digests.c.figures_generation != snapshot.generations["figures"],
            ),
        )
        .order_by(storylines.c.storyline_id)
    )
    return list(snapshot.views.connection.execute(query).scalars())


def _write(snapshot: Snapshot, storyline_id: str) -> None:
    row: dict[str, Any] = {
        "storyline_id": storyline_id,
        "position": snapshot.positions["storylines"],
        "entities_generation": snapshot.generations["entities"],
        "figures_generation": snapshot.generations["figures"],
        "figure_changes": _json(
            [change.as_json_object() for change in figure_changes(snapshot, storyline_id)]
        ),
        "entities": _json(
            [
                {"name": e.name, "kind": e.kind, "count": e.count}
                for e in entity_counts(snapshot, storyline_id)
            ]
        ),
    }
    upsert_rows(
        snapshot.views.connection, snapshot.views["storyline_digests"], [row], ("storyline_id",)
    )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
