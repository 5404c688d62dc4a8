"""Feed bytes to entries (tracker.parse): golden files beside each fixture feed, and refusals.

Set TRACKER_UPDATE_GOLDEN=1 to rewrite the .expected.json files after a deliberate change, then
read the diff before committing it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tracemalloc
from pathlib import Path

import pytest

from tracker.parse import FeedParseError, parse_feed

FEEDS = Path(__file__).parent / "data" / "feeds"
# Where each fixture pretends to have been fetched from (relative links resolve against it).
FIXTURES = {
    "thehill-news.rss": "https://thehill.com/news/feed/",
    "upi-top.rss": "https://rss.upi.com/news/news.rss",
    "essequibo-watch.atom": "https://essequibo-watch.example/atom.xml",
    "miamiherald-local.rss": "https://www.miamiherald.com/news/local/?widgetName=rssfeed&widgetContentId=712015&getXmlFeed=true",
}


def as_json(parsed: object) -> object:
    def default(value: object) -> object:
        return value.isoformat() if hasattr(value, "isoformat") else str(value)

    return json.loads(json.dumps(dataclasses.asdict(parsed), default=default))  # type: ignore[call-overload]


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_feeds_parse_to_their_golden_files(name: str) -> None:
    parsed = parse_feed((FEEDS / name).read_bytes(), {"Content-Type": "text/xml"}, FIXTURES[name])
    golden = FEEDS / f"{name}.expected.json"
    if os.environ.get("TRACKER_UPDATE_GOLDEN"):
        golden.write_text(json.dumps(as_json(parsed), indent=2, ensure_ascii=False) + "\n")
    assert as_json(parsed) == json.loads(golden.read_text())


def test_what_the_golden_files_hold() -> None:
    hill = parse_feed((FEEDS / "thehill-news.rss").read_bytes(), {}, FIXTURES["thehill-news.rss"])
    opinion, reward = hill.entries
    # Several dc:creator, one of them empty; WordPress guids that are not links.
    assert opinion.authors == ("Carla Mendoza", "Peter Okafor")
    assert opinion.guid == "https://thehill.com/?p=5100001"
    # feedparser sanitises: the script in content:encoded is gone, the markup kept.
    assert "<script" not in reward.content and "<strong>Nicolás Maduro</strong>" in reward.content
    assert (
        reward.published is not None and reward.published.isoformat() == "2025-08-07T18:05:00+00:00"
    )
    upi = parse_feed((FEEDS / "upi-top.rss").read_bytes(), {}, FIXTURES["upi-top.rss"])
    assert upi.ttl is not None and upi.ttl.total_seconds() == 1800
    assert upi.entries[0].media == ("https://cdnph.upi.com/ph/st/th/essequibo_map.jpg",)
    # -0400 becomes UTC.
    assert upi.entries[0].published.isoformat() == "2025-08-14T14:12:00+00:00"  # type: ignore[union-attr]
    atom = parse_feed(
        (FEEDS / "essequibo-watch.atom").read_bytes(), {}, FIXTURES["essequibo-watch.atom"]
    )
    # A relative link resolves against where the feed was fetched from.
    assert atom.entries[0].link == "https://essequibo-watch.example/2025/08/20/cij-audiencias#top"
    assert atom.entries[1].guid is None and atom.entries[1].published is None


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE rss [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<rss version="2.0"><channel><title>&lol3;</title></channel></rss>"""


