"""What a feed says, as plain records: the parser's output and the deciders' input.

Standard library only, so that the pure deciders need not import feedparser.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class ParsedEntry:
    guid: str | None
    link: str | None
    title: str  # sanitised HTML, as feedparser gives it
    summary: str
    content: str
    published: datetime | None
    updated: datetime | None
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    media: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParsedFeed:
    title: str
    entries: tuple[ParsedEntry, ...]
    ttl: timedelta | None = None  # RSS <ttl>: the publisher asks us not to poll more often
    warning: str | None = None  # feedparser's complaint about markup it could still read
