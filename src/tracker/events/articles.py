"""Article events: the first sight of an article in a feed, and each later real edit of it.

An article's stream is `article-<key>`, where the key comes from its identity (tracker.identity).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tracker.events import event_type

# The fields whose change makes a revision; each has an HTML and a plain-text form except link.
REVISABLE_FIELDS = ("title", "link", "summary", "content")


@dataclass(frozen=True)
class ArticleFields:
    """What a feed says about an article at one moment, normalised."""

    title: str
    title_text: str
    link: str | None
    summary: str
    summary_text: str
    content: str
    content_text: str


@event_type
@dataclass(frozen=True)
class ArticlePublished:
    """The first time tracker saw this article, with everything the feed said about it."""

    TYPE: ClassVar[str] = "article.published"
    VERSION: ClassVar[int] = 1

    article_id: str
    feed_id: str
    identity: str  # how the id was made: "guid", "link" or "content"
    guid: str | None
    link: str | None
    title: str
    title_text: str
    summary: str
    summary_text: str
    content: str
    content_text: str
    published: str  # ISO 8601, UTC
    published_is_first_seen: bool  # the feed gave no date: `published` is when we first saw it
    updated: str | None
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    media: tuple[str, ...] = ()


@event_type
@dataclass(frozen=True)
class ArticleRevised:
    """A later poll found the article's title, link, summary or content really changed."""

    TYPE: ClassVar[str] = "article.revised"
    VERSION: ClassVar[int] = 1

    article_id: str
    feed_id: str
    changed: tuple[str, ...]  # names from REVISABLE_FIELDS
    link: str | None
    title: str
    title_text: str
    summary: str
    summary_text: str
    content: str
    content_text: str
    updated: str | None


@event_type
@dataclass(frozen=True)
class ArticleSeenInFeed:
    """An article already known was seen in another feed of the same outlet."""

    TYPE: ClassVar[str] = "article.seen_in_feed"
    VERSION: ClassVar[int] = 1

    article_id: str
    feed_id: str
