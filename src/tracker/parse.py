"""Feed bytes to entries: the one module that imports feedparser.

feedparser does the hard part (RSS 0.9x/1.0/2.0 and Atom, broken markup, charset detection,
HTML sanitising, relative links); this adapter refuses what feedparser must not see and turns
what it returns into plain, typed records.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import feedparser
from feedparser.encodings import convert_to_utf8

from tracker.entries import ParsedEntry, ParsedFeed
from tracker.errors import TrackerError

# Entity declarations have no business in a feed, and feedparser 6 expands them: a 160 KB
# "quadratic blowup" document grew past 2 GB in memory in our trial. Refusing any document that
# declares an entity also rules out external entities (XXE) and billion laughs. The check runs
# on the text feedparser will parse (after its own charset detection: UTF-16 without a BOM,
# EBCDIC, a charset from the headers), not just on the raw bytes.
_ENTITY_DECLARATION = re.compile(rb"<!\s*ENTITY", re.IGNORECASE)


class FeedParseError(TrackerError):
    """The body is not a feed we can read, or is one we refuse to read."""


def parse_feed(body: bytes, headers: Mapping[str, str], url: str) -> ParsedFeed:
    """Parse a fetched body; FeedParseError if it is not a feed or declares XML entities."""
    # feedparser takes the response headers to find the charset, and Content-Location as the
    # base for relative links (it has no other way to know where bytes came from).
    response_headers = {key.lower(): value for key, value in headers.items()}
    response_headers.setdefault("content-location", url)
    _refuse_entity_declarations(body, response_headers)
    result = feedparser.parse(
        body,
        response_headers=response_headers,
        sanitize_html=True,
        resolve_relative_uris=True,
    )
    feed = result.get("feed", {})
    entries = tuple(_entry(entry) for entry in result.get("entries", []))
    problem = _bozo_message(result) if result.get("bozo") else None
    if not entries and not feed.get("title") and (problem or not _looks_like_feed(result)):
        raise FeedParseError(f"not a feed: {problem or 'no feed or entries found'}")
    return ParsedFeed(
        title=str(feed.get("title", "")),
        entries=entries,
        ttl=_ttl(feed.get("ttl")),
        warning=problem,
    )


def _refuse_entity_declarations(body: bytes, headers: dict[str, str]) -> None:
    scratch = feedparser.FeedParserDict(bozo=False, headers=dict(headers))
    as_parsed = convert_to_utf8(scratch["headers"], body, scratch)
    for text in (body, as_parsed):
        if _ENTITY_DECLARATION.search(text):
            raise FeedParseError(
                "refused: the document declares XML entities (entity-expansion risk)"
            )


def _looks_like_feed(result: Any) -> bool:
    return bool(result.get("version"))


def _bozo_message(result: Any) -> str:
    exception = result.get("bozo_exception")
    message = str(exception).splitlines()[0] if exception else "malformed feed"
    return f"{type(exception).__name__}: {message}" if exception else message


def _ttl(value: Any) -> timedelta | None:
    try:
        minutes = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return timedelta(minutes=minutes) if 0 < minutes <= 7 * 24 * 60 else None


def _time(value: time.struct_time | None) -> datetime | None:
    # feedparser gives dates as UTC struct_time; timegm keeps them UTC (mktime would not).
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (OverflowError, ValueError, OSError):
        return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


_WEB_SCHEME = re.compile(r"\s*https?:", re.IGNORECASE)


def _web_url(value: Any) -> str | None:
    # Only http(s) links are kept (feedparser has made relative ones absolute): a
    # `javascript:` or `data:` link would be live in any page built from our JSON output.
    text = _text(value)
    return text if _WEB_SCHEME.match(text) else None


def _entry(entry: Any) -> ParsedEntry:
    contents = entry.get("content") or []
    content = next((_text(c.get("value")) for c in contents if "html" in c.get("type", "")), None)
    if content is None:
        content = _text(contents[0].get("value")) if contents else ""
    authors = tuple(
        name for name in (_text(a.get("name")).strip() for a in entry.get("authors") or []) if name
    )
    categories = tuple(
        term for term in (_text(t.get("term")).strip() for t in entry.get("tags") or []) if term
    )
    media_urls: list[str] = []
    for item in (
        *(entry.get("media_content") or []),
        *(entry.get("media_thumbnail") or []),
        *(entry.get("enclosures") or []),
    ):
        media_url = _web_url(item.get("url") or item.get("href"))
        if media_url and media_url not in media_urls:
            media_urls.append(media_url)
    return ParsedEntry(
        guid=_text(entry.get("id")) or None,
        link=_web_url(entry.get("link")),
        title=_text(entry.get("title")),
        summary=_text(entry.get("summary")),
        content=content,
        published=_time(entry.get("published_parsed")),
        # dict.get: FeedParserDict would fall back to published_parsed, with a warning.
        updated=_time(dict.get(entry, "updated_parsed")),
        authors=authors,
        categories=categories,
        media=tuple(media_urls),
    )
