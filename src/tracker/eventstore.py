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

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from tracker.database import WRITE, storage_errors
from tracker.encoding import (
    aware_utc,
    chain_row,
    check_name,
    encode_json,
    recorded_event,
    stored_time,
    stored_uuid,
)
from tracker.errors import ConcurrencyError, DuplicateEventError
from tracker.integrity import GENESIS, ChainRow, chain_hash
from tracker.records import AppendResult, NewEvent, RecordedEvent
from tracker.schema import events

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
DEFAULT_BATCH_SIZE = 10_000
# PostgreSQL enforces these column widths, SQLite would not: the store checks them for both.
_MAX_STREAM_ID = cast(sa.String, events.c.stream_id.type).length or 0
_MAX_EVENT_TYPE = cast(sa.String, events.c.event_type.type).length or 0
# Positions are 64-bit integers on both databases.
_MAX_POSITION = 2**63 - 1
# Keeps `IN (...)` lists (SQLite's, and PostgreSQL's lookups by event id) well under every
# database's bound-parameter limit.
_ID_LOOKUP_CHUNK = 500
# An appender stuck behind someone else's lock this long reports it rather than wait forever
# (SQLite's busy timeout does the same there).
DEFAULT_LOCK_TIMEOUT_S = 30.0
# A writer whose clock is this far behind the log's last recorded time is worth a warning.
_CLOCK_SKEW_WARNING = timedelta(seconds=5)


# The statements an append runs, as the driver takes them: an append is a handful of small
# statements, and SQLAlchemy's per-statement work (compiling, expanding IN lists, processing
# each value) cost more than the database's. Values are converted with SQLAlchemy's own
# processors for the dialect (_WriteStatements), so rows are stored exactly as Core would.
_PLACE_COLUMNS = "event_id, position, stream_id, stream_version"
# The columns of a pending row, in the order LogSession holds them.
_INSERT_COLUMNS = (
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
)
_STREAM_ID = _INSERT_COLUMNS.index("stream_id")


def _identity(value: Any) -> Any:
    return value


def _bind_processor(column: sa.Column[Any], dialect: sa.Dialect) -> Callable[[Any], Any]:
    """How SQLAlchemy converts a value of this column for the driver (or not at all)."""
    processor = column.type.dialect_impl(dialect).bind_processor(dialect)
    return cast(Callable[[Any], Any], processor) if processor is not None else _identity


def stream_versions(postgresql: bool, count: int, mark: str = "?") -> str:
    """Each stream's version, null where the log has none, for `count` stream ids passed as
    id_parameters gives them. On PostgreSQL each id is looked up by itself at the end of the
    (stream_id, stream_version) index: with no statistics on stream_id (a log never analysed:
    autovacuum off, or not yet), the planner reckons a list of ids matches thousands of rows
    and scans the whole log for them, half a second at a million events."""
    if postgresql:
        return (
            "SELECT ids.stream_id, (SELECT max(stream_version) FROM events "
            "WHERE events.stream_id = ids.stream_id) FROM unnest(%s::text[]) AS ids(stream_id)"
        )
    return (
        "SELECT stream_id, max(stream_version) FROM events "
        f"WHERE stream_id IN ({', '.join([mark] * count)}) GROUP BY stream_id"
    )


def id_parameters(postgresql: bool, ids: Sequence[str]) -> tuple[Any, ...]:
    """The parameters of a lookup by stream ids: one array on PostgreSQL (its statements
    unnest it), else one parameter per id (SQLite's IN lists)."""
    return (list(ids),) if postgresql else tuple(ids)


