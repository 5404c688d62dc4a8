"""The deciders on their own: entries sighted once, then decided (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime

from tracker.deciding import (
    article_fields,
    article_id_of,
    decide_entries,
    decide_entry,
    decide_sightings,
    fingerprint,
    sight,
    sightings,
)
from tracker.entries import ParsedEntry

NOW = datetime(2026, 11, 24, 9, tzinfo=UTC)


def entry(guid: str | None, link: str | None, title: str = "T", **more: str) -> ParsedEntry:
    return ParsedEntry(
        guid=guid,
        link=link,
        title=title,
        summary=more.get("summary", "<p>S &amp; s</p>"),
        content=more.get("content", "<p>C</p><p>c</p>"),
        published=None,
        updated=None,
    )


def test_a_sighting_is_what_the_field_by_field_functions_give() -> None:
    for each in (
        entry("https://a.example/?p=1&utm_source=x", "https://a.example/one/?utm_medium=y"),
        entry(None, "https://A.example/two/#top"),
        entry("urn:uuid:3", "https://a.example/three/"),
        entry("  ", None, "Only <b>content</b>"),
    ):
        seen = sight(each)
        assert (seen.identity, seen.article_id) == article_id_of(each)
        assert seen.fields == article_fields(each)
        assert seen.prints == fingerprint(article_fields(each))


def test_sightings_skip_entries_without_identity_and_keep_the_first_of_an_id() -> None:
    first = entry("urn:1", None, "First")
    entries = [
        ParsedEntry(None, None, " ", " ", "<p>fragment</p>", None, None),
        first,
        entry("urn:2", None),
        entry("urn:1", None, "Second"),
    ]
    assert [s.entry for s in sightings(entries)] == [first, entries[2]]


def test_deciding_sightings_is_deciding_entries() -> None:
    entries = [entry("urn:1", None), entry("urn:2", None, "Two")]
    news = decide_entries("feed-a", entries, {}, NOW)
    assert news == decide_sightings("feed-a", sightings(entries), {}, NOW)
    known = {change.article_id: change.known for change in news}
    edited = [entry("urn:1", None, "One, edited"), entry("urn:2", None, "Two")]
    (revised,) = decide_entries("feed-a", edited, known, NOW)
    assert revised.kind == "revised" and revised.events[0].changed == ("title",)
    assert revised == decide_entry("feed-a", edited[0], known[revised.article_id], NOW)
    assert decide_entries("feed-b", edited, known, NOW)[1].kind == "seen"
