"""The poller's operational tables: feed bookkeeping and the last recorded form of articles.

Written in the same transaction as the events a poll appends (EventStore.session), so the two
never disagree: a crash loses both or neither.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from tracker.database import upsert
from tracker.deciding import KnownArticle, known_from_history
from tracker.encoding import stored_time
from tracker.events.feeds import GONE, HEALTHY
from tracker.eventstore import id_parameters, stream_versions
from tracker.schema import article_state, feed_state

_LOOKUP_CHUNK = 500


@dataclass(frozen=True)
class FeedRow:
    feed_id: str
    url: str
    configured_url: str
    state: str = HEALTHY
    etag: str | None = None
    last_modified: str | None = None
    last_checked_at: datetime | None = None
    last_success_at: datetime | None = None
    next_due_at: datetime | None = None
    failures: int = 0
    last_error: str | None = None
    article_count: int = 0
    # The publisher's own lower bound on the interval (<ttl>, Cache-Control max-age), kept
    # across 304s, which carry no body and often no Cache-Control.
    min_interval_s: int | None = None
    claimed_by: str | None = None
    claimed_until: datetime | None = None

    @classmethod
    def new(cls, feed_id: str, url: str) -> FeedRow:
        return cls(feed_id, url, url)

    def for_config(self, url: str) -> FeedRow:
        """This state, for a feed that feeds.yaml now gives `url`. Another URL than before
        means starting over from it: validators and backoff belonged to the old one. The health
        state stays, so the history shows the feed recovering (or not) at its new address."""
        if url == self.configured_url:
            return self
        return replace(
            self,
            url=url,
            configured_url=url,
            etag=None,
            last_modified=None,
            failures=0,
            next_due_at=None,
            min_interval_s=None,
        )


_TIMES = ("last_checked_at", "last_success_at", "next_due_at", "claimed_until")
_FEED_COLUMNS = tuple(column.name for column in feed_state.c)
_ARTICLE_COLUMNS = tuple(column.name for column in article_state.c)


def _as_is(value: Any) -> Any:
    return value


class _Statements:
    """The statements a poll runs, for one dialect in its parameter style, run on the driver:
    a poll is a handful of small statements, and SQLAlchemy's work per statement (building,
    caching, processing each value) cost several times the database's. Values are converted
    with SQLAlchemy's own processors for the dialect, so rows are stored exactly as Core
    would store them."""

    def __init__(self, dialect: sa.Dialect) -> None:
        self._mark = mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self.postgresql = dialect.name == "postgresql"
        self._bind: list[Callable[[Any], Any]] = [
            column.type.dialect_impl(dialect).bind_processor(dialect) or _as_is
            for column in feed_state.c
        ]
        self.time = self._bind[_FEED_COLUMNS.index("claimed_until")]
        columns = ", ".join(_FEED_COLUMNS)
        self.select_feed = f"SELECT {columns} FROM feed_state WHERE feed_id = {mark}"
        self.insert_feed = (
            f"INSERT INTO feed_state ({columns}) VALUES ({self.marks(len(_FEED_COLUMNS))}) "
            "ON CONFLICT (feed_id) DO NOTHING"
        )
        self.claim = (
            f"UPDATE feed_state SET claimed_by = {mark}, claimed_until = {mark} "
            f"WHERE feed_id = {mark} AND (claimed_until IS NULL OR claimed_until < {mark} "
            f"OR claimed_by = {mark})"
        )
        self.claim_if_due = (
            f"{self.claim} AND (configured_url != {mark} OR (state != {mark} AND "
            f"(next_due_at IS NULL OR next_due_at <= {mark})))"
        )
        settings = ", ".join(f"{name} = {mark}" for name in _FEED_COLUMNS[1:])
        self.save_claimed = (
            f"UPDATE feed_state SET {settings} WHERE feed_id = {mark} AND claimed_by = {mark}"
        )
        self.save_articles = (
            f"INSERT INTO article_state ({', '.join(_ARTICLE_COLUMNS)}) "
            f"VALUES ({self.marks(len(_ARTICLE_COLUMNS))}) ON CONFLICT (article_id) DO UPDATE SET "
            + ", ".join(f"{name} = excluded.{name}" for name in _ARTICLE_COLUMNS[1:])
        )

    def marks(self, count: int) -> str:
        return ", ".join([self._mark] * count)

    def feed_values(self, row: FeedRow) -> list[Any]:
        return [
            bind(getattr(row, name)) for bind, name in zip(self._bind, _FEED_COLUMNS, strict=True)
        ]

    def known(self, count: int) -> str:
        return (
            "SELECT article_id, version, fingerprint FROM article_state "
            f"WHERE article_id IN ({self.marks(count)})"
        )

    def logged(self, count: int) -> str:
        """Each id with its stream's version, null where the log has none."""
        return stream_versions(self.postgresql, count, self._mark)

    def histories(self, count: int) -> str:
        """Each stream's events in order. On PostgreSQL each id by itself, for the reason
        eventstore.stream_versions gives."""
        if self.postgresql:
            return (
                "SELECT e.stream_id, e.stream_version, e.event_type, e.payload "
                "FROM unnest(%s::text[]) AS ids(stream_id) CROSS JOIN LATERAL ("
                "SELECT stream_id, stream_version, event_type, payload FROM events "
                "WHERE events.stream_id = ids.stream_id ORDER BY stream_version) AS e "
                "ORDER BY e.stream_id, e.stream_version"
            )
        return (
            "SELECT stream_id, stream_version, event_type, payload FROM events "
            f"WHERE stream_id IN ({self.marks(count)}) ORDER BY stream_id, stream_version"
        )


