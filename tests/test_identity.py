"""One article, one identity: canonical links, article keys, plain text (pure functions)."""

from __future__ import annotations

import pytest

from tracker.identity import article_key, article_stream, canonical_link
from tracker.text import html_to_text


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
