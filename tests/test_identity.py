"""One article, one identity: canonical links, article keys, plain text (pure functions)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.identity import article_key, article_stream, canonical_link, normalise_space
from tracker.text import _parsed_text, _plain_markup_text, html_to_text


@pytest.mark.parametrize(
    ("link", "canonical"),
    [
        (
            "https://TheHill.com/policy/5099870-maduro/?utm_source=rss&utm_medium=feed",
            "https://thehill.com/policy/5099870-maduro/",
        ),
        (
            "https://www.miamiherald.com/news/article311000001.html#storylink=rss",
            "https://www.miamiherald.com/news/article311000001.html",
        ),
        (
            "HTTPS://www.UPI.com:443/Top_News/?ur3=1&fbclid=abc",
            "https://www.upi.com/Top_News/?ur3=1",
        ),
        ("http://example.com:8080/a?b=1&gclid=x&c=2", "http://example.com:8080/a?b=1&c=2"),
        ("https://example.com", "https://example.com/"),
        ("urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a", None),
        ("/relative/path", None),
        ("https://[::1/broken", None),
        ("", None),
        (None, None),
    ],
)
def test_canonical_links(link: str | None, canonical: str | None) -> None:
    assert canonical_link(link) == canonical


def test_a_guid_wins_over_the_link_so_an_edited_slug_is_the_same_article() -> None:
    before = article_key(
        "https://thehill.com/?p=5100001", "https://thehill.com/a/5100001-old/", "Old", ""
    )
    after = article_key(
        "https://thehill.com/?p=5100001", "https://thehill.com/a/5100001-new/", "New", ""
    )
    assert before == after == ("link", "https://thehill.com/?p=5100001")


def test_a_permalink_guid_with_tracking_noise_is_the_same_article() -> None:
    assert article_key("https://www.upi.com/x/?utm_campaign=rss", None, "", "") == article_key(
        "https://www.upi.com/x/", None, "", ""
    )


def test_a_permalink_guid_and_a_bare_link_to_the_same_page_are_one_article() -> None:
    assert article_key("https://www.upi.com/x/", None, "", "") == article_key(
        None, "https://www.upi.com/x/?utm_source=rss", "", ""
    )
    assert article_key("urn:uuid:1225c695", None, "", "") == ("guid", "urn:uuid:1225c695")


def test_without_a_guid_the_canonical_link_is_the_identity() -> None:
    assert article_key(None, "https://A.example/x?utm_source=1#top", "t", "s") == (
        "link",
        "https://a.example/x",
    )
    assert article_key("  ", "https://a.example/x", "t", "s")[0] == "link"


def test_without_guid_or_link_the_content_is_the_identity_ignoring_whitespace() -> None:
    how, key = article_key(None, None, "Comunicado  de la\ncancillería", "Sin fecha")
    assert how == "content"
    assert (how, key) == article_key(
        None, "not a link", " Comunicado de la cancillería ", "Sin fecha "
    )
    assert key != article_key(None, None, "Otro comunicado", "Sin fecha")[1]


def test_article_streams_are_stable_and_distinct() -> None:
    stream = article_stream("guid", "https://thehill.com/?p=5100001")
    assert stream == article_stream("guid", "https://thehill.com/?p=5100001")
    assert stream.startswith("article-") and len(stream) == len("article-") + 24
    assert stream != article_stream("link", "https://thehill.com/?p=5100001")


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        (
            "<p>The U.S. raised its <strong>reward</strong>.</p><p>It was $15 million.</p>",
            "The U.S. raised its reward. It was $15 million.",
        ),
        ("A $50 million reward &#8212; the highest", "A $50 million reward — the highest"),
        ("Caf&eacute; &amp; bar", "Café & bar"),
        ("line<br>break", "line break"),
        ("  spaced\n\tout  ", "spaced out"),
        ("<script>alert(1)</script>visible<style>p{}</style>", "visible"),
        ("", ""),
    ],
)
def test_html_to_text(markup: str, text: str) -> None:
    assert html_to_text(markup) == text


_SPACE = re.compile(r"\s+")


@given(
    st.text(
        alphabet=st.sampled_from(list(" \t\n\r\x0b\x0c\x1c\x85\u00a0\u2003\u200bab")), max_size=40
    )
)
def test_normalise_space_is_the_regular_expression_it_replaced(text: str) -> None:
    assert normalise_space(text) == _SPACE.sub(" ", text).strip()


# Markup built from pieces near the edges of the fast path's grammar: tags it reads, tags that
# almost parse, comments, stray brackets, odd whitespace, character references.
_JUNK = st.lists(
    st.sampled_from([*"ab <>/\"'=&;#x\t\n\x0b\x0c\x85é-!?:1`", "\u00a0", "amp;", "#38;", "lt;"]),
    max_size=6,
).map("".join)
_WHITESPACE = st.sampled_from(["", " ", "\t", "\n", "\x0c", "\x0b", "\x85", "  "])
_VALUE = st.one_of(_JUNK.map(lambda s: f'"{s}"'), _JUNK.map(lambda s: f"'{s}'"), _JUNK)
_ATTRIBUTE = st.tuples(
    _WHITESPACE,
    st.sampled_from(["href", "class", "x", "'", '"', "=", "a-b"]),
    st.one_of(st.just(""), st.tuples(_WHITESPACE, _WHITESPACE, _VALUE).map("=".join)),
).map("".join)
_TAG = st.tuples(
    st.sampled_from(["<", "</"]),
    st.sampled_from(["p", "P", "br", "a", "Div", "li", "span", "script", "style", "title", "h1"]),
    st.lists(_ATTRIBUTE, max_size=3).map("".join),
    _WHITESPACE,
    st.sampled_from(["", "/"]),
    st.sampled_from([">", "", ">>"]),
).map("".join)
_MARKUP = st.lists(
    st.one_of(
        _TAG,
        _JUNK,
        st.sampled_from(
            ["text", " two words ", "&amp;", "&#8212;", "&eacute", "<!-- c -->", "<?x?>"]
        ),
    ),
    max_size=12,
).map("".join)


@settings(max_examples=1000)
@given(_MARKUP)
def test_plain_markup_is_read_as_html_parser_reads_it(markup: str) -> None:
    fast = _plain_markup_text(markup)
    if fast is not None:
        assert fast == _parsed_text(markup)


@pytest.mark.parametrize(
    "markup",
    [
        "<phref ='''href='>x",  # HTMLParser takes this for text, not a tag
        "<p\x0bclass=x>a</p>b",  # a vertical tab is part of HTMLParser's tag name
        '<a title="1 > 0">x</a>',
        "a <b c",
        "<!-- <p> -->x",
        "<p>x<script>y</script>",
    ],
)
def test_markup_off_the_fast_path_goes_to_html_parser(markup: str) -> None:
    assert _plain_markup_text(markup) is None
    assert html_to_text(markup) == _parsed_text(markup)


def test_plain_markup_takes_the_fast_path() -> None:
    markup = '<p class="lead">A &amp; B</p><p>C<br/>D <a href=https://x.example/>E</a></P>'
    assert _plain_markup_text(markup) == _parsed_text(markup) == "A & B C D E"