class _WriteStatements:
    """The write path's SQL for one dialect, in its parameter style."""

    def __init__(self, dialect: sa.Dialect) -> None:
        self.mark = mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self.insert = (
            f"INSERT INTO events ({', '.join(_INSERT_COLUMNS)}) "
            f"VALUES ({self.marks(len(_INSERT_COLUMNS))})"
        )
        self.tail = "SELECT position, hash, recorded_at FROM events ORDER BY position DESC LIMIT 1"
        # PostgreSQL: one round trip takes the lock and reads the tail.
        self.postgresql = dialect.name == "postgresql"
        self.lock = "SET LOCAL lock_timeout = {}; LOCK TABLE events IN EXCLUSIVE MODE; " + self.tail
        self.stream_version = f"SELECT max(stream_version) FROM events WHERE stream_id = {mark}"
        self.uuid = _bind_processor(events.c.event_id, dialect)
        self.time = _bind_processor(events.c.recorded_at, dialect)
        # The driver's own exception for a broken constraint: the write path runs on the
        # driver's cursor, where SQLAlchemy's wrapping does not reach.
        self.integrity_error: type[Exception] = dialect.loaded_dbapi.IntegrityError

    def marks(self, count: int) -> str:
        return ", ".join([self.mark] * count)

    def recorded_places(self, count: int) -> str:
        return f"SELECT {_PLACE_COLUMNS} FROM events WHERE event_id IN ({self.marks(count)})"

    def stream_versions(self, count: int) -> str:
        return stream_versions(self.postgresql, count, self.mark)

    def query(self, cursor: Any, statement: str, parameters: Sequence[Any]) -> list[Any]:
        """Rows of a lookup by a list of ids (on SQLite its text varies with their number)."""
        if self.postgresql:
            # Planned afresh each time: a prepared statement's generic plan is made once, from
            # the statistics of a table that may since have grown from nothing to millions,
            # and a stale one scans the whole log for each poll.
            cursor.execute(statement, parameters, prepare=False)
        else:
            cursor.execute(statement, parameters)
        return list(cursor.fetchall())


@dataclass(frozen=True)
class _Place:
    """Where an event already stands: as the database or a session's pending rows say."""

    event_id: Any
    position: int
    stream_id: str
    stream_version: int


# The constraint that means "this event id is in the log already", as each database names it.
_EVENT_ID_CONSTRAINTS = ("uq_events_event_id", "events.event_id")
# The constraints that mean "another writer got there first", as each database names them.
_RACE_CONSTRAINTS = (
    "pk_events",
    "uq_events_stream_id_stream_version",
    "uq_events_event_id",
    "events.position",
    "events.stream_id, events.stream_version",
    "events.event_id",
)


def _envelope(dialect: str) -> tuple[sa.ColumnElement[Any], ...]:
    """The columns readers select, in RecordedEvent's order."""
    event_id: sa.ColumnElement[Any] = events.c.event_id
    recorded_at: sa.ColumnElement[Any] = events.c.recorded_at
    if dialect == "sqlite":
        # The stored text, decoded by tracker.encoding: faster than SQLAlchemy's regular
        # expressions, and text edited behind our back becomes a clear error, not a crash.
        event_id = sa.type_coerce(events.c.event_id, sa.String).label("event_id")
        recorded_at = sa.type_coerce(events.c.recorded_at, sa.String).label("recorded_at")
    return (
        events.c.position,
        event_id,
        events.c.stream_id,
        events.c.stream_version,
        events.c.event_type,
        events.c.schema_version,
        events.c.payload,
        events.c.metadata,
        recorded_at,
    )


def _encode(stream_id: str, new_events: Sequence[NewEvent]) -> list[tuple[Any, str, int, str, str]]:
    """Check and encode a batch before any SQL runs, the same way for every database:
    (event id, type, schema version, payload, metadata) for each event."""
    if not new_events:
        raise ValueError("append needs at least one event")
    if len(new_events) > 1 and len({event.event_id for event in new_events}) != len(new_events):
        raise ValueError("a batch cannot hold the same event id twice")
    check_name(stream_id, "stream id", _MAX_STREAM_ID)
    return [
        (
            event.event_id,
            check_name(event.event_type, "event type", _MAX_EVENT_TYPE),
            event.schema_version,
            encode_json(event.payload, f"payload of {event.event_type}"),
            encode_json(event.metadata, f"metadata of {event.event_type}"),
        )
        for event in new_events
    ]


def _tail(last: Sequence[Any] | None) -> tuple[int, str, datetime | None]:
    """The log's last position, hash and time, from its last row (if any)."""
    return (last[0], last[1], stored_time(last[2])) if last else (0, GENESIS, None)


