"""Storyline digests: each storyline's figure changes and names, made once after the views
change, so that `tracker story` reads one row for them whatever the storyline's size (issue 5).

They sum every member's rows of the figures and entities views, so the storylines projector
cannot keep them: a projector reads only its own tables, and a replay may rebuild one view
alone. They are made after a catch-up or a replay instead (by the daemon, every
DIGEST_EVERY_S): summed in one read snapshot of views that stand at one position, which
blocks no writer, then written in one short transaction. A reader uses a digest only while it holds
(tracker.stories): made by this DIGEST_VERSION, from the current generations of the figures and
entities views, with no change to the storyline's members or their articles since the position
it was made at (the storylines projector marks each). Otherwise the reader sums the members'
rows itself, as it did before digests, and gets the same answer more slowly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from tracker.errors import SchemaError, StorageError
from tracker.eventstore import EventStore
from tracker.projection import writing
from tracker.reading import NotBuilt, Snapshot, missing_table, read_views
from tracker.stories import (
    DIGEST_VERSION,
    DIGESTED,
    digest_holds,
    entity_counts,
    figure_changes,
    same_position,
)
from tracker.views import BY_NAME

_PROJECTORS = [BY_NAME[name] for name in DIGESTED]
# How often the daemon digests what changed: its catch-ups follow every poll, and summing a
# large storyline after each would cost more than the polls. Reads meanwhile sum the members.
DIGEST_EVERY_S = 30.0


def refresh(store: EventStore, stopping: Callable[[], bool] | None = None) -> list[str]:
    """Make the digest of every storyline whose digest is missing or no longer holds; the
    storylines digested. Nothing when the views are not built, stand at different positions,
    or were built by another version of tracker. `stopping` is asked before each storyline."""
    try:
        made = read_views(store, _PROJECTORS, partial(_digests, stopping=stopping))
    except (NotBuilt, SchemaError):
        return []
    if made is None:
        return []
    table, rows = made
    _write(store, table, rows)
    return [row["storyline_id"] for row in rows]


def stale(store: EventStore) -> list[str] | None:
    """The storylines whose digest is missing or no longer holds; None if none can be made
    now: the views are not built, stand at different positions or are another version's."""
    try:
        return read_views(store, _PROJECTORS, _stale)
    except (NotBuilt, SchemaError):
        return None


def _stale(snapshot: Snapshot) -> list[str] | None:
    """The storylines shown whose digest is missing or does not hold (stories.digest_holds);
    None if the views stand at different positions. Read whole: a row per storyline."""
    if not same_position(snapshot):
        return None
    storylines = snapshot.views["storylines"]
    digests = snapshot.views["storyline_digests"]
    connection = snapshot.views.connection
    # What digest_holds judges by, not the sums: those are a storyline's whole figures and names.
    judged = sa.select(
        digests.c.storyline_id,
        digests.c.version,
        digests.c.position,
        digests.c.entities_generation,
        digests.c.figures_generation,
    )
    made = {row.storyline_id: row for row in connection.execute(judged)}
    shown = connection.execute(
        sa.select(storylines.c.storyline_id, storylines.c.changed_position)
        .where(storylines.c.removed_at.is_(None))
        .order_by(storylines.c.storyline_id)
    )
    return [
        row.storyline_id
        for row in shown
        if row.storyline_id not in made
        or not digest_holds(snapshot, row.changed_position, made[row.storyline_id])
    ]


def _digests(
    snapshot: Snapshot, stopping: Callable[[], bool] | None
) -> tuple[sa.Table, list[dict[str, Any]]] | None:
    """The digest rows of the storylines that need one, as the snapshot shows them, and the
    table they go in; None if none needs one or can have one now."""
    rows: list[dict[str, Any]] = []
    for storyline_id in _stale(snapshot) or ():
        if stopping is not None and stopping():
            break
        rows.append(_digest(snapshot, storyline_id))
    return (snapshot.views["storyline_digests"], rows) if rows else None


def _digest(snapshot: Snapshot, storyline_id: str) -> dict[str, Any]:
    return {
        "storyline_id": storyline_id,
        "version": DIGEST_VERSION,
        "position": snapshot.positions["storylines"],
        "entities_generation": snapshot.generations["entities"],
        "figures_generation": snapshot.generations["figures"],
        "figure_changes": _json(
            [c.as_json_object() for c in figure_changes(snapshot, storyline_id)]
        ),
        "entities": _json([e.as_json_object() for e in entity_counts(snapshot, storyline_id)]),
    }


def _write(store: EventStore, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Store the digests, each unless one made from later views is there already (several
    daemons digest at once)."""
    try:
        with writing(store.engine) as connection:
            dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
            statement = dialect.insert(table)
            kept = {name: statement.excluded[name] for name in rows[0] if name != "storyline_id"}
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=["storyline_id"],
                    set_=kept,
                    where=table.c.position <= statement.excluded.position,
                ),
                rows,
            )
    except StorageError as error:
        if not missing_table(error):
            raise  # else a replay swapped the views and dropped these tables meanwhile


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
