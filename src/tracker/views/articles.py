"""The articles view: each article as last recorded, how often it was revised, where it was seen."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tracker.events.articles import ArticlePublished, ArticleRevised, ArticleSeenInFeed
from tracker.identity import canonical_link
from tracker.projection import Batch, Projector, Views, ViewTable, rows_by, utc
from tracker.views.writes import insert_missing_rows, upsert_rows


def _article_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("article_id", sa.String(200), nullable=False),  # its stream id
        sa.Column("feed_id", sa.String(64), nullable=False),  # the feed it was first seen in
        sa.Column("title", sa.Text(), nullable=False),  # plain text, current version
        sa.Column("link", sa.Text()),
        # The link without tracking parameters or fragment, for finding an article by its URL.
        sa.Column("canonical_link", sa.Text()),
        sa.Column("summary_text", sa.Text(), nullable=False),
        sa.Column("content_text", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        # The feed gave no date: published_at is when tracker first saw it.
        sa.Column("published_is_first_seen", sa.Boolean(), nullable=False),
        sa.Column("first_recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),  # last revision
        sa.Column("revisions", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),  # its stream's version
    ]


def _feed_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("article_id", sa.String(200), nullable=False),
        sa.Column("feed_id", sa.String(64), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
    ]


ARTICLES = ViewTable(
    "articles", _article_columns, ("article_id",), (("canonical_link",), ("published_at",))
)
ARTICLE_FEEDS = ViewTable("article_feeds", _feed_columns, ("article_id", "feed_id"))


class ArticlesProjector(Projector):
    name = "articles"
    version = 1
    tables = (ARTICLES, ARTICLE_FEEDS)
    handles = frozenset({ArticlePublished.TYPE, ArticleRevised.TYPE, ArticleSeenInFeed.TYPE})

    def apply(self, views: Views, batch: Batch) -> None:
        connection = views.connection
        table = views["articles"]
        ids = {typed.article_id for _, typed in batch}
        rows = {row["article_id"]: row for row in rows_by(connection, table, "article_id", ids)}
        changed: set[str] = set()
        seen: list[dict[str, Any]] = []
        for event, typed in batch:
            at = utc(event.recorded_at)
            if isinstance(typed, ArticlePublished):
                rows[typed.article_id] = {
                    "article_id": typed.article_id,
                    "feed_id": typed.feed_id,
                    "title": typed.title_text,
                    "link": typed.link,
                    "canonical_link": _indexed_link(typed.link),
                    "summary_text": typed.summary_text,
                    "content_text": typed.content_text,
                    "published_at": utc(typed.published),
                    "published_is_first_seen": typed.published_is_first_seen,
                    "first_recorded_at": at,
                    "updated_at": at,
                    "revisions": 0,
                    "version": event.stream_version,
                }
                seen.append(_seen(typed.article_id, typed.feed_id, at))
            else:
                row = rows.get(typed.article_id)
                if row is None:
                    continue  # its first sight is missing from the log: nothing to add it to
                row["version"] = event.stream_version
                if isinstance(typed, ArticleRevised):
                    if typed.link != row["link"]:  # a revision seldom moves the article
                        row["canonical_link"] = _indexed_link(typed.link)
                    row.update(
                        title=typed.title_text,
                        link=typed.link,
                        summary_text=typed.summary_text,
                        content_text=typed.content_text,
                        updated_at=at,
                        revisions=row["revisions"] + 1,
                    )
                else:
                    seen.append(_seen(typed.article_id, typed.feed_id, at))
            changed.add(typed.article_id)
        upsert_rows(connection, table, [rows[key] for key in sorted(changed)], ("article_id",))
        insert_missing_rows(connection, views["article_feeds"], seen)


# PostgreSQL refuses an index entry over 2704 bytes: a link longer than any real one (a hostile
# feed's 100 KB link) is kept in `link` but not indexed, so it cannot stop the view.
_LONGEST_INDEXED_LINK = 2000


def _indexed_link(link: str | None) -> str | None:
    canonical = canonical_link(link)
    if canonical is None or len(canonical.encode("utf-8", "replace")) > _LONGEST_INDEXED_LINK:
        return None
    return canonical


def _seen(article_id: str, feed_id: str, at: Any) -> dict[str, Any]:
    return {"article_id": article_id, "feed_id": feed_id, "first_seen_at": at}


def article_by_link(views: Views, links: tuple[str, ...]) -> str | None:
    """The article whose canonical link is one of `links` (the first seen, if several)."""
    table = views["articles"]
    query = (
        sa.select(table.c.article_id)
        .where(table.c.canonical_link.in_(links))
        .order_by(table.c.first_recorded_at, table.c.article_id)
        .limit(1)
    )
    return views.connection.execute(query).scalar()
