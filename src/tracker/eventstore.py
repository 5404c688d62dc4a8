"""The append-only event log: appending with optimistic concurrency, and streaming reads.

Every append takes the log's write lock first: `LOCK TABLE events IN EXCLUSIVE MODE` on
PostgreSQL (readers are not blocked), BEGIN IMMEDIATE on SQLite. Under that lock the store reads
the last event and assigns the next positions itself, so positions are gapless and transactions
commit in position order: a follower reading "position > last seen" can never skip an event
that commits later with a lower position (issue #2, point 6). Even a writer that bypassed the
lock could not break this: it would compute a position already taken and fail on the primary
key. The same lock makes the hash chain and the idempotency check race-free.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from tracker.database import WRITE, storage_errors
from tracker.errors import ConcurrencyError, CorruptEventError, DuplicateEventError
from tracker.integrity import GENESIS, ChainRow, chain_hash
from tracker.records import AppendResult, NewEvent, RecordedEvent
from tracker.schema import events

Clock = Callable[[], datetime]
DEFAULT_BATCH_SIZE = 10_000
# The column widths in schema.py: PostgreSQL enforces them, SQLite would not.
_MAX_STREAM_ID = 200
_MAX_EVENT_TYPE = 100
# Keeps `IN (...)` lists well under every database's bound-parameter limit.
_ID_LOOKUP_CHUNK = 500


def _envelope(dialect: str) -> tuple[sa.ColumnElement[Any], ...]:
    """The columns readers select, in RecordedEvent's order."""
    recorded_at: sa.ColumnElement[Any] = events.c.recorded_at
    if dialect == "sqlite":
        # SQLAlchemy parses SQLite's datetime text with a regular expression; taking the text
        # and using datetime.fromisoformat (in C) reads the log markedly faster.
        recorded_at = sa.type_coerce(events.c.recorded_at, sa.String).label("recorded_at")
    return (
        events.c.position,
        events.c.event_id,
        events.c.stream_id,
        events.c.stream_version,
        events.c.event_type,
        events.c.schema_version,
        events.c.payload,
        events.c.metadata,
        recorded_at,
    )


def encode_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _utc(moment: datetime | str) -> datetime:
    """The recorded time as an aware UTC datetime; ValueError if the stored text is not one."""
    # SQLite holds the naive UTC time as text; PostgreSQL hands back an aware one in session time.
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


