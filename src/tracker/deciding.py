"""What a poll means, decided by pure functions: data in, events out, the time passed in.

Is this entry a new article, a real revision of one we know, or nothing new? Did the feed start
failing, recover, move, or go? Nothing here touches the network or the database.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tracker.entries import ParsedEntry
from tracker.events.articles import (
    REVISABLE_FIELDS,
    ArticleFields,
    ArticlePublished,
    ArticleRevised,
    ArticleSeenInFeed,
)
from tracker.events.feeds import (
    BLOCKED,
    FAILING,
    GONE,
    HEALTHY,
    FeedFailing,
    FeedGone,
    FeedMoved,
    FeedRecovered,
)
from tracker.identity import article_key, article_stream, canonical_link
from tracker.text import html_to_text

MAX_BACKOFF = timedelta(hours=6)


# -- articles ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownArticle:
    """What the log last recorded of an article, as the poller keeps it at hand.

    `latest` is the fingerprint of the article as last recorded; `per_feed` how each feed
    showed it last. Two feeds of one outlet may show one article differently (a section feed
    with a shorter summary): only a change in what one feed shows is a candidate revision,
    never the difference between two feeds.
    """

    article_id: str
    version: int
    latest: Mapping[str, str]
    per_feed: Mapping[str, Mapping[str, str]]

    @property
    def feeds(self) -> tuple[str, ...]:
        return tuple(self.per_feed)


@dataclass(frozen=True)
class ArticleChange:
    article_id: str
    kind: str  # "new", "revised", "seen" (known, in another feed) or "unchanged"
    expected_version: int
    events: tuple[Any, ...]
    known: KnownArticle  # the state after these events


def article_id_of(entry: ParsedEntry) -> tuple[str, str]:
    """(how the identity was made, the article's stream id)."""
    how, key = article_key(entry.guid, entry.link, html_to_text(entry.title), entry.summary)
    return how, article_stream(how, key)


def article_fields(entry: ParsedEntry) -> ArticleFields:
    return ArticleFields(
        title=entry.title,
        title_text=html_to_text(entry.title),
        link=entry.link,
        summary=entry.summary,
        summary_text=html_to_text(entry.summary),
        content=entry.content,
        content_text=html_to_text(entry.content),
    )


def fingerprint(fields: ArticleFields) -> dict[str, str]:
    """A digest of each revisable field as a reader sees it: whitespace, markup that renders
    the same, and tracking parameters in the link do not count as a change."""
    return _fingerprint(fields, canonical_link(fields.link))


def _fingerprint(fields: ArticleFields, canonical: str | None) -> dict[str, str]:
    seen = {
        "title": fields.title_text,
        "link": canonical or (fields.link or ""),
        "summary": fields.summary_text,
        "content": fields.content_text,
    }
    return {
        name: hashlib.sha256(seen[name].encode("utf-8", "replace")).hexdigest()[:32]
        for name in REVISABLE_FIELDS
    }


@dataclass(frozen=True)
class Sighting:
    """One entry with everything the deciders need of it, each worked out once: its identity,
    its fields as text, their fingerprint. Pure, so a poll works it out before it takes the
    log's lock."""

    entry: ParsedEntry
    identity: str  # how the id was made: "guid", "link" or "content"
    article_id: str
    fields: ArticleFields
    prints: Mapping[str, str]


def sight(entry: ParsedEntry) -> Sighting:
    fields = article_fields(entry)
    how, key = article_key(entry.guid, entry.link, fields.title_text, entry.summary)
    # Without a guid, a link identity is the canonical link the fingerprint needs too.
    canonical = key if how == "link" and not (entry.guid and entry.guid.strip()) else None
    if canonical is None:
        canonical = canonical_link(entry.link)
    return Sighting(entry, how, article_stream(how, key), fields, _fingerprint(fields, canonical))


def sightings(entries: Iterable[ParsedEntry]) -> list[Sighting]:
    """The entries of one poll that are articles, in order; an id twice in one feed counts
    once (the first)."""
    found: list[Sighting] = []
    ids: set[str] = set()
    for entry in entries:
        if not (entry.guid or entry.link or entry.title.strip() or entry.summary.strip()):
            continue  # nothing to know it by: a fragment of a truncated feed, not an article
        seen = sight(entry)
        if seen.article_id not in ids:
            ids.add(seen.article_id)
            found.append(seen)
    return found


def known_from_history(
    article_id: str, version: int, history: Iterable[tuple[str, Mapping[str, Any]]]
) -> KnownArticle:
    """What the poller knows of an article, rebuilt from its stream's (type, payload) pairs,
    for when the bookkeeping table lost it."""
    latest: dict[str, str] = {}
    per_feed: dict[str, Mapping[str, str]] = {}
    for event_type, payload in history:
        if event_type in (ArticlePublished.TYPE, ArticleRevised.TYPE):
            names = [f.name for f in dataclasses.fields(ArticleFields)]
            prints = fingerprint(ArticleFields(**{name: payload.get(name) or "" for name in names}))
            latest = prints
            per_feed[payload["feed_id"]] = prints
        elif event_type == ArticleSeenInFeed.TYPE:
            # How that feed showed it is not in the log: its next poll sets the baseline.
            per_feed[payload["feed_id"]] = {}
    return KnownArticle(article_id, version, latest, per_feed)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def decide_entry(
    feed_id: str, entry: ParsedEntry, known: KnownArticle | None, now: datetime
) -> ArticleChange | None:
    """The events one entry of one poll calls for, or None when nothing changed."""
    return decide_sighting(feed_id, sight(entry), known, now)


def decide_sighting(
    feed_id: str, seen: Sighting, known: KnownArticle | None, now: datetime
) -> ArticleChange | None:
    """As decide_entry, for an entry already sighted."""
    entry, article_id, fields, prints = seen.entry, seen.article_id, seen.fields, seen.prints
    if known is None:
        published = entry.published or entry.updated
        event = ArticlePublished(
            article_id=article_id,
            feed_id=feed_id,
            identity=seen.identity,
            guid=entry.guid,
            **vars(fields),
            published=(published or now).isoformat(),
            published_is_first_seen=published is None,
            updated=_iso(entry.updated),
            authors=entry.authors,
            categories=entry.categories,
            media=entry.media,
        )
        known_now = KnownArticle(article_id, 1, prints, {feed_id: prints})
        return ArticleChange(article_id, "new", 0, (event,), known_now)
    before = known.per_feed.get(feed_id)
    if before == prints:
        return None
    events: list[Any] = []
    changed: tuple[str, ...] = ()
    if not before:
        if before is None:
            events.append(ArticleSeenInFeed(article_id, feed_id))
        # First sighting in this feed: how it shows summary and content is its baseline, not
        # an edit; but a headline or link other than the log's is news (the article may have
        # left the other feed before its edit).
        changed = tuple(
            name for name in ("title", "link") if known.latest.get(name) != prints[name]
        )
    else:
        # The fields this feed now shows differently are edits, unless another feed already
        # brought the same change (or always showed them so).
        changed = tuple(
            name
            for name in REVISABLE_FIELDS
            if before.get(name) != prints[name] and known.latest.get(name) != prints[name]
        )
    if changed:
        events.append(
            ArticleRevised(
                article_id=article_id,
                feed_id=feed_id,
                changed=changed,
                **vars(fields),
                updated=_iso(entry.updated),
            )
        )
    known_now = KnownArticle(
        article_id,
        known.version + len(events),
        {**known.latest, **{name: prints[name] for name in changed}},
        {**known.per_feed, feed_id: prints},
    )
    kind = "revised" if changed else "seen" if events else "unchanged"
    return ArticleChange(article_id, kind, known.version, tuple(events), known_now)


def decide_entries(
    feed_id: str,
    entries: Iterable[ParsedEntry],
    known: Mapping[str, KnownArticle],
    now: datetime,
) -> list[ArticleChange]:
    """Every change one poll of a feed calls for (including state-only ones, without events);
    an id twice in one feed counts once."""
    return decide_sightings(feed_id, sightings(entries), known, now)


def decide_sightings(
    feed_id: str,
    seen: Iterable[Sighting],
    known: Mapping[str, KnownArticle],
    now: datetime,
) -> list[ArticleChange]:
    """As decide_entries, for the sightings of a poll's entries."""
    changes = []
    for sighting in seen:
        change = decide_sighting(feed_id, sighting, known.get(sighting.article_id), now)
        if change is not None:
            changes.append(change)
    return changes


# -- feed health ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedStatus:
    url: str
    state: str = HEALTHY
    failures: int = 0
    error: str | None = None


@dataclass(frozen=True)
class PollOutcome:
    """What happened to one fetch, in the terms health cares about."""

    ok: bool
    failure_kind: str | None = None  # FetchFailed.kind, or "parse"
    reason: str | None = None
    status: int | None = None
    moved_to: str | None = None
    moved_by: int | None = None  # 301 or 308


@dataclass(frozen=True)
class HealthChange:
    events: tuple[Any, ...] = ()
    status: FeedStatus = field(default_factory=lambda: FeedStatus(""))


def decide_health(feed_id: str, before: FeedStatus, outcome: PollOutcome) -> HealthChange:
    """One event per change of state: failing, blocked, recovered, moved, gone."""
    events: list[Any] = []
    url = before.url
    if outcome.moved_to and outcome.moved_to != url:
        events.append(FeedMoved(feed_id, url, outcome.moved_to, outcome.moved_by or 301))
        url = outcome.moved_to
    if outcome.ok:
        if before.state in (FAILING, BLOCKED, GONE):
            events.append(FeedRecovered(feed_id, url, before.failures))
        return HealthChange(tuple(events), FeedStatus(url, HEALTHY, 0, None))
    reason = outcome.reason or "failed"
    if outcome.failure_kind == "gone":
        if before.state != GONE:
            events.append(FeedGone(feed_id, url))
        return HealthChange(tuple(events), FeedStatus(url, GONE, before.failures + 1, reason))
    state = BLOCKED if outcome.failure_kind == "blocked" else FAILING
    if before.state != state:
        events.append(FeedFailing(feed_id, url, state, reason, outcome.status))
    return HealthChange(tuple(events), FeedStatus(url, state, before.failures + 1, reason))


def next_due(
    now: datetime,
    interval: timedelta,
    failures: int = 0,
    *,
    retry_after: timedelta | None = None,
    publisher_minimum: timedelta | None = None,
    rng: random.Random | None = None,
) -> datetime:
    """When to poll again: the interval, never sooner than the publisher asks (<ttl>,
    Cache-Control max-age, Retry-After), backing off exponentially with jitter after failures,
    capped at MAX_BACKOFF."""
    rng = rng or random.Random()
    wait = max(interval, publisher_minimum or timedelta(0))
    if failures:
        backoff = min(interval * (2 ** min(failures, 20)), MAX_BACKOFF)
        wait = max(wait, backoff * rng.uniform(0.8, 1.0))
    if retry_after is not None:
        wait = max(wait, retry_after)
    return now + wait
