"""Hostile and broken feeds, end to end: fetched from a real server on 127.0.0.1, polled into a
real database, then shown by every command a user runs. Nothing crashes, nothing is let in,
nothing already recorded is lost."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from feedserver import FeedServer, Reply
from helpers import polled, run_tracker
from test_parse import BILLION_LAUGHS, XXE, quadratic_blowup

from tracker.events import decode
from tracker.service import Tracker
from tracker.settings import Settings

RSS = "application/rss+xml; charset=utf-8"


def rss(items: str, title: str = "Hostile Times", prolog: str = '<?xml version="1.0"?>') -> bytes:
    return (
        f'{prolog}<rss version="2.0"><channel><title>{title}</title>'
        f"<link>https://hostile.example/</link>{items}</channel></rss>"
    ).encode()


def item(guid: str, title: str, description: str = "", extra: str = "") -> str:
    return (
        f'<item><guid isPermaLink="false">{guid}</guid><title>{title}</title>'
        f"<link>https://hostile.example/{guid[:40]}</link>"
        f"<description>{description}</description>{extra}</item>"
    )


def published(tracker: Tracker) -> list[Any]:
    """The articles polls recorded, as typed events."""
    return [decode(e) for e in polled(tracker) if e.event_type == "article.published"]


def serve(settings: Settings, server: FeedServer, reply: Reply) -> None:
    server.routes["/hostile.rss"] = reply
    settings.config_path.write_text(
        "feeds:\n"
        f"  - {{id: hostile, url: '{server.url('/hostile.rss')}', interval: 15m}}\n"
        "storylines:\n"
        "  - {id: essequibo, title: Essequibo dispute, match: {any: [Essequibo]}}\n"
    )


def outputs(settings: Settings) -> str:
    """Everything the read commands print about what was recorded, in text and JSON."""
    env = {
        "TRACKER_DATABASE_URL": settings.database_url,
        "TRACKER_CONFIG": str(settings.config_path),
    }
    printed = []
    for args in (
        ("story", "essequibo"),
        ("story", "essequibo", "--json"),
        ("stories",),
        ("stories", "--json"),
        ("events",),
        ("events", "--json"),
        ("status",),
        ("status", "--json"),
    ):
        result = run_tracker(*args, env=env)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr
        printed.append(result.stdout + result.stderr)
    return "\n".join(printed)


@pytest.mark.parametrize(
    "body",
    [BILLION_LAUGHS, quadratic_blowup(), XXE],
    ids=["billion-laughs", "quadratic-blowup", "xxe"],
)
def test_entity_bombs_and_external_entities_are_a_recorded_failure_and_nothing_else(
    settings: Settings, feed_server: FeedServer, body: bytes, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    body = body.replace(b"file:///etc/passwd", secret.as_uri().encode())
    serve(settings, feed_server, Reply(200, body, {"Content-Type": RSS}))
    with Tracker(settings) as tracker:
        (result,) = tracker.poll()
        recorded = polled(tracker)
    assert result.outcome == "failed"
    assert result.reason == "refused: the document declares XML entities (entity-expansion risk)"
    assert [event.event_type for event in recorded] == ["feed.failing"]
    assert "TOP-SECRET-MARKER" not in outputs(settings)


def test_a_100_mb_response_is_refused_at_the_limit(
    settings: Settings, feed_server: FeedServer
) -> None:
    head = rss(item("g1", "Essequibo ruling")).replace(b"</channel></rss>", b"")
    huge = Reply(200, head, {"Content-Type": RSS}, stream_bytes=100 * 1024 * 1024)
    serve(settings, feed_server, huge)
    started = time.monotonic()
    with Tracker(settings) as tracker:
        (result,) = tracker.poll()
        recorded = polled(tracker)
    assert result.outcome == "failed" and "larger than" in (result.reason or "")
    assert [event.event_type for event in recorded] == ["feed.failing"]
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("depth", [100_000])
def test_deeply_nested_markup_is_read_or_refused_never_a_crash(
    settings: Settings, feed_server: FeedServer, depth: int
) -> None:
    nested_html = "&lt;div&gt;" * depth + "Essequibo" + "&lt;/div&gt;" * depth
    nested_xml = "<x>" * depth + "</x>" * depth
    body = rss(
        item("html", "Essequibo in depth", nested_html)
        + item("xml", "Essequibo nested", "plain", extra=nested_xml)
    )
    serve(settings, feed_server, Reply(200, body, {"Content-Type": RSS}))
    with Tracker(settings) as tracker:
        (result,) = tracker.poll()
        recorded = published(tracker)
    assert result.line() == "hostile: 2 new"
    assert sorted((a.title_text, a.summary_text) for a in recorded) == [
        ("Essequibo in depth", "Essequibo"),
        ("Essequibo nested", "plain"),
    ]
    assert "Essequibo in depth" in outputs(settings)


def test_invalid_utf8_is_read_as_the_next_likely_charset(
    settings: Settings, feed_server: FeedServer
) -> None:
    body = rss(item("g1", "Essequibo ruling \xff\xfe broken", "text")).replace(
        "\xff\xfe".encode(), b"\xff\xfe"
    )
    serve(settings, feed_server, Reply(200, body, {"Content-Type": RSS}))
    with Tracker(settings) as tracker:
        (result,) = tracker.poll()
        (article,) = published(tracker)
    # feedparser reads the whole document as windows-1252 once UTF-8 fails.
    assert result.outcome == "new"
    assert article.title_text == "Essequibo ruling ÿþ broken"
    assert "Essequibo ruling ÿþ broken" in outputs(settings)


def test_a_feed_declaring_one_charset_and_using_another_is_read(
    settings: Settings, feed_server: FeedServer
) -> None:
    body = rss(
        item("g1", "Guayana Esequiba: la CIJ fija audiencias en La Haya", "Essequibo"),
        prolog='<?xml version="1.0" encoding="iso-8859-1"?>',
    )
    serve(settings, feed_server, Reply(200, body, {"Content-Type": "application/rss+xml"}))
    with Tracker(settings) as tracker:
        (result,) = tracker.poll()
        (article,) = published(tracker)
    assert result.outcome == "new"
    # Read as declared, the UTF-8 bytes of "í" are two Latin-1 letters: still text, no error.
    assert article.title_text.startswith("Guayana Esequiba: la CIJ")


SCRIPTED = item(
    "scripted",
    "&lt;script&gt;alert(1)&lt;/script&gt;Essequibo: "
    "&lt;b onmouseover=alert(2)&gt;ruling&lt;/b&gt;",
    '&lt;a href="javascript:alert(3)"&gt;read&lt;/a&gt; &lt;script&gt;alert(4)&lt;/script&gt;'
    "&lt;img src=x onerror=alert(5)&gt; Essequibo",
).replace(
    "<link>https://hostile.example/scripted</link>",
    "<link>javascript:alert(6)</link><enclosure url='javascript:alert(7)' type='image/png'/>",
)


def test_scripts_and_javascript_links_are_inert_in_every_output(
    settings: Settings, feed_server: FeedServer
) -> None:
    serve(settings, feed_server, Reply(200, rss(SCRIPTED), {"Content-Type": RSS}))
    with Tracker(settings) as tracker:
        (result,) = tracker.poll()
        (article,) = published(tracker)
    assert result.outcome == "new"
    assert article.link is None and article.media == ()
    assert article.title_text == "Essequibo: ruling"
    # The summary is kept as markup, sanitised by feedparser: no script, handler or live link.
    for live in ("<script", "onerror", "onmouseover=", "javascript:"):
        assert live not in article.summary
    printed = outputs(settings)
    assert "javascript:" not in printed
    story = json.loads(
        run_tracker(
            "story",
            "essequibo",
            "--json",
            env={
                "TRACKER_DATABASE_URL": settings.database_url,
                "TRACKER_CONFIG": str(settings.config_path),
            },
        ).stdout
    )
    assert "<script" not in json.dumps(story["articles"])


def test_terminal_controls_from_a_feed_are_escaped_in_human_output(
    settings: Settings, feed_server: FeedServer
) -> None:
    body = rss(
        item("esc", "Essequibo \x1b]0;pwned\x07 ruling \x1b[2J\u202e", "Essequibo \x9b31m"),
        title="Hostile \x1b[31mTimes",
    ).replace(b"\x1b", b"&#x1b;")
    # XML 1.0 allows no ESC even as a reference; feedparser's loose parser reads it anyway.
    serve(settings, feed_server, Reply(200, body, {"Content-Type": RSS}))
    with Tracker(settings) as tracker:
        tracker.poll()
    env = {
        "TRACKER_DATABASE_URL": settings.database_url,
        "TRACKER_CONFIG": str(settings.config_path),
    }
    for args in (("story", "essequibo"), ("stories",), ("events",), ("status",)):
        result = run_tracker(*args, env=env)
        assert result.returncode == 0, result.stderr
        for control in ("\x1b", "\x07", "\x9b", "\u202e"):
            assert control not in result.stdout, (args, result.stdout)


@pytest.mark.parametrize(
    "date",
    ["Mon, 01 Jan 0001 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "9999-12-31T23:59:59Z"],
    ids=["year-1", "year-9999", "year-9999-iso"],
)
def test_dates_at_the_ends_of_the_calendar_are_recorded_and_shown(
    settings: Settings, feed_server: FeedServer, date: str
) -> None:
    body = rss(item("g1", "Essequibo ruling", "text", extra=f"<pubDate>{date}</pubDate>"))
    serve(settings, feed_server, Reply(200, body, {"Content-Type": RSS}))
    with Tracker(settings) as tracker:
        (result,) = tracker.poll()
        (article,) = published(tracker)
        replayed = tracker.replay()
        story = tracker.story("essequibo")
    assert result.outcome == "new"
    assert article.published is not None and article.published[:4] in ("0001", "9999")
    assert replayed.events >= 1 and len(story.articles) == 1
    assert "Essequibo ruling" in outputs(settings)


@pytest.mark.parametrize("kind", ["guid", "link guid", "link"])
def test_a_100_kb_guid_or_link_is_one_article(
    settings: Settings, feed_server: FeedServer, kind: str
) -> None:
    long = "x" * 100_000
    url = f"https://hostile.example/{long}"
    title = "<title>Essequibo ruling</title>"
    if kind == "guid":
        entry = item(long, "Essequibo ruling")
    elif kind == "link guid":
        entry = f"<item><guid>{url}</guid>{title}</item>"
    else:
        entry = f"<item><link>{url}</link>{title}</item>"
    serve(settings, feed_server, Reply(200, rss(entry), {"Content-Type": RSS}))
    with Tracker(settings) as tracker:
        first = tracker.poll()
        again = tracker.poll(every=True)
        articles = [e for e in polled(tracker) if e.event_type == "article.published"]
        story = tracker.story("essequibo")
    assert [r.outcome for r in first + again] == ["new", "unchanged"]
    assert len(articles) == 1 and len(story.articles) == 1


def test_ten_thousand_entries_in_one_feed_are_one_poll(
    settings: Settings, feed_server: FeedServer
) -> None:
    body = rss("".join(item(f"g{n}", f"Essequibo update {n}") for n in range(10_000)))
    serve(settings, feed_server, Reply(200, body, {"Content-Type": RSS}))
    with Tracker(settings) as tracker:
        (result,) = tracker.poll()
        (again,) = tracker.poll(every=True)
        story = tracker.story("essequibo", newest=None)
    assert (result.outcome, result.new, again.outcome) == ("new", 10_000, "unchanged")
    assert story.article_count == 10_000


def test_100_kb_of_capitalised_words_and_a_100_kb_noun_are_recorded_and_shown(
    settings: Settings, feed_server: FeedServer
) -> None:
    # What the extractors would make names and counted units of, were their length not bound:
    # PostgreSQL refuses an index entry over 2704 bytes.
    capitals = " ".join(["Essequibo", *(f"Group{n}" for n in range(15_000))])
    noun = "5 " + "a" * 100_000 + "s were counted"
    body = rss(item("caps", capitals[:300], f"{capitals} {noun}"))
    serve(settings, feed_server, Reply(200, body, {"Content-Type": RSS}))
    with Tracker(settings) as tracker:
        (result,) = tracker.poll()
        story = tracker.story("essequibo")
    assert result.line() == "hostile: 1 new"
    assert len(story.articles) == 1
    assert all(len(entity.name) <= 200 for entity in story.entities)
    assert "Essequibo" in outputs(settings)