class EventStore:
    """The log on one database. Safe to share between threads; processes each open their own."""

    def __init__(self, engine: Engine, clock: Clock = _now) -> None:
        self._engine = engine
        self._clock = clock
        self._envelope = _envelope(engine.dialect.name)

    @property
    def engine(self) -> Engine:
        return self._engine

    # -- writing -------------------------------------------------------------------------------

    def append(
        self,
        stream_id: str,
        new_events: Sequence[NewEvent],
        expected_version: int | None = None,
    ) -> AppendResult:
        """Append a batch to one stream, all or nothing.

        `expected_version` is the stream's version the caller last saw (0 for a stream with no
        events); None skips the check. A batch whose events are all in the log already is a
        retry: nothing is written and their existing positions are reported.
        """
        if not new_events:
            raise ValueError("append needs at least one event")
        if not 0 < len(stream_id) <= _MAX_STREAM_ID:
            raise ValueError(f"a stream id has 1 to {_MAX_STREAM_ID} characters: {stream_id!r}")
        for new_event in new_events:
            if not 0 < len(new_event.event_type) <= _MAX_EVENT_TYPE:
                raise ValueError(
                    f"an event type has 1 to {_MAX_EVENT_TYPE} characters: {new_event.event_type!r}"
                )
        ids = [event.event_id for event in new_events]
        if len(set(ids)) != len(ids):
            raise ValueError("a batch cannot hold the same event id twice")
        with storage_errors(self._engine), self._engine.connect() as connection:
            connection = connection.execution_options(**WRITE)
            try:
                with connection.begin():
                    return self._append_locked(connection, stream_id, new_events, expected_version)
            except IntegrityError:
                # Only reachable if another writer ignored the lock; report what it did.
                actual = self._stream_version(connection, stream_id)
                connection.rollback()
                raise ConcurrencyError(
                    stream_id, expected_version if expected_version is not None else -1, actual
                ) from None

    def _append_locked(
        self,
        connection: sa.Connection,
        stream_id: str,
        new_events: Sequence[NewEvent],
        expected_version: int | None,
    ) -> AppendResult:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("LOCK TABLE events IN EXCLUSIVE MODE")
        recorded = self._positions_of(connection, [event.event_id for event in new_events])
        current_version = self._stream_version(connection, stream_id)
        if recorded:
            if len(recorded) < len(new_events):
                raise DuplicateEventError(stream_id, sorted(str(i) for i in recorded))
            return AppendResult(
                stream_id,
                tuple(recorded[event.event_id] for event in new_events),
                current_version,
                already_recorded=True,
            )
        if expected_version is not None and expected_version != current_version:
            raise ConcurrencyError(stream_id, expected_version, current_version)

        last = connection.execute(
            sa.select(events.c.position, events.c.hash, events.c.recorded_at)
            .order_by(events.c.position.desc())
            .limit(1)
        ).first()
        position, previous_hash = (last.position, last.hash) if last else (0, GENESIS)
        # Recorded times never go backwards in position order, even across machines whose
        # clocks disagree, so "the log as of time T" is always a prefix of the log.
        recorded_at = self._clock()
        if last is not None:
            recorded_at = max(recorded_at, _utc(last.recorded_at))
        first_position = position + 1
        rows = []
        for version, new_event in enumerate(new_events, start=current_version + 1):
            position += 1
            row = ChainRow(
                position=position,
                event_id=str(new_event.event_id),
                stream_id=stream_id,
                stream_version=version,
                event_type=new_event.event_type,
                schema_version=new_event.schema_version,
                payload=encode_json(new_event.payload),
                metadata=encode_json(new_event.metadata),
                recorded_at=recorded_at,
                hash="",
            )
            previous_hash = chain_hash(previous_hash, row)
            rows.append({**row._asdict(), "event_id": new_event.event_id, "hash": previous_hash})
        connection.execute(sa.insert(events), rows)
        return AppendResult(
            stream_id,
            tuple(range(first_position, position + 1)),
            current_version + len(rows),
        )

    @staticmethod
    def _positions_of(connection: sa.Connection, ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        found: dict[uuid.UUID, int] = {}
        for start in range(0, len(ids), _ID_LOOKUP_CHUNK):
            chunk = ids[start : start + _ID_LOOKUP_CHUNK]
            query = sa.select(events.c.event_id, events.c.position).where(
                events.c.event_id.in_(chunk)
            )
            found.update({row.event_id: row.position for row in connection.execute(query)})
        return found

    @staticmethod
    def _stream_version(connection: sa.Connection, stream_id: str) -> int:
        query = sa.select(sa.func.max(events.c.stream_version)).where(
            events.c.stream_id == stream_id
        )
        return connection.execute(query).scalar() or 0

    # -- reading -------------------------------------------------------------------------------

    def head_position(self) -> int:
        """The position of the last event in the log, 0 when it is empty."""
        with storage_errors(self._engine), self._engine.connect() as connection:
            return connection.execute(sa.select(sa.func.max(events.c.position))).scalar() or 0

    def stream_version(self, stream_id: str) -> int:
        with storage_errors(self._engine), self._engine.connect() as connection:
            return self._stream_version(connection, stream_id)

    def read_all(
        self,
        after_position: int = 0,
        *,
        until_position: int | None = None,
        until_time: datetime | None = None,
        stream_id: str | None = None,
        event_type: str | None = None,
        limit: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> Iterator[RecordedEvent]:
        """Events after `after_position` in position order, fetched `batch_size` at a time.

        `until_position` and `until_time` are inclusive bounds. Each batch is its own short
        read, so a long replay holds no transaction open between batches.
        """
        conditions = []
        if until_position is not None:
            conditions.append(events.c.position <= until_position)
        if until_time is not None:
            conditions.append(events.c.recorded_at <= _utc(until_time))
        if stream_id is not None:
            conditions.append(events.c.stream_id == stream_id)
        if event_type is not None:
            conditions.append(events.c.event_type == event_type)
        query = sa.select(*self._envelope).where(*conditions).order_by(events.c.position)
        for rows in self._batches(query, events.c.position, after_position, batch_size, limit):
            for row in rows:
                yield _recorded(row)

    def read_stream(
        self, stream_id: str, from_version: int = 1, *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Iterator[RecordedEvent]:
        """One stream's events from `from_version` on, in version order."""
        query = (
            sa.select(*self._envelope)
            .where(events.c.stream_id == stream_id)
            .order_by(events.c.stream_version)
        )
        for rows in self._batches(
            query, events.c.stream_version, from_version - 1, batch_size, None
        ):
            for row in rows:
                yield _recorded(row)

    def read_chain(self, batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[ChainRow]:
        """Every row exactly as stored, in position order, for checking the hash chain."""
        query = sa.select(*self._envelope, events.c.hash).order_by(events.c.position)
        for rows in self._batches(query, events.c.position, 0, batch_size, None):
            for row in rows:
                yield _chain_row(row)

    def _batches(
        self,
        query: sa.Select[Any],
        key: sa.Column[int],
        after: int,
        batch_size: int,
        limit: int | None,
    ) -> Iterator[Sequence[sa.Row[Any]]]:
        # Keyset pagination: each batch starts after the last key seen, so it costs the same at
        # the end of a million events as at the start, and no cursor stays open in between.
        remaining = limit
        with storage_errors(self._engine), self._engine.connect() as connection:
            while remaining is None or remaining > 0:
                size = batch_size if remaining is None else min(batch_size, remaining)
                rows = connection.execute(query.where(key > after).limit(size)).all()
                connection.rollback()
                if not rows:
                    return
                yield rows
                if len(rows) < size:
                    return
                after = getattr(rows[-1], key.name)
                if remaining is not None:
                    remaining -= len(rows)


_decode_json = json.JSONDecoder().decode


def _chain_row(row: Sequence[Any]) -> ChainRow:
    position, event_id, stream_id, version, event_type, schema_version, *rest = row
    payload, metadata, recorded_at, stored_hash = rest
    try:  # noqa: SIM105 -- contextlib.suppress costs more, once per event of the log
        recorded_at = _utc(recorded_at)
    except ValueError:
        pass  # a time that is not one was edited in: hashed as stored, so the chain breaks here
    return ChainRow(
        position,
        str(event_id),
        stream_id,
        version,
        event_type,
        schema_version,
        payload,
        metadata,
        recorded_at,
        stored_hash,
    )


def _recorded(row: Sequence[Any]) -> RecordedEvent:
    # Unpacking by position: attribute access on a Row costs more than decoding the payload.
    (
        position,
        event_id,
        stream_id,
        stream_version,
        event_type,
        schema_version,
        payload,
        metadata,
        recorded_at,
    ) = row
    try:
        return RecordedEvent(
            position,
            event_id,
            stream_id,
            stream_version,
            event_type,
            schema_version,
            _decode_json(payload),
            _decode_json(metadata),
            _utc(recorded_at),
        )
    except ValueError as error:  # JSONDecodeError is a ValueError
        raise CorruptEventError(
            f"event at position {position} cannot be read ({error}); "
            "run `tracker verify` to check the log"
        ) from None