_STATEMENTS: dict[str, _Statements] = {}


def _statements(connection: sa.Connection) -> _Statements:
    dialect = connection.dialect
    found = _STATEMENTS.get(dialect.name)
    if found is None:
        found = _STATEMENTS[dialect.name] = _Statements(dialect)
    return found


def _lookup(connection: sa.Connection, statement: str, parameters: tuple[Any, ...]) -> list[Any]:
    """The rows of a lookup by a list of ids (on SQLite its text varies with their number)."""
    if connection.dialect.name == "postgresql":
        # Planned afresh each time, as the store's lookups are: psycopg prepares a statement
        # run often, and its generic plan, made while a table was nearly empty, may scan it
        # whole once it is big.
        cursor = connection.connection.cursor()
        try:
            cursor.execute(statement, parameters, prepare=False)  # type: ignore[call-arg]
            return list(cursor.fetchall())
        finally:
            cursor.close()
    return list(connection.exec_driver_sql(statement, parameters))


def _feed_row(row: Any) -> FeedRow:
    values = dict(zip(_FEED_COLUMNS, row, strict=True))
    for name in _TIMES:
        if values[name] is not None:
            values[name] = stored_time(values[name])
    return FeedRow(**values)


def load_feeds(connection: sa.Connection) -> dict[str, FeedRow]:
    return {row.feed_id: _feed_row(row) for row in connection.execute(sa.select(feed_state))}


def load_feed(connection: sa.Connection, feed_id: str) -> FeedRow | None:
    row = connection.exec_driver_sql(_statements(connection).select_feed, (feed_id,)).first()
    return _feed_row(row) if row is not None else None


def save_feed(connection: sa.Connection, row: FeedRow) -> None:
    upsert(connection, feed_state, [asdict(row)], ("feed_id",))


def save_claimed_feed(connection: sa.Connection, row: FeedRow, owner: str) -> bool:
    """Write a feed's bookkeeping if `owner` still holds its claim (one conditional UPDATE, so
    a poller whose claim ran out and was taken writes nothing); False if it does not."""
    statements = _statements(connection)
    values = statements.feed_values(row)
    result = connection.exec_driver_sql(statements.save_claimed, (*values[1:], values[0], owner))
    return result.rowcount == 1


def known_articles(
    connection: sa.Connection, article_ids: Iterable[str]
) -> dict[str, KnownArticle]:
    statements = _statements(connection)
    ids = list(dict.fromkeys(article_ids))
    found: dict[str, KnownArticle] = {}
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = ids[start : start + _LOOKUP_CHUNK]
        rows = _lookup(connection, statements.known(len(chunk)), tuple(chunk))
        for article_id, version, fingerprint in rows:
            prints = json.loads(fingerprint)
            found[article_id] = KnownArticle(
                article_id, version, prints["latest"], prints["per_feed"]
            )
    missing = [article_id for article_id in ids if article_id not in found]
    if missing:
        found.update(_from_the_log(connection, missing))
    return found