def quadratic_blowup() -> bytes:
    entity = "A" * 50_000
    return (
        '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "' + entity + '">]>'
        '<rss version="2.0"><channel><title>' + "&a;" * 20_000 + "</title></channel></rss>"
    ).encode()


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<rss version="2.0"><channel><title>&xxe;</title></channel></rss>"""


def without_declaration(body: bytes) -> str:
    return body.decode().replace('<?xml version="1.0"?>', "")


def test_the_guard_reads_what_feedparser_reads_utf16_without_a_bom() -> None:
    body = (
        '<?xml version="1.0" encoding="utf-16"?><!DOCTYPE rss [<!ENTITY a "AAAA">]>'
        "<rss version='2.0'><channel><title>&a;</title></channel></rss>"
    ).encode("utf-16-be")
    with pytest.raises(FeedParseError, match="declares XML entities"):
        parse_feed(body, {"Content-Type": "application/xml"}, "https://example.com/feed")


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (BILLION_LAUGHS, {}),
        (quadratic_blowup(), {}),
        (XXE, {}),
        (BILLION_LAUGHS.replace(b"<!ENTITY", b"<!entity"), {}),
        (BILLION_LAUGHS.decode().encode("utf-16"), {}),
        (quadratic_blowup().decode().encode("utf-16-be"), {}),
        (quadratic_blowup().decode().encode("utf-16-le"), {}),
        (BILLION_LAUGHS.decode().encode("utf-32-le"), {}),
        (
            without_declaration(BILLION_LAUGHS).encode("utf-16-le"),
            {"Content-Type": "application/rss+xml; charset=utf-16le"},
        ),
        (
            '<?xml version="1.0" encoding="cp037"?>'.encode("cp037")
            + without_declaration(BILLION_LAUGHS).encode("cp037"),
            {},
        ),
    ],
    ids=[
        "billion-laughs",
        "quadratic-blowup",
        "xxe",
        "lower-case",
        "utf-16-bom",
        "utf-16be-no-bom",
        "utf-16le-no-bom",
        "utf-32le-no-bom",
        "charset-header",
        "ebcdic",
    ],
)
def test_documents_declaring_entities_are_refused_before_parsing(
    body: bytes, headers: dict[str, str]
) -> None:
    # Refused either by the guard, which reads the text exactly as feedparser will decode it,
    # or because in that decoding it is no XML at all; never expanded.
    tracemalloc.start()
    with pytest.raises(FeedParseError, match="declares XML entities|not a feed"):
        parse_feed(body, headers, "https://example.com/feed")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50 * 1024 * 1024


@pytest.mark.parametrize(
    "body",
    [b"", b"<html><body>Just a web page</body></html>", b"\x89PNG\r\n\x1a\n\x00\x00", b"{}"],
    ids=["empty", "html", "png", "json"],
)
def test_what_is_not_a_feed_is_a_clear_error(body: bytes) -> None:
    with pytest.raises(FeedParseError, match="not a feed"):
        parse_feed(body, {}, "https://example.com/feed")


def test_a_truncated_feed_keeps_the_entries_it_has_and_says_what_was_wrong() -> None:
    body = (FEEDS / "upi-top.rss").read_bytes()
    truncated = body[: body.index(b"<item>", body.index(b"</item>"))] + b"<item><title>Cut"
    parsed = parse_feed(truncated, {}, FIXTURES["upi-top.rss"])
    assert parsed.entries[0].title == "Guyana faces elections amid oil boom, Maduro's threats"
    assert parsed.warning


# Bodies on which feedparser 6.0.x raises instead of flagging the feed as malformed (bozo).
RAISING = {
    "ValueError": b"<rss version='2.0'><channel><title>x</title><item><guid>g</guid>"
    b"<title>x &#1114112;</title></item></channel></rss>",
    "UnicodeEncodeError": b"<rss version='2.0'><channel><title>x</title><item><guid>g</guid>"
    b"<title>x &#55296;</title></item></channel></rss>",
    "ValueError ": b"<rss version='2.0' xmlns:georss='http://www.georss.org/georss' "
    b"xmlns:gml='http://www.opengis.net/gml'><channel><title>x</title><item><guid>g</guid>"
    b"<georss:where><gml:Point srsName='EPSG:abc'><gml:pos>1 2</gml:pos></gml:Point>"
    b"</georss:where></item></channel></rss>",
}


@pytest.mark.parametrize("kind", RAISING)
def test_what_feedparser_raises_is_a_parse_error_of_that_feed(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    from tracker.parsepool import parse_and_sight

    caplog.set_level("DEBUG", logger="tracker.parsepool")
    with pytest.raises(FeedParseError, match=f"^parser error: {kind.strip()}: ") as raised:
        parse_and_sight(RAISING[kind], {"Content-Type": "text/xml"}, "https://x/")
    assert "\n" not in str(raised.value)
    # The traceback is logged for whoever debugs the parser, not recorded in the feed's state.
    assert "Traceback" in caplog.text and "feedparser" in caplog.text