def _now() -> datetime:
    return datetime.now(UTC)


class LogSession:
    """Appends inside one EventStore.session(): the log's lock is held until it ends.

    Holding the lock, the session alone writes the log, so it reads the log's tail once and
    numbers and chains the events of all its appends in memory, then inserts them in one
    statement: when the session ends, or as soon as the caller uses `connection` (so that
    whatever the caller reads or writes there sees them).

    A session checks in one go, at that moment, what a lone append checks at once: that no
    event is in the log already, and that each stream given an expected version was at it.
    So in a session those errors (DuplicateEventError, ConcurrencyError) may come from the
    end of the `with` block, and the whole session is written or none of it.
    """

    def __init__(self, store: EventStore, connection: sa.Connection, deferred: bool) -> None:
        self._store = store
        self._connection = connection
        # The session's own statements go straight to the driver: an append is a handful of
        # small statements, and SQLAlchemy's work per statement costs more than the database's.
        self._cursor = connection.connection.cursor()
        self.deferred = deferred
        self.tail: tuple[int, str, datetime | None] | None = None  # position, hash, time
        self.versions: dict[str, int] = {}  # each stream touched: its version, pending included
        self.assumed: dict[str, int] = {}  # streams taken at the version the caller expected
        self.pending: list[tuple[Any, ...]] = []  # rows as the driver takes them
        self.pending_places: dict[Any, tuple[int, str, int]] = {}  # id: position, stream, version

    @property
    def connection(self) -> sa.Connection:
        self.flush()
        return self._connection

    def append(
        self,
        stream_id: str,
        new_events: Sequence[NewEvent],
        expected_version: int | None = None,
    ) -> AppendResult:
        """As EventStore.append, but committed only when the session ends without error."""
        return self._store._append_in(self, stream_id, new_events, expected_version)

    def flush(self) -> None:
        if not self.pending:
            return
        rows, self.pending = self.pending, []
        ids = list(self.pending_places)
        self.pending_places.clear()
        # The versions the appends took on trust: each stream must have been at the version
        # its caller expected. (A guess too low also trips the unique (stream, version); one
        # too high would leave a gap.)
        assumed, self.assumed = self.assumed, {}
        store, statements, cursor = self._store, self._store._statements, self._cursor
        if assumed and statements.postgresql:
            # The versions are read and the rows sent in one round trip (a pipeline): read
            # first, they are the streams' versions before these rows, and if one is not what
            # its caller expected, the error rolls the rows back with the whole session.
            reader = cursor.connection.cursor()
            try:
                with cursor.connection.pipeline():
                    pending = store._send_stream_versions(reader, list(assumed))
                    cursor.executemany(statements.insert, rows)
                actual = pending()
            except statements.integrity_error as error:
                raise self._refusal(error, rows[0][_STREAM_ID], ids, assumed) from None
            finally:
                reader.close()
            _check_versions(assumed, actual)
            return
        if assumed:
            _check_versions(assumed, store._stream_versions(cursor, list(assumed)))
        try:
            cursor.executemany(statements.insert, rows)
        except statements.integrity_error as error:
            raise self._refusal(error, rows[0][_STREAM_ID], ids, assumed) from None

    def _refusal(
        self, error: Exception, stream_id: str, ids: list[Any], assumed: dict[str, int]
    ) -> Exception:
        """Why the database refused the rows, as our own error. It asks on a connection of its
        own: on PostgreSQL this transaction is over."""
        if self.deferred:
            with self._store.engine.connect() as connection:
                cursor = connection.connection.cursor()
                _check_versions(assumed, self._store._stream_versions(cursor, list(assumed)))
                if any(name in str(error) for name in _EVENT_ID_CONSTRAINTS):
                    # The unique event id is the check that every event of a session is new.
                    recorded = self._store._recorded_places(cursor, ids)
                    known = sorted(str(event_id) for event_id in recorded)
                    return DuplicateEventError(stream_id, known)
        if not any(name in str(error) for name in _RACE_CONSTRAINTS):
            return error
        # Only reachable by a writer that ignored the lock.
        return ConcurrencyError(stream_id, None, None)