def _from_the_log(connection: sa.Connection, article_ids: list[str]) -> dict[str, KnownArticle]:
    """Articles the log has but the bookkeeping table lost (restored from a backup, say):
    rebuilt from their streams, so the loss costs a read, never a duplicate or a wedged feed.
    Asked for every new article, so the usual answer, none, costs one index probe per id;
    only the streams found are read."""
    statements = _statements(connection)
    logged: list[str] = []
    for start in range(0, len(article_ids), _LOOKUP_CHUNK):
        chunk = article_ids[start : start + _LOOKUP_CHUNK]
        rows = _lookup(
            connection, statements.logged(len(chunk)), id_parameters(statements.postgresql, chunk)
        )
        logged += [stream_id for stream_id, version in rows if version is not None]
    histories: dict[str, list[tuple[str, Any]]] = {}
    versions: dict[str, int] = {}
    for start in range(0, len(logged), _LOOKUP_CHUNK):
        chunk = logged[start : start + _LOOKUP_CHUNK]
        rows = _lookup(
            connection,
            statements.histories(len(chunk)),
            id_parameters(statements.postgresql, chunk),
        )
        for stream_id, stream_version, event_type, payload in rows:
            histories.setdefault(stream_id, []).append((event_type, json.loads(payload)))
            versions[stream_id] = stream_version
    return {
        article_id: known_from_history(article_id, versions[article_id], history)
        for article_id, history in histories.items()
    }


# As json.dumps(..., sort_keys=True) writes it, without building an encoder each time.
_FINGERPRINT_JSON = json.JSONEncoder(sort_keys=True).encode
_FEEDS_JSON = json.JSONEncoder().encode


def save_articles(connection: sa.Connection, articles: Iterable[KnownArticle]) -> None:
    rows = [
        (
            article.article_id,
            article.version,
            _FINGERPRINT_JSON(
                {
                    "latest": dict(article.latest),
                    "per_feed": {feed: dict(p) for feed, p in article.per_feed.items()},
                }
            ),
            _FEEDS_JSON(list(article.feeds)),
        )
        for article in articles
    ]
    if rows:
        connection.exec_driver_sql(_statements(connection).save_articles, rows)


def claim(
    connection: sa.Connection,
    row: FeedRow,
    owner: str,
    now: datetime,
    until: datetime,
    due_within: timedelta | None = timedelta(0),
) -> bool:
    """Take a feed for one poll unless another poller holds an unexpired claim on it; with
    `due_within`, only if it is due by then (and not gone).

    One conditional UPDATE, atomic on both databases: of several pollers racing for a feed,
    exactly one sees its row updated. A feed never polled gets its row first.
    """
    statements = _statements(connection)
    connection.exec_driver_sql(statements.insert_feed, tuple(statements.feed_values(row)))
    time = statements.time
    # A poller may take again a claim of its own that it could not release (the database
    # went away as it recorded).
    claiming = (owner, time(until), row.feed_id, time(now), owner)
    if due_within is None:
        result = connection.exec_driver_sql(statements.claim, claiming)
    else:
        # feeds.yaml names another URL: start again, gone or not.
        condition = (row.configured_url, GONE, time(now + due_within))
        result = connection.exec_driver_sql(statements.claim_if_due, claiming + condition)
    return result.rowcount == 1


def claim_holder(connection: sa.Connection, feed_id: str) -> str | None:
    """Who holds the feed's claim, if anyone (expired or not)."""
    query = sa.select(feed_state.c.claimed_by).where(feed_state.c.feed_id == feed_id)
    return connection.execute(query).scalar()


def release(connection: sa.Connection, feed_id: str, owner: str) -> None:
    """Give up a claim whose poll will not be recorded (cancelled, or failed unexpectedly)."""
    connection.execute(
        sa.update(feed_state)
        .where(feed_state.c.feed_id == feed_id, feed_state.c.claimed_by == owner)
        .values(claimed_by=None, claimed_until=None)
    )
