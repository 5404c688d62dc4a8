"""An article's versions as the log holds them, and what changed between them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tracker.diffing import Piece, render, word_diff
from tracker.events import decode
from tracker.events.articles import ArticlePublished, ArticleRevised, ArticleSeenInFeed
from tracker.records import RecordedEvent

# The fields compared between versions, as a reader sees them.
FIELDS = ("title", "link", "summary", "content")


@dataclass(frozen=True)
class Version:
    number: int  # 1 for the first sight, 2 for the first revision, ...
    position: int
    recorded_at: datetime
    feed_id: str
    changed: tuple[str, ...]  # empty for the first version
    title: str
    link: str | None
    summary: str
    content: str
    published: str | None
    diff: dict[str, list[Piece]]  # by field, against the version before; only changed fields

    def text(self, field: str) -> str:
        return {"title": self.title, "link": self.link or "", "summary": self.summary}.get(
            field, self.content
        )


@dataclass(frozen=True)
class ArticleHistory:
    article_id: str
    versions: tuple[Version, ...]
    seen_in: tuple[tuple[str, datetime], ...]  # (feed id, when first seen there)

    def as_json_object(self) -> dict[str, Any]:
        return {
            "id": self.article_id,
            "feeds": [{"feed": feed, "first_seen": at.isoformat()} for feed, at in self.seen_in],
            "versions": [
                {
                    "version": v.number,
                    "position": v.position,
                    "recorded_at": v.recorded_at.isoformat(),
                    "feed": v.feed_id,
                    "changed": list(v.changed),
                    "title": v.title,
                    "link": v.link,
                    "summary": v.summary,
                    "content": v.content,
                    "published": v.published,
                    "diff": {field: render(pieces, None) for field, pieces in v.diff.items()},
                }
                for v in self.versions
            ],
        }


def history(events: Iterable[RecordedEvent]) -> ArticleHistory | None:
    """The history of one article's stream, or None if it holds no first sight."""
    versions: list[Version] = []
    seen: list[tuple[str, datetime]] = []
    article_id = ""
    for event in events:
        typed = decode(event)
        article_id = event.stream_id
        if isinstance(typed, ArticleSeenInFeed):
            seen.append((typed.feed_id, event.recorded_at))
            continue
        if not isinstance(typed, ArticlePublished | ArticleRevised):
            continue
        if isinstance(typed, ArticlePublished):
            seen.append((typed.feed_id, event.recorded_at))
        previous = versions[-1] if versions else None
        version = Version(
            len(versions) + 1,
            event.position,
            event.recorded_at,
            typed.feed_id,
            tuple(typed.changed) if isinstance(typed, ArticleRevised) else (),
            typed.title_text,
            typed.link,
            typed.summary_text,
            typed.content_text,
            typed.published if isinstance(typed, ArticlePublished) else None,
            {},
        )
        if previous is not None:
            for field in FIELDS:
                if previous.text(field) != version.text(field):
                    version.diff[field] = word_diff(previous.text(field), version.text(field))
        versions.append(version)
    if not versions:
        return None
    return ArticleHistory(article_id, tuple(versions), tuple(seen))
