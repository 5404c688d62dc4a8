"""The feeds view: each feed's name and health as the log tells it.

Polls that find nothing new record no event (issue #3: one event per change of state), so
`last_success_at` is the last time a poll of the feed recorded something: a new, revised or
re-seen article, or its recovery. `tracker status` adds the poller's own last check.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tracker.events.articles import ArticlePublished, ArticleRevised, ArticleSeenInFeed
from tracker.events.feeds import (
    GONE,
    HEALTHY,
    FeedDefined,
    FeedFailing,
    FeedGone,
    FeedMoved,
    FeedRecovered,
    FeedRemoved,
)
from tracker.projection import Batch, Projector, Views, ViewTable, rows_by, utc
from tracker.views.writes import upsert_rows


def _columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("feed_id", sa.String(64), nullable=False),
        sa.Column("title", sa.Text()),  # from feeds.yaml (feed.defined)
        sa.Column("url", sa.Text()),  # where it is polled now: moves after a 301/308
        sa.Column("configured_url", sa.Text()),  # as feeds.yaml last gave it
        sa.Column("state", sa.String(16), nullable=False),  # healthy, failing, blocked, gone
        sa.Column("state_since", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text()),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_success_at", sa.DateTime(timezone=True)),
        sa.Column("article_count", sa.Integer(), nullable=False),  # articles seen in it
        sa.Column("removed_at", sa.DateTime(timezone=True)),  # left feeds.yaml
    ]


FEEDS = ViewTable("feeds", _columns, ("feed_id",))


class FeedsProjector(Projector):
    name = "feeds"
    version = 1
    tables = (FEEDS,)
    handles = frozenset(
        {
            FeedDefined.TYPE,
            FeedRemoved.TYPE,
            FeedFailing.TYPE,
            FeedRecovered.TYPE,
            FeedMoved.TYPE,
            FeedGone.TYPE,
            ArticlePublished.TYPE,
            ArticleRevised.TYPE,
            ArticleSeenInFeed.TYPE,
        }
    )

    def apply(self, views: Views, batch: Batch) -> None:
        table = views["feeds"]
        feed_ids = {typed.feed_id for _, typed in batch}
        rows = {
            row["feed_id"]: row for row in rows_by(views.connection, table, "feed_id", feed_ids)
        }
        for event, typed in batch:
            at = utc(event.recorded_at)
            row = rows.get(typed.feed_id)
            if row is None:
                row = rows[typed.feed_id] = {
                    "feed_id": typed.feed_id,
                    "title": None,
                    "url": None,
                    "configured_url": None,
                    "state": HEALTHY,
                    "state_since": at,
                    "last_error": None,
                    "first_seen_at": at,
                    "last_success_at": None,
                    "article_count": 0,
                    "removed_at": None,
                }
            _change(row, typed, at)
        upsert_rows(views.connection, table, [rows[key] for key in sorted(rows)], ("feed_id",))


def _change(row: dict[str, Any], typed: Any, at: Any) -> None:
    if isinstance(typed, FeedDefined):
        if typed.url != row["configured_url"]:
            row["url"] = typed.url  # a new URL in feeds.yaml is polled from then on
        row.update(title=typed.title, configured_url=typed.url, removed_at=None)
    elif isinstance(typed, FeedRemoved):
        row["removed_at"] = at
    elif isinstance(typed, FeedFailing):
        row.update(url=typed.url, state=typed.state, state_since=at, last_error=typed.error)
    elif isinstance(typed, FeedRecovered):
        row.update(url=typed.url, state=HEALTHY, state_since=at, last_error=None)
        row["last_success_at"] = at
    elif isinstance(typed, FeedMoved):
        row["url"] = typed.new_url
    elif isinstance(typed, FeedGone):
        row.update(url=typed.url, state=GONE, state_since=at, last_error="HTTP 410 Gone")
    else:  # an article event: the feed worked
        if isinstance(typed, ArticlePublished | ArticleSeenInFeed):
            row["article_count"] += 1
        row["last_success_at"] = at


def feed_rows(views: Views) -> list[dict[str, Any]]:
    """Every feed the view knows, by id."""
    table = views["feeds"]
    query = sa.select(table).order_by(table.c.feed_id)
    return [dict(row._mapping) for row in views.connection.execute(query)]
