"""A realistic, deterministic history for the benchmarks (issue #5): what two years of polling
200 feeds and following 20 storylines writes, generated from a seed.

Articles are published in polls (one transaction per poll, as the poller writes), some are
revised later, some turn up in a second feed of the outlet; feeds fail and recover now and
then; storyline rules are defined at the start and changed a few times. Payloads carry the same
fields, in the same sizes (0.5 to 2 KB), as real feeds give.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tracker.events.articles import ArticlePublished, ArticleRevised, ArticleSeenInFeed
from tracker.events.feeds import FeedDefined, FeedFailing, FeedRecovered
from tracker.events.storylines import StorylineDefined

FEEDS = 200
STORYLINES = 20
START = datetime(2024, 12, 1, tzinfo=UTC)
SPAN = timedelta(days=730)

# The storylines' subjects: each article is about one of them, or about other news.
SUBJECTS = [
    ("essequibo", "Essequibo dispute", ("Essequibo", "Esequibo")),
    ("maduro-reward", "US reward for Maduro", ("Maduro reward", "bounty on Maduro")),
    ("sky-group", "Sky Group USA fraud case", ("Sky Group",)),
    ("tren-de-aragua", "Tren de Aragua", ("Tren de Aragua",)),
    ("guyana-oil", "Guyana oil boom", ("Stabroek block",)),
    ("miami-condo", "Miami condo collapse", ("Champlain Towers",)),
    ("caracas-protests", "Caracas protests", ("Caracas protest",)),
    ("orinoco-mining", "Orinoco mining arc", ("Orinoco mining",)),
    ("doral-tps", "Venezuelan TPS in Doral", ("TPS holders",)),
    ("panama-canal", "Panama Canal drought", ("Panama Canal",)),
    ("darien-gap", "Darien Gap migration", ("Darien Gap",)),
    ("citgo-auction", "Citgo auction", ("Citgo auction",)),
    ("pdvsa-bonds", "PDVSA bonds", ("PDVSA bonds",)),
    ("hurricane-season", "Atlantic hurricane season", ("hurricane season",)),
    ("everglades", "Everglades restoration", ("Everglades restoration",)),
    ("ofac-licence", "Chevron licence", ("Chevron licence",)),
    ("brazil-border", "Brazil border deployment", ("Roraima border",)),
    ("icj-ruling", "World Court rulings", ("World Court",)),
    ("barbados-talks", "Barbados talks", ("Barbados talks",)),
    ("caricom-summit", "Caricom summit", ("Caricom summit",)),
]
_PROSE = (
    "government officials said on Thursday that the ministry would review the plan after "
    "lawmakers raised concerns about costs and delays while residents waited for answers from "
    "the regional authorities who promised a report within weeks as analysts questioned the "
    "figures and opposition leaders called for an inquiry into how the contracts were awarded "
    "during the last election campaign when turnout was low and prices were rising sharply"
)
_WORDS = _PROSE.split()
_FIGURES = ["$50 million", "$25 million", "600 investors", "seven years", "60%", "$8.3 million"]
_NAMES = ["Nicolás Maduro", "Irfaan Ali", "Pam Bondi", "Darrin Gayles", "Marco Rubio"]


@dataclass(frozen=True)
class Poll:
    """What one poll of one feed records: events by stream, all in one transaction."""

    at: datetime
    feed_id: str
    events: list[tuple[str, Any]]  # (stream id, typed event)


def storylines() -> list[StorylineDefined]:
    return [StorylineDefined(sid, title, any=terms) for sid, title, terms in SUBJECTS[:STORYLINES]]


def _text(rng: random.Random, words: int, subject: tuple[str, ...] | None) -> str:
    chosen = [rng.choice(_WORDS) for _ in range(words)]
    if subject is not None:
        chosen.insert(rng.randrange(len(chosen)), rng.choice(subject))
    if rng.random() < 0.5:
        chosen.insert(rng.randrange(len(chosen)), rng.choice(_FIGURES))
    if rng.random() < 0.5:
        chosen.insert(rng.randrange(len(chosen)), rng.choice(_NAMES))
    sentences = [" ".join(chosen[i : i + 14]) for i in range(0, len(chosen), 14)]
    return ". ".join(s[0].upper() + s[1:] for s in sentences) + "."


def polls(events: int, seed: int = 5, tag: str = "", start: datetime = START) -> Iterator[Poll]:
    """Polls that record about `events` events in all, in time order from `start`; `tag`
    keeps the article ids apart from another history's."""
    rng = random.Random(seed)
    feeds = [f"feed-{n:03d}" for n in range(FEEDS)]
    setup: list[tuple[str, Any]] = [
        (f"feed-{f}", FeedDefined(f, f"Feed {f}", f"https://news{n}.example/rss"))
        for n, f in enumerate(feeds)
    ] + [(f"storyline-{s.storyline_id}", s) for s in storylines()]
    yield Poll(start, "setup", setup)
    written = len(setup)
    published: list[tuple[str, str]] = []
    failing: set[str] = set()
    step = SPAN / max(events // 4, 1)
    at = start
    serial = 0
    while written < events:
        at += step * rng.uniform(0.5, 1.5)
        feed = rng.choice(feeds)
        batch: list[tuple[str, Any]] = []
        roll = rng.random()
        if roll < 0.01:
            if feed in failing:
                failing.discard(feed)
                batch.append((f"feed-{feed}", FeedRecovered(feed, f"https://{feed}/rss", 3)))
            else:
                failing.add(feed)
                event = FeedFailing(feed, f"https://{feed}/rss", "failing", "HTTP 503", 503)
                batch.append((f"feed-{feed}", event))
        else:
            for _ in range(rng.randint(1, 8)):
                kind = rng.random()
                if kind < 0.62 or not published:
                    serial += 1
                    article_id = f"article-{tag}{serial:09d}"
                    subject = rng.choice(SUBJECTS)[2] if rng.random() < 0.4 else None
                    title = _text(rng, rng.randint(8, 12), subject).rstrip(".")
                    summary = _text(rng, rng.randint(15, 35), subject)
                    content = _text(rng, rng.randint(20, 90), None)
                    batch.append(
                        (
                            article_id,
                            ArticlePublished(
                                article_id=article_id,
                                feed_id=feed,
                                identity="link",
                                guid=f"https://{feed}.example/{serial}",
                                link=f"https://{feed}.example/{serial}",
                                title=title,
                                title_text=title,
                                summary=f"<p>{summary}</p>",
                                summary_text=summary,
                                content=f"<p>{content}</p>",
                                content_text=content,
                                published=at.isoformat(),
                                published_is_first_seen=False,
                                updated=None,
                                authors=("Staff",),
                                categories=("World",),
                            ),
                        )
                    )
                    published.append((article_id, feed))
                elif kind < 0.9:
                    article_id, first_feed = published[-rng.randint(1, min(len(published), 400))]
                    title = _text(rng, rng.randint(8, 12), None).rstrip(".")
                    summary = _text(rng, rng.randint(15, 35), None)
                    content = _text(rng, rng.randint(20, 90), None)
                    batch.append(
                        (
                            article_id,
                            ArticleRevised(
                                article_id=article_id,
                                feed_id=first_feed,
                                changed=("title", "summary", "content"),
                                link=f"https://{first_feed}.example/{article_id}",
                                title=title,
                                title_text=title,
                                summary=f"<p>{summary}</p>",
                                summary_text=summary,
                                content=f"<p>{content}</p>",
                                content_text=content,
                                updated=at.isoformat(),
                            ),
                        )
                    )
                else:
                    article_id, _ = published[-rng.randint(1, min(len(published), 400))]
                    batch.append((article_id, ArticleSeenInFeed(article_id, feed)))
        written += len(batch)
        yield Poll(at, feed, batch)
