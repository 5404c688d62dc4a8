"""Histories for the view tests: typed events written straight into a real log, and full dumps
of the views to compare builds with."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from tracker.events import encode
from tracker.events.articles import ArticlePublished, ArticleRevised, ArticleSeenInFeed
from tracker.events.feeds import FeedDefined, FeedFailing, FeedRecovered
from tracker.events.storylines import (
    ArticleExcluded,
    ArticleIncluded,
    CurationCleared,
    StorylineDefined,
    StorylineRemoved,
)
from tracker.eventstore import EventStore
from tracker.reading import Snapshot, read_views
from tracker.views import PROJECTORS

ESSEQUIBO = StorylineDefined(
    "essequibo", "Essequibo dispute", any=("Essequibo", "Esequibo", "Guayana Esequiba")
)
REWARD = StorylineDefined(
    "maduro-reward", "US reward for Maduro", all=("Maduro",), any=("reward", "bounty")
)
SKY = StorylineDefined("sky-group", "Sky Group USA fraud case", any=("Sky Group",))

# Headlines and bodies to draw from: each storyline, and news that shares its words.
TEXTS = [
    ("Maduro vows to recover the Essequibo", "Venezuela's claim to the Essequibo region grows."),
    ("US doubles reward for Maduro to $50 million", "The reward was $25 million in January."),
    ("Sky Group USA founder sentenced to seven years", "About 600 investors lost $66 million."),
    ("Maduro speaks on oil sanctions", "President Nicolás Maduro addressed the assembly."),
    ("FBI offers $20,000 reward in bank robbery", "Agents seek a man seen in Doral."),
    ("Sky-high rents squeeze Miami families", "Rents rose 60% since 2020."),
    ("Guyana's oil output reaches 900,000 barrels", "Exxon said production grew 43.6 percent."),
    ("La Guayana Esequiba ante la Corte", "Venezuela rechaza el fallo sobre el Esequibo."),
]


def published(
    article_id: str,
    feed_id: str,
    title: str,
    summary: str = "",
    content: str = "",
    day: int = 1,
) -> ArticlePublished:
    return ArticlePublished(
        article_id=article_id,
        feed_id=feed_id,
        identity="guid",
        guid=article_id,
        link=f"https://news.example/{article_id}",
        title=title,
        title_text=title,
        summary=summary,
        summary_text=summary,
        content=content,
        content_text=content,
        published=(datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=day)).isoformat(),
        published_is_first_seen=False,
        updated=None,
    )


def revised(article_id: str, feed_id: str, title: str, summary: str = "") -> ArticleRevised:
    return ArticleRevised(
        article_id=article_id,
        feed_id=feed_id,
        changed=("title", "summary"),
        link=f"https://news.example/{article_id}",
        title=title,
        title_text=title,
        summary=summary,
        summary_text=summary,
        content="",
        content_text="",
        updated=None,
    )


def stream_of(event: Any) -> str:
    if isinstance(event, ArticlePublished | ArticleRevised | ArticleSeenInFeed):
        return str(event.article_id)
    if isinstance(event, StorylineDefined | StorylineRemoved):
        return f"storyline-{event.storyline_id}"
    if isinstance(event, ArticleIncluded | ArticleExcluded | CurationCleared):
        return f"curation-{event.storyline_id}"
    return f"feed-{event.feed_id}"


def append(store: EventStore, events: Sequence[Any]) -> None:
    """Append events in order, each to its own stream, in one transaction."""
    with store.session() as session:
        for event in events:
            session.append(stream_of(event), [encode(event, {"source": "test"})])


@dataclass
class RandomHistory:
    """A seeded history of everything the views consume, in a realistic order."""

    seed: int
    size: int = 120
    events: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        feeds = ["upi-top", "thehill-news", "miamiherald-local"]
        out: list[Any] = [FeedDefined(f, f.upper(), f"https://{f}.example/rss") for f in feeds]
        out += [ESSEQUIBO, REWARD]
        articles: list[tuple[str, str]] = []
        for _ in range(self.size):
            roll = rng.random()
            if roll < 0.5 or not articles:
                article_id = f"article-{len(articles):04d}"
                feed = rng.choice(feeds)
                title, summary = rng.choice(TEXTS)
                out.append(published(article_id, feed, title, summary, day=rng.randrange(300)))
                articles.append((article_id, feed))
            elif roll < 0.65:
                article_id, feed = rng.choice(articles)
                title, summary = rng.choice(TEXTS)
                out.append(revised(article_id, feed, title, summary))
            elif roll < 0.72:
                article_id, _ = rng.choice(articles)
                out.append(ArticleSeenInFeed(article_id, rng.choice(feeds)))
            elif roll < 0.8:
                article_id, _ = rng.choice(articles)
                kind = rng.choice([ArticleIncluded, ArticleExcluded, CurationCleared])
                out.append(kind(rng.choice(["essequibo", "maduro-reward"]), article_id))
            elif roll < 0.85:
                # The rules change: everything seen so far is matched again.
                extra = rng.choice([("Guyana",), ("Esequibo",), ()])
                out.append(
                    StorylineDefined("essequibo", "Essequibo dispute", any=("Essequibo", *extra))
                )
            elif roll < 0.9:
                out.append(SKY if rng.random() < 0.7 else REWARD)
            elif roll < 0.95:
                feed = rng.choice(feeds)
                out.append(FeedFailing(feed, f"https://{feed}.example/rss", "failing", "HTTP 503"))
            else:
                feed = rng.choice(feeds)
                out.append(FeedRecovered(feed, f"https://{feed}.example/rss", 1))
        self.events = out


def dump(store: EventStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every view table, in key order, with times as ISO text: two builds of the
    same log must dump alike."""

    def read(snapshot: Snapshot) -> dict[str, list[tuple[Any, ...]]]:
        found = {}
        for projector in PROJECTORS:
            for view in projector.tables:
                if view.name == "storyline_digests":
                    continue  # a cache of sums over the views, made after them (test_digests)
                table = snapshot.views[view.name]
                query = sa.select(table).order_by(*(table.c[k] for k in view.primary_key))
                found[view.name] = [
                    tuple(_plain(value) for value in row)
                    for row in snapshot.views.connection.execute(query)
                ]
        return found

    return read_views(store, PROJECTORS, read)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat()
    if isinstance(value, float):
        return repr(value)
    return value