def _check_versions(expected: dict[str, int], actual: dict[str, int]) -> None:
    for stream_id, version in expected.items():
        if actual.get(stream_id, 0) != version:
            raise ConcurrencyError(stream_id, version, actual.get(stream_id, 0))


class EventStore:
    """The log on one database. Safe to share between threads; processes each open their own."""

    def __init__(
        self, engine: Engine, clock: Clock = _now, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._lock_timeout_ms = int(lock_timeout_s * 1000)
        self._envelope = _envelope(engine.dialect.name)
        self._statements = _WriteStatements(engine.dialect)

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
        events); None skips the check. A batch whose events are all in this stream already is a
        retry: nothing is written, and their positions and the version the batch reached are
        reported. ValueError for a batch that could never be stored.
        """
        with self._session(deferred=False) as session:
            return session.append(stream_id, new_events, expected_version)

    def session(self) -> AbstractContextManager[LogSession]:
        """One write transaction holding the log's lock, for several appends at once.

        Everything done in it (appends to any streams, and the caller's own bookkeeping through
        `session.connection`) commits together, or not at all if anything raises.
        """
        return self._session(deferred=True)

    @contextmanager
    def _session(self, deferred: bool) -> Iterator[LogSession]:
        with storage_errors(self._engine), self._engine.connect() as connection:
            connection = connection.execution_options(**WRITE)
            with connection.begin():
                session = LogSession(self, connection, deferred)
                if self._statements.postgresql:
                    cursor = session._cursor
                    cursor.execute(self._statements.lock.format(self._lock_timeout_ms))
                    while cursor.nextset():
                        pass  # to the tail's result
                    session.tail = _tail(cursor.fetchone())
                yield session
                session.flush()

    def _append_in(
        self,
        session: LogSession,
        stream_id: str,
        new_events: Sequence[NewEvent],
        expected_version: int | None,
    ) -> AppendResult:
        encoded = _encode(stream_id, new_events)
        cursor = session._cursor
        # A lone append checks the log at once; a session's appends are checked together
        # when it flushes (LogSession._check).
        ids = [event.event_id for event in new_events]
        recorded = {} if session.deferred else self._recorded_places(cursor, ids)
        for event_id in ids:
            place = session.pending_places.get(event_id)
            if place is not None:
                recorded[event_id] = _Place(event_id, *place)
        if recorded:
            return self._retry(stream_id, ids, recorded)
        current_version = session.versions.get(stream_id)
        if current_version is None:
            if session.deferred and expected_version is not None:
                current_version = session.assumed[stream_id] = expected_version
            else:
                current_version = self._stream_version(cursor, stream_id)
        if expected_version is not None and expected_version != current_version:
            raise ConcurrencyError(stream_id, expected_version, current_version)

        if session.tail is None:
            cursor.execute(self._statements.tail)
            session.tail = _tail(cursor.fetchone())
        position, previous_hash, last_recorded = session.tail
        recorded_at = aware_utc(self._clock())
        if last_recorded is not None:
            # Recorded times never go backwards in position order, even across machines whose
            # clocks disagree, so "the log as of time T" is always a prefix of the log.
            if last_recorded - recorded_at > _CLOCK_SKEW_WARNING:
                log.warning(
                    "this machine's clock (%s) is behind the log's last recorded time (%s); "
                    "recording at the later time",
                    recorded_at.isoformat(),
                    last_recorded.isoformat(),
                )
            recorded_at = max(recorded_at, last_recorded)
        stored_at = self._statements.time(recorded_at)
        first_position = position + 1
        version = current_version
        for event_id, event_type, schema_version, payload, metadata in encoded:
            position += 1
            version += 1
            chained = ChainRow(
                position,
                str(event_id),
                stream_id,
                version,
                event_type,
                schema_version,
                payload,
                metadata,
                recorded_at,
                "",
            )
            previous_hash = chain_hash(previous_hash, chained)
            session.pending.append(
                (
                    position,
                    self._statements.uuid(event_id),
                    stream_id,
                    version,
                    event_type,
                    schema_version,
                    payload,
                    metadata,
                    stored_at,
                    previous_hash,
                )
            )
            session.pending_places[event_id] = (position, stream_id, version)
        session.tail = (position, previous_hash, recorded_at)
        session.versions[stream_id] = version
        return AppendResult(stream_id, tuple(range(first_position, position + 1)), version)

    @staticmethod
    def _retry(stream_id: str, ids: list[Any], recorded: dict[Any, _Place]) -> AppendResult:
        """A batch already (partly) in the log: report it if it is a plain retry, else refuse."""
        missing = [event_id for event_id in ids if event_id not in recorded]
        elsewhere = sorted(
            str(place.event_id) for place in recorded.values() if place.stream_id != stream_id
        )
        if missing or elsewhere:
            raise DuplicateEventError(
                stream_id,
                sorted(str(event_id) for event_id in recorded),
                other_stream=next(
                    (p.stream_id for p in recorded.values() if p.stream_id != stream_id), None
                ),
            )
        places = [recorded[event_id] for event_id in ids]
        return AppendResult(
            stream_id,
            tuple(place.position for place in places),
            max(place.stream_version for place in places),
            already_recorded=True,
        )

    def _recorded_places(self, cursor: Any, ids: list[Any]) -> dict[Any, _Place]:
        """Where each of these event ids already is in the log, if anywhere (a driver cursor)."""
        statements = self._statements
        found: dict[Any, _Place] = {}
        for start in range(0, len(ids), _ID_LOOKUP_CHUNK):
            chunk = ids[start : start + _ID_LOOKUP_CHUNK]
            statement = statements.recorded_places(len(chunk))
            for event_id, *place in statements.query(
                cursor, statement, list(map(statements.uuid, chunk))
            ):
                found[stored_uuid(event_id)] = _Place(stored_uuid(event_id), *place)
        return found

    def _stream_versions(self, cursor: Any, stream_ids: list[str]) -> dict[str, int]:
        """The versions of the streams that have events, by stream (a driver cursor)."""
        statements = self._statements
        found: dict[str, int] = {}
        for start in range(0, len(stream_ids), _ID_LOOKUP_CHUNK):
            chunk = stream_ids[start : start + _ID_LOOKUP_CHUNK]
            statement = statements.stream_versions(len(chunk))
            parameters = id_parameters(statements.postgresql, chunk)
            rows = statements.query(cursor, statement, parameters)
            found.update((stream_id, version) for stream_id, version in rows if version is not None)
        return found

    def _send_stream_versions(
        self, cursor: Any, stream_ids: list[str]
    ) -> Callable[[], dict[str, int]]:
        """PostgreSQL: send the look-up of the streams' versions (in a pipeline, its answer
        comes later); returns what reads the answer once it has."""
        statements = self._statements
        statement = statements.stream_versions(len(stream_ids))
        cursor.execute(statement, id_parameters(True, stream_ids), prepare=False)

        def answer() -> dict[str, int]:
            return {stream: version for stream, version in cursor.fetchall() if version is not None}

        return answer

    def _stream_version(self, cursor: Any, stream_id: str) -> int:
        cursor.execute(self._statements.stream_version, (stream_id,))
        version = cursor.fetchone()[0]
        return int(version) if version is not None else 0

    # -- reading -------------------------------------------------------------------------------

    def head_position(self) -> int:
        """The position of the last event in the log, 0 when it is empty."""
        with storage_errors(self._engine), self._engine.connect() as connection:
            return connection.execute(sa.select(sa.func.max(events.c.position))).scalar() or 0

    def stream_version(self, stream_id: str) -> int:
        with storage_errors(self._engine), self._engine.connect() as connection:
            return self._stream_version(connection.connection.cursor(), stream_id)

    def stream_ids(self, prefix: str) -> list[str]:
        """The ids of the streams whose id starts with `prefix` (case counts).

        Asked at every poll round, so it must not read the log: the prefix is a range of an
        index ordered byte by byte, the (stream_id, stream_version) index on SQLite and the
        index of stream heads on PostgreSQL (schema.stream_heads). Only a prefix ending in the
        last code points (none of ours) falls back to a LIKE, which reads the log."""
        if not prefix:
            raise ValueError("a prefix is needed")
        stream_id = events.c.stream_id
        matches = stream_id.startswith(prefix, autoescape=True)
        if prefix[-1] < "\ud7ff":
            end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            if self._engine.dialect.name == "postgresql":
                # The byte-order operators of text_pattern_ops, which that index serves.
                matches = sa.and_(stream_id.op("~>=~")(prefix), stream_id.op("~<~")(end))
            else:
                matches = sa.and_(stream_id >= prefix, stream_id < end)
        query = (
            sa.select(stream_id)
            .where(matches)
            .where(events.c.stream_version == 1)
            .order_by(stream_id)
        )
        with storage_errors(self._engine), self._engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def last_event(self, stream_id: str, event_types: Sequence[str] = ()) -> RecordedEvent | None:
        """The newest event of one stream (of one of `event_types`, if given), if it has any."""
        query = (
            sa.select(*self._envelope)
            .where(events.c.stream_id == stream_id)
            .where(events.c.event_type.in_(event_types) if event_types else sa.true())
            .order_by(events.c.stream_version.desc())
            .limit(1)
        )
        with storage_errors(self._engine), self._engine.connect() as connection:
            row = connection.execute(query).first()
        return recorded_event(row) if row is not None else None

    def read_all(
        self,
        after_position: int = 0,
        *,
        until_position: int | None = None,
        until_time: datetime | None = None,
        stream_id: str | None = None,
        event_type: str | None = None,
        event_types: Sequence[str] | None = None,
        limit: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> Iterator[RecordedEvent]:
        """Events after `after_position` in position order, fetched `batch_size` at a time.

        `until_position` and `until_time` are inclusive bounds. Each batch is its own short
        read, so a long replay holds no transaction open between batches.
        """
        if after_position >= _MAX_POSITION or (limit is not None and limit <= 0):
            return
        if limit is not None:
            limit = min(limit, _MAX_POSITION)
        conditions = []
        if until_position is not None:
            conditions.append(events.c.position <= until_position)
        if until_time is not None:
            conditions.append(events.c.recorded_at <= aware_utc(until_time))
        if stream_id is not None:
            conditions.append(events.c.stream_id == stream_id)
        if event_type is not None:
            conditions.append(events.c.event_type == event_type)
        if event_types is not None:
            conditions.append(events.c.event_type.in_(sorted(set(event_types))))
        query = sa.select(*self._envelope).where(*conditions).order_by(events.c.position)
        for rows in self._batches(
            query, events.c.position, after_position, batch_size, limit, until_position
        ):
            for row in rows:
                yield recorded_event(row)

    def read_batch(
        self,
        connection: sa.Connection,
        after_position: int,
        until_position: int,
        limit: int,
        event_types: Sequence[str] | None = None,
    ) -> tuple[list[RecordedEvent], int]:
        """The events (of `event_types`, if given) in the next `limit` positions after
        `after_position`, up to `until_position`, in order, read on the caller's connection
        (inside the caller's transaction); and the last position the batch covers, from which
        the next one starts. Fewer than `limit` events does not mean the end: a window may hold
        events of other types."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        end = min(after_position + limit, until_position)
        query = (
            sa.select(*self._envelope)
            .where(events.c.position > after_position, events.c.position <= end)
            .order_by(events.c.position)
        )
        if event_types is not None:
            query = query.where(events.c.event_type.in_(sorted(set(event_types))))
        return [recorded_event(row) for row in connection.execute(query)], end

    def position_at(self, moment: datetime) -> int:
        """The last position recorded at or before `moment` (0 if none): recorded times never
        go backwards in position order, so the log as of a time is the log up to this."""
        query = sa.select(sa.func.max(events.c.position)).where(
            events.c.recorded_at <= aware_utc(moment)
        )
        with storage_errors(self._engine), self._engine.connect() as connection:
            return connection.execute(query).scalar() or 0

    def head_in(self, connection: sa.Connection) -> int:
        """The last position, read on the caller's connection."""
        return connection.execute(sa.select(sa.func.max(events.c.position))).scalar() or 0

    def read_streams(
        self, stream_ids: Sequence[str], until_position: int | None = None
    ) -> list[RecordedEvent]:
        """Every event of these streams (up to `until_position`), in position order."""
        found: list[RecordedEvent] = []
        with storage_errors(self._engine), self._engine.connect() as connection:
            for start in range(0, len(stream_ids), _ID_LOOKUP_CHUNK):
                chunk = list(stream_ids[start : start + _ID_LOOKUP_CHUNK])
                query = self._streams_query(chunk, until_position)
                found.extend(recorded_event(row) for row in connection.execute(query))
        return sorted(found, key=lambda event: event.position)

    def _streams_query(self, stream_ids: list[str], until_position: int | None) -> sa.Select[Any]:
        bound = events.c.position <= until_position if until_position is not None else sa.true()
        if self._engine.dialect.name != "postgresql":
            return sa.select(*self._envelope).where(events.c.stream_id.in_(stream_ids), bound)
        # Each id looked up by itself through the (stream_id, stream_version) index: with no
        # statistics on the log (autovacuum not run yet, or off) PostgreSQL reckons an IN list
        # of 200 ids matches the whole log and scans it, at every poll round (the feeds'
        # definitions), as it did the poll's look-ups (stream_versions).
        wanted = sa.func.unnest(sa.literal(stream_ids, postgresql.ARRAY(sa.Text)))
        ids = wanted.table_valued("stream_id").render_derived(name="ids")
        each = (
            sa.select(*self._envelope)
            .where(events.c.stream_id == ids.c.stream_id, bound)
            .order_by(events.c.stream_version)  # kept a subquery: a join would scan the log
            .lateral("each_stream")
        )
        return sa.select(*each.c).select_from(ids).join(each, sa.true())

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
                yield recorded_event(row)

    def read_chain(
        self, after: int = 0, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Iterator[ChainRow]:
        """Every row after a position exactly as stored, in position order, for checking the
        hash chain."""
        query = sa.select(*self._envelope, events.c.hash).order_by(events.c.position)
        for rows in self._batches(query, events.c.position, after, batch_size, None):
            for row in rows:
                yield chain_row(row)

    def _batches(
        self,
        query: sa.Select[Any],
        key: sa.Column[int],
        after: int,
        batch_size: int,
        limit: int | None,
        until: int | None = None,
    ) -> Iterator[Sequence[sa.Row[Any]]]:
        # Keyset pagination: each batch starts after the last key seen, so it costs the same at
        # the end of a million events as at the start, and no cursor stays open in between.
        # With an upper bound (`until`, a position), each batch reads a window of at most
        # `batch_size` positions: without statistics on the log (autovacuum off, or not yet
        # run) PostgreSQL reckons a range between two positions holds a few thousand rows
        # whatever its bounds, and for each batch scanned and sorted all the rest of the log.
        # The bound is taken no further than the head as the read starts: positions below it
        # are all committed (appends take them in order under the log's lock), so a window
        # short of events is short of the types asked for, never of events still to come.
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        remaining = limit
        with storage_errors(self._engine), self._engine.connect() as connection:
            if until is not None:
                until = min(until, self.head_in(connection))
                connection.rollback()
            while remaining is None or remaining > 0:
                if until is not None and after >= until:
                    return
                size = batch_size if remaining is None else min(batch_size, remaining)
                batch = query.where(key > after)
                if until is not None:
                    end = min(after + batch_size, until)
                    batch = batch.where(key <= end)
                rows = connection.execute(batch.limit(size)).all()
                connection.rollback()
                if rows:
                    yield rows
                if until is not None:
                    after = end if len(rows) < size else getattr(rows[-1], key.name)
                elif len(rows) < size:
                    return
                else:
                    after = getattr(rows[-1], key.name)
                if remaining is not None:
                    remaining -= len(rows)
