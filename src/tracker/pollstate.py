"""The poller's operational tables: feed bookkeeping and the last recorded form of articles.

Written in the same transaction as the events a poll appends (EventStore.session), so the two
never disagree: a crash loses both or neither.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from tracker.database import upsert
from tracker.deciding import KnownArticle, known_from_history
from tracker.encoding import stored_time
from tracker.events.feeds import GONE, HEALTHY
from tracker.schema import article_state, events, feed_state

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


def _feed_row(row: sa.Row[Any]) -> FeedRow:
    values = dict(row._mapping)
    for name in _TIMES:
        if values[name] is not None:
            values[name] = stored_time(values[name])
    return FeedRow(**values)


def load_feeds(connection: sa.Connection) -> dict[str, FeedRow]:
    return {row.feed_id: _feed_row(row) for row in connection.execute(sa.select(feed_state))}


def load_feed(connection: sa.Connection, feed_id: str) -> FeedRow | None:
    row = connection.execute(sa.select(feed_state).where(feed_state.c.feed_id == feed_id)).first()
    return _feed_row(row) if row is not None else None


def save_feed(connection: sa.Connection, row: FeedRow) -> None:
    upsert(connection, feed_state, [asdict(row)], ("feed_id",))


def save_claimed_feed(connection: sa.Connection, row: FeedRow, owner: str) -> bool:
    """Write a feed's bookkeeping if `owner` still holds its claim (one conditional UPDATE, so
    a poller whose claim ran out and was taken writes nothing); False if it does not."""
    values = asdict(row)
    feed_id = values.pop("feed_id")
    statement = (
        sa.update(feed_state)
        .where(feed_state.c.feed_id == feed_id, feed_state.c.claimed_by == owner)
        .values(**values)
    )
    return connection.execute(statement).rowcount == 1


def known_articles(
    connection: sa.Connection, article_ids: Iterable[str]
) -> dict[str, KnownArticle]:
    ids = list(dict.fromkeys(article_ids))
    found: dict[str, KnownArticle] = {}
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = ids[start : start + _LOOKUP_CHUNK]
        query = sa.select(article_state).where(article_state.c.article_id.in_(chunk))
        for row in connection.execute(query):
            fingerprint = json.loads(row.fingerprint)
            found[row.article_id] = KnownArticle(
                row.article_id, row.version, fingerprint["latest"], fingerprint["per_feed"]
            )
    missing = [article_id for article_id in ids if article_id not in found]
    found.update(_from_the_log(connection, missing))
    return found


def _from_the_log(connection: sa.Connection, article_ids: list[str]) -> dict[str, KnownArticle]:
    """Articles the log has but the bookkeeping table lost (restored from a backup, say):
    rebuilt from their streams, so the loss costs a read, never a duplicate or a wedged feed."""
    histories: dict[str, list[tuple[str, Any]]] = {}
    versions: dict[str, int] = {}
    for start in range(0, len(article_ids), _LOOKUP_CHUNK):
        chunk = article_ids[start : start + _LOOKUP_CHUNK]
        query = (
            sa.select(
                events.c.stream_id, events.c.stream_version, events.c.event_type, events.c.payload
            )
            .where(events.c.stream_id.in_(chunk))
            .order_by(events.c.position)
        )
        for row in connection.execute(query):
            histories.setdefault(row.stream_id, []).append(
                (row.event_type, json.loads(row.payload))
            )
            versions[row.stream_id] = row.stream_version
    return {
        article_id: known_from_history(article_id, versions[article_id], history)
        for article_id, history in histories.items()
    }


def save_articles(connection: sa.Connection, articles: Iterable[KnownArticle]) -> None:
    rows = [
        {
            "article_id": article.article_id,
            "version": article.version,
            "fingerprint": json.dumps(
                {
                    "latest": dict(article.latest),
                    "per_feed": {feed: dict(p) for feed, p in article.per_feed.items()},
                },
                sort_keys=True,
            ),
            "feeds": json.dumps(list(article.feeds)),
        }
        for article in articles
    ]
    upsert(connection, article_state, rows, ("article_id",))


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
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    connection.execute(dialect.insert(feed_state).values(**asdict(row)).on_conflict_do_nothing())
    c = feed_state.c
    statement = (
        sa.update(feed_state)
        .where(c.feed_id == row.feed_id)
        .where(sa.or_(c.claimed_until.is_(None), c.claimed_until < now))
        .values(claimed_by=owner, claimed_until=until)
    )
    if due_within is not None:
        statement = statement.where(
            sa.or_(
                # feeds.yaml names another URL: start again, gone or not.
                c.configured_url != row.configured_url,
                sa.and_(
                    c.state != GONE,
                    sa.or_(c.next_due_at.is_(None), c.next_due_at <= now + due_within),
                ),
            )
        )
    return connection.execute(statement).rowcount == 1


def release(connection: sa.Connection, feed_id: str, owner: str) -> None:
    """Give up a claim whose poll will not be recorded (cancelled, or failed unexpectedly)."""
    connection.execute(
        sa.update(feed_state)
        .where(feed_state.c.feed_id == feed_id, feed_state.c.claimed_by == owner)
        .values(claimed_by=None, claimed_until=None)
    )
