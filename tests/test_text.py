"""Plain text from markup that never ends: the same text as HTMLParser gives, in linear time
(tracker.text; CPython gh-135462 made HTMLParser quadratic on it before 3.11.13)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.identity import normalise_space
from tracker.parsepool import parse_and_sight
from tracker.text import _QUADRATIC, _parsed_text, _TextCollector, html_to_text


def html_parser_text(markup: str) -> str:
    """The text as tracker read it before: HTMLParser alone, searches and all."""
    collector = _TextCollector()
    collector.feed(markup)
    collector.close()
    return normalise_space("".join(collector.parts))


# Pieces of markup, whole and broken: tags with odd attributes and quoted ">", comments,
# marked sections and declarations with and without their end, stray brackets and quotes,
# NULs and the whitespace HTMLParser treats apart.
_PIECES = [
    *"<<>>ab '\"==/!-]?&;x[\t\n\x0b\xa0\x00",
    *["<p>", "</p>", "<br/>", "<a href='x>'>", '<a href="u">', "</a>", "<div\n>", "<a b=c/>"],
    *["<script>", "</script>", "<style>", "<title>", "</ x>", "</", "</a", "<1>", "</>"],
    *["<!-- c -->", "<!--", "-->", "--", "<![CDATA[x]]>", "<![cdata[", "]]>", "]>", "<![if"],
    *["<![x", "<!x", "<?x", "<!doctype", "<a", "<a ", " b=", "='", '="', "==", "<a b='>'c=\""],
    *["&amp;", "&amp", "&lt;", "&#60;", "&#x3c", "&notin", "word", "a<", "<a\x00", "<a&amp;"],
]
_MARKUP = st.lists(st.sampled_from(_PIECES), max_size=24).map("".join)


@settings(max_examples=3000, deadline=None)
@given(_MARKUP)
def test_markup_is_read_as_html_parser_reads_it(markup: str) -> None:
    try:
        expected = html_parser_text(markup)
    except AssertionError:
        # HTMLParser 3.11 raises on some marked sections ("<![x"): any text will do, but text.
        assert isinstance(_parsed_text(markup), str)
        return
    assert _parsed_text(markup) == expected


_TAG_SOUP = st.lists(st.sampled_from([*"<<>a '\"==/\t\x0b\xa0\x00x&;", "<a "]), max_size=40).map(
    "".join
)


@settings(max_examples=3000, deadline=None)
@given(_TAG_SOUP)
def test_start_tags_with_odd_attributes_are_read_as_html_parser_reads_them(markup: str) -> None:
    assert _parsed_text(markup) == html_parser_text(markup)


# Each about 400 KB: HTMLParser alone takes minutes on every one (the first is the reviewer's
# feed title, "a&lt;" repeated); read in linear time, well under a second.
HOSTILE: dict[str, Callable[[int], str]] = {
    "a stray < again and again": lambda n: "a<" * n,
    "after the last >": lambda n: "<p>x</p>" + "<a " * n,
    "end tags that never end": lambda n: "x>" + "</" * n,
    "comments that never close": lambda n: "<!--x>" * n,
    "marked sections that never close": lambda n: "<![cdata[x]>" * n,
    "quoted > in tags that never end": lambda n: "<a b='>'c=\"" * n,
    "quoted > before an unclosed quote": lambda n: "<a b='>' " * n + "c='",
    "tag names ended by NUL": lambda n: "x>" + "<a&\x00" * n,
}


@pytest.mark.skipif(not _QUADRATIC, reason="this Python's HTMLParser is linear already")
@pytest.mark.parametrize("make", HOSTILE.values(), ids=HOSTILE.keys())
def test_markup_that_never_ends_is_read_in_linear_time(make: Callable[[int], str]) -> None:
    markup = make(400_000 // len(make(1)))
    started = time.perf_counter()
    html_to_text(markup)
    assert time.perf_counter() - started < 5


def test_a_feed_whose_title_never_ends_parses_in_seconds() -> None:
    title = b"a&lt;" * 400_000  # 2 MB of "a<": before, HTMLParser took hours
    body = b"<rss><channel><item><guid>g</guid><title>%s</title></item></channel></rss>" % title
    started = time.perf_counter()
    parsed, (sighting,) = parse_and_sight(body, {"content-type": "text/xml"}, "https://x/")
    assert time.perf_counter() - started < 20
    assert parsed.entries[0].title == "a<" * 400_000
