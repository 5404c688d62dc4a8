"""Property-based tests: arbitrary bytes, mutated feeds, arbitrary entry fields and arbitrary
feeds.yaml documents never raise anything but the errors we report as one line.

A parse either gives entries we can record or a FeedParseError, which the poller records as
that feed's failure; feeds.yaml either loads or gives a ConfigError. Any other exception is a
bug of ours: `parse_and_sight` would turn it into a "parser error" failure, so these tests call
the undefended functions beneath it. The last one polls what the others generate through a real
server into a real database.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
import yaml
from feedserver import FEEDS, FeedServer, Reply
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hostile import RSS

from tracker.config import load_config
from tracker.deciding import decide_sightings, sightings
from tracker.errors import ConfigError
from tracker.parse import FeedParseError, parse_feed
from tracker.service import Tracker
from tracker.settings import Settings

FIXTURES = [path.read_bytes() for path in sorted(FEEDS.iterdir()) if path.suffix != ".json"]
CONTENT_TYPES = st.sampled_from(
    [
        "application/rss+xml; charset=utf-8",
        "application/atom+xml",
        "text/xml; charset=iso-8859-1",
        "application/xml; charset=utf-16",
        "text/html",
        "application/octet-stream",
        "",
    ]
)
NOW = datetime(2026, 12, 2, tzinfo=UTC)


def read_and_decide(body: bytes, content_type: str) -> None:
    """Parse, sight and decide as a poll does; only FeedParseError may come out, or what
    feedparser itself raises (feedparser 6.0 raises ValueError on some bodies; the poller
    records it as that feed's "parser error", test_parse.py)."""
    headers = {"Content-Type": content_type} if content_type else {}
    try:
        parsed = parse_feed(body, headers, "https://feeds.example/news.rss")
    except FeedParseError as refused:
        assert str(refused) and "\n" not in str(refused)
        return
    except Exception as error:
        raised_in = traceback.extract_tb(error.__traceback__)[-1].filename
        if f"{os.sep}feedparser{os.sep}" not in raised_in:
            raise
        return
    seen = sightings(parsed.entries)
    decide_sightings("news", seen, {}, NOW)


@st.composite
def mutated_feeds(draw: st.DrawFn) -> bytes:
    body = bytearray(draw(st.sampled_from(FIXTURES)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(body)))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "duplicate", "truncate"]))
        span = draw(st.integers(1, 400))
        if kind == "delete":
            del body[at : at + span]
        elif kind == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=40))
        elif kind == "replace":
            chunk = draw(st.binary(min_size=1, max_size=40))
            body[at : at + len(chunk)] = chunk
        elif kind == "duplicate":
            body[at:at] = body[at : at + span]
        else:
            del body[at:]
    return bytes(body)


# A few seconds each: CI runs them on every push.
@settings(max_examples=1000, deadline=None)
@given(body=st.binary(max_size=3000), content_type=CONTENT_TYPES)
def test_arbitrary_bytes_are_a_feed_or_a_one_line_refusal(body: bytes, content_type: str) -> None:
    read_and_decide(body, content_type)


@settings(max_examples=1000, deadline=None)
@given(body=mutated_feeds(), content_type=CONTENT_TYPES)
def test_mutated_real_shaped_feeds_are_a_feed_or_a_one_line_refusal(
    body: bytes, content_type: str
) -> None:
    read_and_decide(body, content_type)


# Any text XML can carry in an element (control characters and all, escaped or raw).
_field = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)
_dates = st.one_of(
    _field,
    st.datetimes(timezones=st.just(UTC)).map(lambda moment: moment.strftime("%a, %d %b %Y %X GMT")),
    st.datetimes().map(datetime.isoformat),
)


@settings(max_examples=1000, deadline=None)
@given(
    fields=st.lists(
        st.fixed_dictionaries(
            {
                "guid": _field,
                "link": _field,
                "title": _field,
                "description": _field,
                "pubDate": _dates,
            }
        ),
        max_size=4,
    ),
    raw=st.booleans(),
)
def test_arbitrary_entry_fields_are_recorded_or_refused(
    fields: list[dict[str, str]], raw: bool
) -> None:
    def element(name: str, value: str) -> str:
        return f"<{name}>{value if raw else escape(value)}</{name}>"

    items = "".join(
        "<item>" + "".join(element(name, value) for name, value in entry.items()) + "</item>"
        for entry in fields
    )
    body = (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{items}</channel></rss>'
    )
    read_and_decide(body.encode("utf-8", "surrogatepass"), "application/rss+xml")


_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(["15m", "1h30m", "0s", "http://127.0.0.1/feed", "essequibo", "-1d"]),
)
_keys = st.one_of(
    st.sampled_from(
        [
            "feeds",
            "storylines",
            "id",
            "url",
            "title",
            "interval",
            "enabled",
            "match",
            "all",
            "any",
            "none",
        ]
    ),
    st.text(max_size=10),
)
_documents = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=5)),
    max_leaves=25,
)


def load(path: Path) -> None:
    try:
        load_config(path)
    except ConfigError as error:
        assert error.problems and all(problem.startswith(str(path)) for problem in error.problems)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=_documents)
def test_arbitrary_feeds_yaml_documents_load_or_list_their_problems(
    document: object, tmp_path: Path
) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    load(path)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_arbitrary_feeds_yaml_text_loads_or_lists_its_problems(
    text: str | bytes, tmp_path: Path
) -> None:
    path = tmp_path / "feeds.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    load(path)


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.one_of(mutated_feeds(), st.binary(max_size=2000)))
def test_whatever_a_feed_serves_a_poll_records_it_or_its_failure_and_the_log_stays_whole(
    body: bytes, hostile_server: FeedServer, tmp_path: Path
) -> None:
    hostile_server.routes["/fuzz.rss"] = Reply(200, body, {"Content-Type": RSS})
    config = tmp_path / "feeds.yaml"
    config.write_text(f"feeds:\n  - {{id: fuzz, url: '{hostile_server.url('/fuzz.rss')}'}}\n")
    database = f"sqlite:///{tmp_path}/fuzz.db"
    with Tracker(Settings(database, config)) as tracker:
        (result,) = tracker.poll(every=True)
        assert result.outcome in ("new", "revised", "unchanged", "failed"), result.line()
        assert tracker.verify().ok
